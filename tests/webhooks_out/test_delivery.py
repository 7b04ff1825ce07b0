"""Delivery to a real receiver: signed per Standard Webhooks, filtered, in order, retried with
the same webhook-id for a retry window of each delivery's own, retried by hand, never slowing
requests, nothing for a rollback; a URL that cannot be sent to fails like any other."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from orgbill.config import Settings
from orgbill.models import WebhookEndpoint
from tests.fixtures.factories import API, create_api_key, create_org, create_superadmin_user
from tests.fixtures.webhook_receiver import Receiver
from tests.webhooks_out.helpers import (
    deliveries,
    endpoint_for,
    of_type,
    org_with_endpoint,
    payloads,
    verified,
)


async def test_delivery_is_signed_per_standard_webhooks(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    _admin, org, endpoint, path = await org_with_endpoint(client, settings, receiver)
    renamed = await client.patch(
        f"{API}/organizations/{org.id}", json={"name": "Signed Org"}, headers=org.owner.headers
    )
    assert renamed.status_code == 200
    [received] = await receiver.wait_for(path, 1)
    payload = verified(received, endpoint["secret"])
    assert payload["type"] == "organization.updated"
    assert payload["data"]["organization_id"] == org.id
    assert payload["data"]["name"] == "Signed Org"
    # The organization object as the API returns it.
    assert payload["data"] == {**renamed.json(), "organization_id": org.id}
    assert payload["timestamp"].endswith("Z")
    assert received.webhook_id.startswith("evt_")
    assert received.headers["webhook-signature"].startswith("v1,")
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60


async def test_endpoints_receive_only_their_types_and_organization(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin = await create_superadmin_user(client, settings)
    first, second = await create_org(client), await create_org(client)
    _, updates_of_first = await endpoint_for(
        client, admin, receiver, first.id, ["organization.updated"]
    )
    _, all_of_second = await endpoint_for(client, admin, receiver, second.id, ["*"])
    _, keys_of_all = await endpoint_for(client, admin, receiver, None, ["api_key.created"])
    for org in (first, second):
        await client.patch(
            f"{API}/organizations/{org.id}", json={"name": "Filtered"}, headers=org.owner.headers
        )
        await create_api_key(client, org.owner, org.id)

    got_first = payloads(await receiver.wait_for(updates_of_first, 1))
    got_second = payloads(await receiver.wait_for(all_of_second, 2))
    keys = [
        p
        for p in payloads(await receiver.wait_for(keys_of_all, 2))
        if p["data"]["organization_id"] in (first.id, second.id)
    ]
    await asyncio.sleep(0.5)  # anything misrouted would have arrived by now
    assert [p["type"] for p in got_first] == ["organization.updated"]
    assert got_first[0]["data"]["organization_id"] == first.id
    assert receiver.at(updates_of_first) and len(receiver.at(updates_of_first)) == 1
    assert sorted(p["type"] for p in payloads(receiver.at(all_of_second))) == [
        "api_key.created",
        "organization.updated",
    ]
    assert {p["data"]["organization_id"] for p in got_second} == {second.id}
    assert sorted(p["data"]["organization_id"] for p in keys) == sorted([first.id, second.id])
    assert {p["type"] for p in keys} == {"api_key.created"}


async def test_a_burst_of_ten_updates_arrives_in_order_even_across_retries(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    _, path = await endpoint_for(client, admin, receiver, org.id, ["organization.updated"])
    # Requests 3 and 4 fail: the third update's first two attempts (in order, it is the
    # third to be sent), and the fourth update must wait for it.
    receiver.fail_next(path, 200, 200, 503, 500)
    names = [f"Burst {i}" for i in range(10)]
    for name in names:
        response = await client.patch(
            f"{API}/organizations/{org.id}", json={"name": name}, headers=org.owner.headers
        )
        assert response.status_code == 200
    received = await receiver.wait_for(path, 12)
    delivered = [p["data"]["name"] for p in payloads(received)]
    # Attempts in arrival order: each name first appears after the previous one succeeded.
    first_seen = list(dict.fromkeys(delivered))
    assert first_seen == names
    assert delivered.count("Burst 2") == 3


async def test_retries_keep_the_same_webhook_id_and_the_log_shows_them(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin, org, endpoint, path = await org_with_endpoint(client, settings, receiver)
    receiver.fail_next(path, 500, 502)
    await client.patch(
        f"{API}/organizations/{org.id}", json={"name": "Retried"}, headers=org.owner.headers
    )
    received = await receiver.wait_for(path, 3)
    assert len(received) == 3
    assert len({r.webhook_id for r in received}) == 1
    assert len({r.body for r in received}) == 1
    for attempt in received:
        verified(attempt, endpoint["secret"])  # each attempt signed afresh, all valid
    log = await _settled(client, admin, endpoint["id"])
    [delivery] = log["data"]
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200
    assert delivery["last_latency_ms"] >= 0
    assert delivery["webhook_id"] == received[0].webhook_id
    assert delivery["next_attempt_at"] is None


async def test_a_delivery_fails_after_the_retry_window_and_a_manual_retry_resends_it(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin, org, endpoint, path = await org_with_endpoint(client, settings, receiver)
    receiver.always_fail(path, 500)
    await client.patch(
        f"{API}/organizations/{org.id}", json={"name": "Doomed"}, headers=org.owner.headers
    )
    failed = await _wait_for_status(client, admin, endpoint["id"], "failed")
    assert failed["last_status_code"] == 500
    assert failed["attempts"] >= 2
    attempts_before = len(receiver.at(path))
    filtered = await deliveries(client, admin, endpoint["id"], status="pending")
    assert filtered["data"] == []

    receiver.recover(path)
    retried = await client.post(
        f"{API}/admin/webhook-deliveries/{failed['id']}/retry", headers=admin.headers
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    delivered = await _wait_for_status(client, admin, endpoint["id"], "delivered")
    received = receiver.at(path)
    assert len(received) == attempts_before + 1
    assert received[-1].webhook_id == received[0].webhook_id == failed["webhook_id"]
    assert delivered["attempts"] == failed["attempts"] + 1


async def test_a_manual_retry_that_fails_again_gets_a_fresh_retry_window(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin, org, endpoint, path = await org_with_endpoint(client, settings, receiver)
    receiver.always_fail(path, 500)
    await client.patch(
        f"{API}/organizations/{org.id}", json={"name": "Twice doomed"}, headers=org.owner.headers
    )
    failed = await _wait_for_status(client, admin, endpoint["id"], "failed")
    retried = await client.post(
        f"{API}/admin/webhook-deliveries/{failed['id']}/retry", headers=admin.headers
    )
    assert retried.status_code == 200, retried.text
    again = await _wait_for_status(client, admin, endpoint["id"], "failed")
    assert again["attempts"] >= failed["attempts"] + 2, (failed, again)  # type: ignore[operator]


async def test_a_delivery_queued_behind_a_failing_one_is_retried_for_its_own_window(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    # CONTRACT "Events to your product": a non-2xx is retried for at least 24 hours (here
    # the fast dispatcher's 2 s). The second update waits, in order, while the first is
    # retried for its whole window; its own window starts at its own first attempt.
    admin, org, endpoint, path = await org_with_endpoint(
        client, settings, receiver, ["organization.updated"]
    )
    receiver.always_fail(path, 503)
    for name in ("First", "Second"):
        response = await client.patch(
            f"{API}/organizations/{org.id}", json={"name": name}, headers=org.owner.headers
        )
        assert response.status_code == 200
    log = (await _settled(client, admin, endpoint["id"], count=2, timeout=20))["data"]
    second, first = log  # newest first
    assert first["status"] == second["status"] == "failed", log
    assert first["attempts"] >= 2, first  # type: ignore[operator]
    assert second["attempts"] >= 2, f"failed after {second['attempts']} attempt(s): {second}"
    window = settings.webhook_retry_window_seconds
    tries = {
        name: [r.at for r in receiver.at(path) if json.loads(r.body)["data"]["name"] == name]
        for name in ("First", "Second")
    }
    assert tries["First"][-1] < tries["Second"][0]  # in order
    # Jitter and latency aside, each was retried for (about) a whole window of its own.
    assert tries["Second"][-1] - tries["Second"][0] >= window * 0.75, tries


async def test_a_stored_url_that_cannot_be_sent_to_is_a_failed_attempt_not_a_stuck_queue(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, app: FastAPI
) -> None:
    # A URL the validator now refuses (httpx raises idna's ValueError, not an httpx error,
    # building the request) may already be stored. Each attempt must still be recorded with
    # its error, the delivery end `failed` and its queue move on; never re-leased forever.
    admin, org, endpoint, _ = await org_with_endpoint(
        client, settings, receiver, ["organization.updated"]
    )
    async with app.state.database.session(writes=True) as session:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(endpoint["id"]))
            .values(url="http://xn--ls8h.la/hook")
        )
        await session.commit()
    try:
        for name in ("Emoji host", "Still queued"):
            response = await client.patch(
                f"{API}/organizations/{org.id}", json={"name": name}, headers=org.owner.headers
            )
            assert response.status_code == 200
        log = (await _settled(client, admin, endpoint["id"], count=2, timeout=20))["data"]
        for delivery in log:
            assert delivery["status"] == "failed", delivery
            assert delivery["attempts"] >= 2, delivery  # type: ignore[operator]
            assert delivery["last_status_code"] is None
            assert "InvalidCodepoint" in str(delivery["last_error"]), delivery
    finally:  # a stuck delivery would otherwise be re-leased for the rest of the session
        await client.delete(
            f"{API}/admin/webhook-endpoints/{endpoint['id']}", headers=admin.headers
        )


async def test_the_delivery_log_pages_with_the_signed_cursor(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin, org, endpoint, path = await org_with_endpoint(client, settings, receiver)
    for i in range(3):
        await client.patch(
            f"{API}/organizations/{org.id}", json={"name": f"Page {i}"}, headers=org.owner.headers
        )
    await receiver.wait_for(path, 3)
    first = await deliveries(client, admin, endpoint["id"], limit=2)
    assert len(first["data"]) == 2 and first["next_cursor"]
    second = await deliveries(client, admin, endpoint["id"], limit=2, cursor=first["next_cursor"])
    assert len(second["data"]) == 1 and second["next_cursor"] is None
    ids = [d["id"] for d in first["data"] + second["data"]]
    assert len(set(ids)) == 3
    cursor = first["next_cursor"]
    edited = ("B" if cursor[0] == "A" else "A") + cursor[1:]  # the signed payload altered
    tampered = await client.get(
        f"{API}/admin/webhook-endpoints/{endpoint['id']}/deliveries",
        params={"cursor": edited},
        headers=admin.headers,
    )
    assert tampered.status_code == 400


async def test_a_receiver_sleeping_15_seconds_slows_no_request_and_no_other_endpoint(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    slow, slow_path = await endpoint_for(client, admin, receiver, org.id)
    _, fast_path = await endpoint_for(client, admin, receiver, org.id)
    receiver.sleep(slow_path, 15)
    try:
        await client.patch(
            f"{API}/organizations/{org.id}", json={"name": "Slow"}, headers=org.owner.headers
        )
        assert await receiver.wait_until_started(slow_path)
        assert await receiver.wait_for(fast_path, 1)  # the other endpoint is not held up
        started = time.perf_counter()
        read = await client.get(f"{API}/organizations/{org.id}", headers=org.owner.headers)
        elapsed = time.perf_counter() - started
        assert read.status_code == 200
        assert receiver.at(slow_path) == []  # still in flight while we read
        assert elapsed < 1.0, elapsed
        # A write that emits is not held up either.
        started = time.perf_counter()
        write = await client.patch(
            f"{API}/organizations/{org.id}", json={"name": "Still fast"}, headers=org.owner.headers
        )
        assert write.status_code == 200
        assert time.perf_counter() - started < 1.0
    finally:
        await client.patch(
            f"{API}/admin/webhook-endpoints/{slow['id']}",
            json={"enabled": False},
            headers=admin.headers,
        )
        receiver.recover(slow_path)


async def test_nothing_is_sent_for_a_change_that_rolled_back(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin, org, endpoint, path = await org_with_endpoint(client, settings, receiver)
    # agents reach 100% (its events are written), then turns pass their hard limit: the
    # whole batch is refused and rolled back, the threshold events with it.
    refused = await client.post(
        f"{API}/usage/events",
        json={
            "events": [{"metric": "agents", "quantity": 2}, {"metric": "turns", "quantity": 501}]
        },
        headers=org.key_headers,
    )
    assert refused.status_code == 429, refused.text
    # A change that commits afterwards is delivered; the rolled-back one never is.
    await client.patch(
        f"{API}/organizations/{org.id}", json={"name": "After"}, headers=org.owner.headers
    )
    received = await receiver.wait_for(path, 1)
    await asyncio.sleep(0.5)
    assert [p["type"] for p in payloads(receiver.at(path))] == ["organization.updated"]
    log = await deliveries(client, admin, endpoint["id"])
    assert [d["event_type"] for d in log["data"]] == ["organization.updated"]
    assert len(received) == 1


async def test_a_contract_starting_and_ending_by_time_alone_is_announced(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    _, path = await endpoint_for(client, admin, receiver, org.id, ["organization.plan_changed"])
    now = datetime.now(UTC)
    starts, ends = now + timedelta(seconds=1), now + timedelta(seconds=2.5)
    put = await client.put(
        f"{API}/admin/organizations/{org.id}/enterprise",
        json={"starts_at": starts.isoformat(), "ends_at": ends.isoformat()},
        headers=admin.headers,
    )
    assert put.status_code == 200, put.text
    # Set, but not started: the plan has not changed yet.
    await asyncio.sleep(0.3)
    assert receiver.at(path) == []
    received = await receiver.wait_for(path, 2, timeout=10)
    changes = [p["data"] for p in payloads(received)]
    assert changes == [
        {
            "organization_id": org.id,
            "from": "free",
            "to": "enterprise",
            "plan_source": "enterprise",
            "previous_plan_source": "free",
        },
        {
            "organization_id": org.id,
            "from": "enterprise",
            "to": "free",
            "plan_source": "free",
            "previous_plan_source": "enterprise",
        },
    ]
    arrived = [r.at for r in received]
    assert arrived[1] - arrived[0] >= 1.0  # the end came by time, not with the start
    await asyncio.sleep(0.6)  # later sweeps announce nothing again
    assert len(receiver.at(path)) == 2


async def test_metrics_count_deliveries_by_status(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, app: FastAPI
) -> None:
    admin, org, endpoint, path = await org_with_endpoint(client, settings, receiver)
    await client.patch(
        f"{API}/organizations/{org.id}", json={"name": "Counted"}, headers=org.owner.headers
    )
    await receiver.wait_for(path, 1)
    await _settled(client, admin, endpoint["id"])
    metrics = (await client.get("/metrics")).text
    delivered = [
        line
        for line in metrics.splitlines()
        if line.startswith('orgbill_webhook_deliveries_total{status="delivered"}')
    ]
    assert delivered and float(delivered[0].split()[-1]) >= 1


async def _wait_for_status(
    client: httpx.AsyncClient, admin: object, endpoint_id: str, status: str, timeout: float = 10
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        log = await deliveries(client, admin, endpoint_id)  # type: ignore[arg-type]
        if log["data"] and log["data"][0]["status"] == status:
            return log["data"][0]
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.05)


async def _settled(
    client: httpx.AsyncClient,
    admin: object,
    endpoint_id: str,
    count: int = 0,
    timeout: float = 10,
) -> dict[str, Any]:
    """The delivery log once it holds at least `count` deliveries and none is pending."""
    deadline = time.monotonic() + timeout
    while True:
        log = await deliveries(client, admin, endpoint_id)  # type: ignore[arg-type]
        if len(log["data"]) >= count and all(d["status"] != "pending" for d in log["data"]):
            return log
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.05)


__all__ = ["of_type"]
