"""POST /usage/events and GET /usage: batches, idempotency, validation, quotas, warnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from orgbill.kit.time import isoformat_z
from tests.fixtures.factories import API, OrgHandle, assert_error, create_org

EVENTS = f"{API}/usage/events"
METERS = {
    "logs",
    "turns",
    "messages",
    "agents",
    "relationships",
    "datasets",
    "chunks",
    "file_storage",
}


async def post_events(
    client: httpx.AsyncClient, org: OrgHandle, *events: dict[str, Any]
) -> httpx.Response:
    return await client.post(EVENTS, json={"events": list(events)}, headers=org.key_headers)


async def usage(client: httpx.AsyncClient, org: OrgHandle) -> dict[str, Any]:
    response = await client.get(f"{API}/usage", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return response.json()


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def test_batch_is_recorded_once_per_idempotency_key(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    batch = (
        {"metric": "logs", "quantity": 5, "idempotency_key": "a"},
        {"metric": "logs", "quantity": 7, "idempotency_key": "b"},
        {"metric": "turns", "quantity": 2},
    )
    first = await post_events(client, org, *batch)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 3 and first.json()["duplicates"] == 0
    # A retried batch: keyed events are duplicates, the unkeyed one counts again.
    again = await post_events(client, org, *batch)
    assert (again.json()["accepted"], again.json()["duplicates"]) == (1, 2)
    # The same key twice inside one batch counts once.
    inner = await post_events(
        client,
        org,
        {"metric": "logs", "quantity": 1, "idempotency_key": "c"},
        {"metric": "logs", "quantity": 1, "idempotency_key": "c"},
    )
    assert (inner.json()["accepted"], inner.json()["duplicates"]) == (1, 1)

    body = await usage(client, org)
    assert body["logs"] == {"current": 13, "limit": 1000, "percentage": 1.3}
    assert body["turns"] == {"current": 4, "limit": 500, "percentage": 0.8}
    assert set(body) >= METERS and body["plan"] == "free" and body["warnings"] == []
    now = datetime.now(UTC)
    assert body["period_start"] == isoformat_z(month_start(now))


async def test_usage_read_carries_quota_headers(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    await post_events(client, org, {"metric": "turns", "quantity": 42})
    response = await client.get(f"{API}/usage", headers=org.key_headers)
    assert response.headers["x-quota-turns-used"] == "42"
    assert response.headers["x-quota-turns-limit"] == "500"
    assert response.headers["x-quota-relationships-limit"] == "50"
    assert response.headers["x-quota-file-storage-used"] == "0"
    reset = datetime.fromisoformat(response.headers["x-quota-reset"].replace("Z", "+00:00"))
    assert reset == datetime.fromisoformat(response.json()["period_end"].replace("Z", "+00:00"))
    assert reset.day == 1 and reset > datetime.now(UTC)


async def test_invalid_events_are_refused_and_nothing_is_recorded(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    now = datetime.now(UTC)
    valid = {"metric": "logs", "quantity": 1, "idempotency_key": "valid"}
    bad_events: list[dict[str, Any]] = [
        {"metric": "nonsense", "quantity": 1},
        {"metric": "logs", "quantity": 1.5},
        {"metric": "logs", "quantity": "3"},
        {"metric": "logs", "quantity": True},
        {"metric": "logs", "quantity": 0},
        {"metric": "logs", "quantity": -1},
        {"metric": "logs", "quantity": 10**12},
        {"metric": "logs", "quantity": 1, "timestamp": isoformat_z(now + timedelta(minutes=10))},
        {
            "metric": "logs",
            "quantity": 1,
            "timestamp": isoformat_z(month_start(now) - timedelta(seconds=1)),
        },
        {"metric": "logs", "quantity": 1, "surprise": "field"},
    ]
    for bad in bad_events:
        response = await post_events(client, org, valid, bad)
        error = assert_error(response, 422, "validation_error")
        assert error["details"], bad
    too_many = [{"metric": "logs", "quantity": 1}] * 1001
    assert_error(await post_events(client, org, *too_many), 400, "bad_request")
    assert_error(
        await client.post(EVENTS, json={"events": []}, headers=org.key_headers),
        422,
        "validation_error",
    )
    assert (await usage(client, org))["logs"]["current"] == 0
    # The valid event's key was never burned by the refused batches.
    accepted = await post_events(client, org, valid)
    assert accepted.json()["accepted"] == 1


async def test_hard_limit_refuses_the_whole_batch_with_quota_headers(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)  # free: 500 turns (hard), 1000 logs (hard)
    assert (await post_events(client, org, {"metric": "turns", "quantity": 490})).status_code == 200
    refused = await post_events(
        client,
        org,
        {"metric": "logs", "quantity": 5, "idempotency_key": "k1"},
        {"metric": "turns", "quantity": 11},
    )
    error = assert_error(refused, 429, "quota_exceeded")
    assert error["details"]["metric"] == "turns" and error["details"]["limit"] == 500
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-quota-turns-used"] == "490"
    assert refused.headers["x-quota-turns-limit"] == "500"
    assert refused.headers["x-quota-logs-used"] == "0"  # the batch's logs were rolled back
    assert "x-quota-reset" in refused.headers
    body = await usage(client, org)
    assert (body["turns"]["current"], body["logs"]["current"]) == (490, 0)

    exactly = await post_events(
        client,
        org,
        {"metric": "logs", "quantity": 5, "idempotency_key": "k1"},
        {"metric": "turns", "quantity": 10},
    )
    assert exactly.status_code == 200 and exactly.json()["accepted"] == 2
    assert [w["severity"] for w in exactly.json()["warnings"]] == ["critical"]
    assert_error(
        await post_events(client, org, {"metric": "turns", "quantity": 1}), 429, "quota_exceeded"
    )
    body = await usage(client, org)
    assert body["turns"] == {"current": 500, "limit": 500, "percentage": 100.0}
    [warning] = [w for w in body["warnings"] if w["type"] == "turns"]
    assert warning["severity"] == "critical" and "500/500 turns" in warning["message"]


async def test_soft_limit_records_past_the_limit_and_warns(client: httpx.AsyncClient) -> None:
    org = await create_org(client)  # free: 1000 messages (soft)
    near = await post_events(client, org, {"metric": "messages", "quantity": 850})
    [warning] = near.json()["warnings"]
    assert warning["severity"] == "warning" and "850/1000 messages" in warning["message"]
    over = await post_events(client, org, {"metric": "messages", "quantity": 250})
    assert over.status_code == 200 and over.json()["accepted"] == 1
    assert over.json()["warnings"][0]["severity"] == "critical"
    body = await usage(client, org)
    assert body["messages"] == {"current": 1100, "limit": 1000, "percentage": 110.0}


async def test_gauge_holds_a_level_and_never_goes_below_zero(client: httpx.AsyncClient) -> None:
    org = await create_org(client)  # free: 2 agents (hard gauge)
    assert (await post_events(client, org, {"metric": "agents", "quantity": 2})).status_code == 200
    assert_error(
        await post_events(client, org, {"metric": "agents", "quantity": 1}), 429, "quota_exceeded"
    )
    # Remove one and add one in the same batch: the net change is what counts.
    swap = await post_events(
        client, org, {"metric": "agents", "quantity": -1}, {"metric": "agents", "quantity": 1}
    )
    assert swap.status_code == 200
    assert (await post_events(client, org, {"metric": "agents", "quantity": -1})).status_code == 200
    assert_error(
        await post_events(client, org, {"metric": "agents", "quantity": -2}),
        422,
        "validation_error",
    )
    assert_error(
        await post_events(client, org, {"metric": "datasets", "quantity": -1}),
        422,
        "validation_error",
    )
    body = await usage(client, org)
    assert body["agents"] == {"current": 1, "limit": 2, "percentage": 50.0}


async def test_user_reports_usage_naming_the_org_in_the_header(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    headers = {**org.owner.headers, "X-Organization-Id": org.id}
    ok = await client.post(
        EVENTS, json={"events": [{"metric": "logs", "quantity": 3}]}, headers=headers
    )
    assert ok.status_code == 200, ok.text
    assert (await client.get(f"{API}/usage", headers=headers)).json()["logs"]["current"] == 3
    assert_error(
        await client.post(
            EVENTS, json={"events": [{"metric": "logs", "quantity": 3}]}, headers=org.owner.headers
        ),
        400,
        "bad_request",
    )
