"""POST /check and reservations, through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI

from orgbill.config import Settings
from orgbill.decisions.router import decision_time
from orgbill.plans.catalog import MAX_COUNT_LIMIT
from tests.fixtures.factories import (
    API,
    OrgHandle,
    add_member,
    assert_error,
    create_org,
    create_superadmin_user,
    register_user,
)

CHECK = f"{API}/check"
DECISION_FIELDS = {
    "allowed",
    "code",
    "quantity",
    "limit",
    "used",
    "reserved",
    "remaining",
    "reset_at",
    "plan",
    "plan_source",
    "source",
    "reservation",
}


async def check(client: httpx.AsyncClient, org: OrgHandle, **body: Any) -> dict[str, Any]:
    response = await client.post(CHECK, json=body, headers=org.key_headers)
    assert response.status_code == 200, response.text
    decision = response.json()
    assert set(decision) >= DECISION_FIELDS
    return decision


async def record(client: httpx.AsyncClient, org: OrgHandle, metric: str, quantity: int) -> int:
    response = await client.post(
        f"{API}/usage/events",
        json={"events": [{"metric": metric, "quantity": quantity}]},
        headers=org.key_headers,
    )
    return response.status_code


async def usage(client: httpx.AsyncClient, org: OrgHandle) -> httpx.Response:
    response = await client.get(f"{API}/usage", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return response


async def settle(
    client: httpx.AsyncClient, org: OrgHandle, reservation_id: str, action: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"{API}/reservations/{reservation_id}/{action}",
        json=body or None,
        headers=org.key_headers,
    )


async def admin_patch(
    client: httpx.AsyncClient, settings: Settings, org: OrgHandle, **body: Any
) -> None:
    admin = await create_superadmin_user(client, settings)
    response = await client.patch(
        f"{API}/admin/organizations/{org.id}", json=body, headers=admin.headers
    )
    assert response.status_code == 200, response.text


@contextmanager
def clock_at(app: FastAPI, instant: datetime) -> Iterator[None]:
    """Decisions (checks, commits, releases) see `instant` as now."""
    app.dependency_overrides[decision_time] = lambda: instant
    try:
        yield
    finally:
        app.dependency_overrides.pop(decision_time, None)


# Plain checks


async def test_counter_check_reports_usage_limit_period_and_provenance(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)  # free: 500 turns per period, hard
    assert await record(client, org, "turns", 120) == 200
    decision = await check(client, org, metric="turns", quantity=30)
    period_end = (await usage(client, org)).json()["period_end"]
    assert decision == {
        "allowed": True,
        "code": None,
        "metric": "turns",
        "quantity": 30,
        "limit": 500,
        "used": 120,
        "reserved": 0,
        "remaining": 380,
        "reset_at": period_end,
        "plan": "free",
        "plan_source": "free",
        "source": "plan:free",
        "reservation": None,
    }
    # A plain check holds nothing.
    assert (await check(client, org, metric="turns"))["reserved"] == 0
    refused = await check(client, org, metric="turns", quantity=381)
    assert (refused["allowed"], refused["code"], refused["remaining"]) == (
        False,
        "quota_exceeded",
        380,
    )


async def test_source_is_the_one_plan_explain_shows(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    await admin_patch(client, settings, org, limit_overrides={"max_agents": 7})
    explain = await client.get(
        f"{API}/organizations/{org.id}/plan/explain", headers=org.key_headers
    )
    limits = explain.json()["limits"]
    agents = await check(client, org, metric="agents")
    turns = await check(client, org, metric="turns")
    assert (agents["source"], agents["limit"]) == (limits["max_agents"]["source"], 7)
    assert agents["source"] == "override" and agents["reset_at"] is None  # a gauge never resets
    assert turns["source"] == limits["max_turns_per_period"]["source"] == "plan:free"


async def test_soft_and_unlimited_meters_never_refuse(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)  # free: 1 dataset, soft
    assert await record(client, org, "datasets", 1) == 200
    soft = await check(client, org, metric="datasets", quantity=5)
    assert (soft["allowed"], soft["limit"], soft["used"], soft["remaining"]) == (True, 1, 1, 0)
    await admin_patch(client, settings, org, limit_overrides={"max_turns_per_period": "unlimited"})
    unlimited = await check(client, org, metric="turns", quantity=1_000_000, reserve=True)
    assert unlimited["allowed"] and unlimited["limit"] is None and unlimited["remaining"] is None


async def test_a_hard_limit_beyond_32_bits_admits_usage_and_holds(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # Limits are 64-bit like the totals they bound: the ceiling's parameter is typed as the
    # total's column, not as a 32-bit integer. Past the largest limit is refused, not a 500.
    org = await create_org(client)
    huge = MAX_COUNT_LIMIT
    refused = await client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"max_turns_per_period": huge + 1}},
        headers=(await create_superadmin_user(client, settings)).headers,
    )
    assert refused.status_code in (400, 422), refused.text
    await admin_patch(client, settings, org, limit_overrides={"max_turns_per_period": huge})
    assert await record(client, org, "turns", 5) == 200
    held = await check(client, org, metric="turns", quantity=3, reserve=True)
    assert (held["allowed"], held["limit"], held["used"], held["reserved"]) == (True, huge, 5, 0)
    assert (await usage(client, org)).json()["turns"]["current"] == 5


async def test_features_from_plan_boolean_limits_and_entitlements(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)  # free: features ["basic_analytics"], can_record_calls false
    in_plan = await check(client, org, feature="basic_analytics")
    assert (in_plan["allowed"], in_plan["code"], in_plan["source"]) == (True, None, "plan:free")
    assert in_plan["feature"] == "basic_analytics" and "metric" not in in_plan
    assert in_plan["limit"] is None and in_plan["reservation"] is None
    missing = await check(client, org, feature="sso")
    assert (missing["allowed"], missing["code"], missing["source"]) == (
        False,
        "feature_not_in_plan",
        None,
    )
    off = await check(client, org, feature="can_record_calls")
    assert (off["allowed"], off["code"], off["source"]) == (
        False,
        "feature_not_in_plan",
        "plan:free",
    )
    assert (await check(client, org, feature="can_use_api"))["allowed"] is True
    await admin_patch(
        client,
        settings,
        org,
        entitlements=["sso"],
        limit_overrides={"can_record_calls": True},
    )
    sso = await check(client, org, feature="sso")
    calls = await check(client, org, feature="can_record_calls")
    assert (sso["allowed"], sso["source"]) == (True, "override")
    assert (calls["allowed"], calls["source"]) == (True, "override")


async def test_credits_check_against_total_credits(client: httpx.AsyncClient) -> None:
    org = await create_org(client)  # free: 100 monthly credits (shown before first written)
    decision = await check(client, org, metric="credits", quantity="2.5")
    assert decision["allowed"] and decision["limit"] == 100 and decision["remaining"] == 100
    assert decision["quantity"] == 2.5
    refused = await check(client, org, metric="credits", quantity="100.0001")
    assert (refused["allowed"], refused["code"]) == (False, "insufficient_credits")


# Reservations


async def test_a_hold_counts_as_used_until_released(client: httpx.AsyncClient) -> None:
    org = await create_org(client)  # free: 2 agents, hard gauge
    held = await check(client, org, metric="agents", quantity=2, reserve=True, ttl_seconds=600)
    assert held["allowed"] and held["reserved"] == 0 and held["remaining"] == 2
    hold = held["reservation"]
    assert hold["quantity"] == 2
    expires = datetime.fromisoformat(hold["expires_at"].replace("Z", "+00:00"))
    assert timedelta(seconds=590) < expires - datetime.now(UTC) <= timedelta(seconds=600)

    after = await check(client, org, metric="agents")
    assert (after["allowed"], after["code"], after["reserved"], after["remaining"]) == (
        False,
        "quota_exceeded",
        2,
        0,
    )
    # Every other writer sees the hold too: a usage event cannot take the held room.
    assert await record(client, org, "agents", 1) == 429
    assert (await check(client, org, metric="agents", reserve=True))["reservation"] is None

    released = await settle(client, org, hold["id"], "release")
    assert released.status_code == 200, released.text
    assert released.json()["state"] == "released"
    assert (await check(client, org, metric="agents", quantity=2))["allowed"] is True
    assert await record(client, org, "agents", 2) == 200


async def test_committing_a_counter_records_one_usage_event(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    hold = (await check(client, org, metric="turns", quantity=40, reserve=True))["reservation"]
    second = await check(client, org, metric="turns", quantity=10, reserve=True)
    assert (second["used"], second["reserved"], second["remaining"]) == (0, 40, 460)
    assert (await settle(client, org, second["reservation"]["id"], "release")).status_code == 200
    committed = await settle(client, org, hold["id"], "commit", quantity=25)
    assert committed.status_code == 200, committed.text
    body = committed.json()
    assert (body["state"], body["quantity"], body["committed_quantity"]) == ("committed", 40, 25)
    # Exactly once: a repeated commit returns the stored outcome and records nothing.
    again = await settle(client, org, hold["id"], "commit", quantity=25)
    assert again.status_code == 200 and again.json() == body
    assert (await settle(client, org, hold["id"], "commit")).json() == body
    assert_error(await settle(client, org, hold["id"], "commit", quantity=30), 409, "conflict")
    assert_error(await settle(client, org, hold["id"], "release"), 409, "conflict")

    response = await usage(client, org)
    assert response.json()["turns"]["current"] == 25
    assert response.headers["x-quota-turns-used"] == "25"
    # The rest of the hold was freed.
    decision = await check(client, org, metric="turns")
    assert (decision["used"], decision["reserved"]) == (25, 0)


async def test_committing_a_gauge_changes_its_level(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    hold = (await check(client, org, metric="agents", reserve=True))["reservation"]
    assert (await settle(client, org, hold["id"], "commit")).json()["committed_quantity"] == 1
    assert (await usage(client, org)).json()["agents"]["current"] == 1
    assert await record(client, org, "agents", 1) == 200
    assert await record(client, org, "agents", 1) == 429  # level 2 of 2


async def test_commit_over_the_held_quantity_is_refused(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    hold = (await check(client, org, metric="turns", quantity=3, reserve=True))["reservation"]
    assert_error(
        await settle(client, org, hold["id"], "commit", quantity=4), 422, "validation_error"
    )
    assert_error(
        await settle(client, org, hold["id"], "commit", quantity=0), 422, "validation_error"
    )
    assert (await settle(client, org, hold["id"], "commit", quantity=3)).status_code == 200


async def test_credit_hold_is_spoken_for_and_commit_writes_one_ledger_entry(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)  # 100 monthly credits
    held = await check(client, org, metric="credits", quantity="60.5", reserve=True)
    hold = held["reservation"]
    assert held["allowed"] and hold["quantity"] == 60.5
    consume = await client.post(
        f"{API}/credits/consume",
        json={"amount": 40, "idempotency_key": "over"},
        headers=org.key_headers,
    )
    error = assert_error(consume, 402, "insufficient_credits")
    assert error["details"]["reserved"] == "60.5000"
    ok = await client.post(
        f"{API}/credits/consume",
        json={"amount": "39.5", "idempotency_key": "fits"},
        headers=org.key_headers,
    )
    assert ok.status_code == 200, ok.text
    assert (await check(client, org, metric="credits", quantity="0.0001"))["allowed"] is False

    committed = await settle(client, org, hold["id"], "commit", quantity=50)
    assert committed.status_code == 200, committed.text
    assert (await settle(client, org, hold["id"], "commit", quantity=50)).status_code == 200
    credits = (await client.get(f"{API}/credits", headers=org.key_headers)).json()
    assert credits["total_credits"] == Decimal("10.5")
    entries = [e for e in credits["ledger"] if e["idempotency_key"] == f"reservation:{hold['id']}"]
    assert len(entries) == 1 and entries[0]["amount"] == -50


async def test_repeated_idempotency_key_returns_the_first_decision(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    first = await check(client, org, metric="agents", reserve=True, idempotency_key="job-1")
    assert first["allowed"] and first["reservation"] is not None
    again = await check(client, org, metric="agents", reserve=True, idempotency_key="job-1")
    assert again == first
    # Only one hold was taken.
    assert (await check(client, org, metric="agents"))["reserved"] == 1
    # Even after the state moved on, the key answers what it first answered.
    await settle(client, org, first["reservation"]["id"], "commit")
    assert await check(client, org, metric="agents", reserve=True, idempotency_key="job-1") == first
    # A refusal is remembered too.
    refused = await check(
        client, org, metric="agents", quantity=2, reserve=True, idempotency_key="job-2"
    )
    assert refused["code"] == "quota_exceeded" and refused["reservation"] is None
    assert (
        await check(client, org, metric="agents", quantity=2, reserve=True, idempotency_key="job-2")
        == refused
    )
    # The same key for another check is a conflict.
    reused = await client.post(
        CHECK,
        json={"metric": "agents", "quantity": 2, "reserve": True, "idempotency_key": "job-1"},
        headers=org.key_headers,
    )
    assert_error(reused, 409, "conflict")


async def test_expired_hold_stops_counting_and_cannot_be_settled(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    hold = (await check(client, org, metric="agents", quantity=2, reserve=True, ttl_seconds=1))[
        "reservation"
    ]
    expires = datetime.fromisoformat(hold["expires_at"].replace("Z", "+00:00"))
    with clock_at(app, expires - timedelta(milliseconds=1)):
        assert (await check(client, org, metric="agents"))["reserved"] == 2
    with clock_at(app, expires):
        assert (await check(client, org, metric="agents"))["reserved"] == 0
        assert_error(await settle(client, org, hold["id"], "commit"), 409, "conflict")
        assert_error(await settle(client, org, hold["id"], "release"), 409, "conflict")
        got = await client.get(f"{API}/reservations/{hold['id']}", headers=org.key_headers)
        assert got.json()["state"] == "expired"
        # A new reserve sweeps it (it had already stopped counting).
        again = await check(client, org, metric="agents", quantity=2, reserve=True)
        assert again["allowed"] and again["reserved"] == 0


async def test_a_one_second_hold_expires_for_usage_events_too(client: httpx.AsyncClient) -> None:
    import asyncio

    org = await create_org(client)
    await check(client, org, metric="agents", quantity=2, reserve=True, ttl_seconds=1)
    assert await record(client, org, "agents", 1) == 429
    await asyncio.sleep(1.05)
    assert await record(client, org, "agents", 2) == 200


async def test_suspended_org_gets_a_decision_not_an_error(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    hold = (await check(client, org, metric="turns", reserve=True))["reservation"]
    await admin_patch(client, settings, org, is_suspended=True)
    for body in (
        {"metric": "turns"},
        {"metric": "turns", "reserve": True},
        {"metric": "credits"},
        {"feature": "basic_analytics"},
    ):
        decision = await check(client, org, **body)
        assert (decision["allowed"], decision["code"]) == (False, "org_suspended"), body
        assert decision["reservation"] is None
    assert (await check(client, org, metric="turns"))["reserved"] == 1  # nothing new held
    assert_error(await settle(client, org, hold["id"], "commit"), 403, "org_suspended")


async def test_invalid_checks_are_422(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    for body in (
        {"metric": "turns", "quantity": 0},
        {"metric": "turns", "quantity": -1},
        {"metric": "turns", "ttl_seconds": 86401},
        {"metric": "turns", "ttl_seconds": 0},
        {"metric": "turns", "feature": "sso"},
        {},
        {"quantity": 1},
        {"metric": "nope"},
        {"metric": "turns", "quantity": 1.5},
        {"metric": "turns", "quantity": 1_000_001},
        {"metric": "credits", "quantity": "0.00001"},
        {"metric": "turns", "reserve": "yes"},
        {"feature": "sso", "reserve": True},
        {"metric": "turns", "surprise": 1},
    ):
        response = await client.post(CHECK, json=body, headers=org.key_headers)
        error = assert_error(response, 422, "validation_error")
        assert error["details"], body
    malformed = await client.post(
        CHECK, content=b"[", headers={**org.key_headers, "content-type": "application/json"}
    )
    assert_error(malformed, 400, "bad_request")
    assert (await check(client, org, metric="turns"))["reserved"] == 0


async def test_reservations_are_tenant_guarded(client: httpx.AsyncClient) -> None:
    owner = await create_org(client)
    other = await create_org(client)
    hold = (await check(client, owner, metric="turns", reserve=True))["reservation"]
    for action in ("commit", "release"):
        assert_error(await settle(client, other, hold["id"], action), 404, "not_found")
    response = await client.get(f"{API}/reservations/{hold['id']}", headers=other.key_headers)
    assert_error(response, 404, "not_found")
    # Untouched for its owner.
    assert (await check(client, owner, metric="turns"))["reserved"] == 1
    assert (await settle(client, owner, hold["id"], "release")).status_code == 200


async def test_members_cannot_reserve_but_owners_can_with_the_org_header(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    member = await register_user(client, "member")
    assert (await add_member(client, org, member, "member")).status_code == 201
    as_member = {**member.headers, "X-Organization-Id": org.id}
    refused = await client.post(CHECK, json={"metric": "turns"}, headers=as_member)
    assert_error(refused, 403, "forbidden")
    as_owner = {**org.owner.headers, "X-Organization-Id": org.id}
    allowed = await client.post(CHECK, json={"metric": "turns", "reserve": True}, headers=as_owner)
    assert allowed.status_code == 200 and allowed.json()["allowed"]
