"""Plan reads agree with each other, and every change shows on the very next request."""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from orgbill.config import Settings
from orgbill.models import Organization
from tests.fixtures.factories import (
    API,
    OrgHandle,
    assert_error,
    create_org,
    create_superadmin_user,
    register_user,
)
from tests.fixtures.logs import captured_logs
from tests.fixtures.rows import insert_subscription, set_subscription_status


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def all_views(client: httpx.AsyncClient, org: OrgHandle) -> dict[str, Any]:
    key = org.key_headers
    profile = (await client.get(f"{API}/organizations/profile/{org.id}", headers=key)).json()
    composite = (await client.get(f"{API}/organizations/{org.id}", headers=key)).json()
    current = (await client.get(f"{API}/plans/current", headers=key)).json()
    explain = (await client.get(f"{API}/organizations/{org.id}/plan/explain", headers=key)).json()
    organization = (await client.get(f"{API}/organization", headers=key)).json()
    return {
        "profile": profile,
        "composite": composite,
        "current": current,
        "explain": explain,
        "organization": organization,
    }


def assert_consistent(views: dict[str, Any], plan: str, source: str) -> None:
    profile, composite, current, explain = (
        views["profile"],
        views["composite"],
        views["current"],
        views["explain"],
    )
    assert profile["plan_source"] == composite["plan"]["plan_source"] == source
    assert current["plan_source"] == explain["plan_source"] == source
    assert composite["plan"]["code"] == current["current_plan"] == explain["plan"] == plan
    assert views["organization"]["plan"] == plan
    assert profile["plan_name"] == current["plan_details"]["name"] == explain["plan_name"]
    for name in ("max_members", "max_agents", "max_concurrency", "api_rate_limit", "max_credits"):
        value = explain["limits"][name]["value"]
        assert profile[name] == value == composite["plan"]["limits"][name], name
        assert current["plan_details"]["limits"][name] == value, name


async def test_public_catalog(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/plans")
    assert response.status_code == 200
    plans = {p["code"]: p for p in response.json()["data"]}
    assert list(plans)[:4] == ["free", "pro", "business", "enterprise"]
    assert plans["pro"]["price"] == 29 and plans["pro"]["currency"] == "usd"
    assert plans["pro"]["stripe_price_id"] == "price_orgbill_pro_monthly"
    assert plans["free"]["stripe_price_id"] is None
    assert plans["enterprise"]["limits"]["max_logs_per_month"] is None  # unlimited
    assert "webhooks" in plans["pro"]["features"]


async def test_current_plan_has_seed_shape(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    body = (await client.get(f"{API}/plans/current", headers=org.key_headers)).json()
    assert {"current_plan", "plan_source", "plan_details", "usage", "all_plans"} <= set(body)
    details = body["plan_details"]
    assert {"name", "price", "interval", "limits", "description"} <= set(details)
    assert details["limits"]["max_team_members"] == details["limits"]["max_members"]
    assert isinstance(details["limits"]["features"], list)
    assert {"free", "pro", "business", "enterprise"} <= set(body["all_plans"])
    user = await register_user(client)
    assert_error(await client.get(f"{API}/plans/current", headers=user.headers), 400, "bad_request")


async def test_subscription_row_changes_plan_on_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    assert_consistent(await all_views(client, org), "free", "free")
    sub_id = await insert_subscription(settings, org.id, status="active", plan_code="business")
    views = await all_views(client, org)
    assert_consistent(views, "business", "stripe")
    assert views["profile"]["sub_status"] == "active" and views["profile"]["period_end"]
    stripe_layer = next(x for x in views["explain"]["layers"] if x["layer"] == "stripe")
    assert stripe_layer["applied"] and sub_id in stripe_layer["reason"]

    await set_subscription_status(settings, sub_id, "past_due")
    views = await all_views(client, org)
    assert_consistent(views, "business", "stripe")
    assert views["organization"]["is_stripe_overdue"] is True

    await set_subscription_status(settings, sub_id, "canceled")
    views = await all_views(client, org)
    assert_consistent(views, "free", "free")
    stripe_layer = next(x for x in views["explain"]["layers"] if x["layer"] == "stripe")
    assert stripe_layer == {
        "layer": "stripe",
        "applied": False,
        "reason": f"subscription {sub_id} is canceled",
    }


async def test_enterprise_contract_wins_and_expires(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    await insert_subscription(settings, org.id, status="active", plan_code="pro")
    now = datetime.now(UTC)
    url = f"{API}/admin/organizations/{org.id}/enterprise"
    body = {
        "starts_at": iso(now - timedelta(days=1)),
        "overrides": {"max_agents": 4321, "max_logs_per_month": "unlimited"},
    }
    put = await client.put(url, json=body, headers=admin.headers)
    assert put.status_code == 200 and put.json()["active"] is True
    views = await all_views(client, org)
    assert_consistent(views, "enterprise", "enterprise")
    assert views["explain"]["limits"]["max_agents"] == {"value": 4321, "source": "contract"}
    assert views["explain"]["limits"]["max_logs_per_month"] == {"value": None, "source": "contract"}
    assert views["explain"]["limits"]["max_members"]["source"] == "plan:enterprise"

    ended = {"starts_at": iso(now - timedelta(days=30)), "ends_at": iso(now - timedelta(seconds=1))}
    assert (await client.put(url, json=ended, headers=admin.headers)).status_code == 200
    views = await all_views(client, org)
    assert_consistent(views, "pro", "stripe")
    enterprise_layer = views["explain"]["layers"][0]
    assert enterprise_layer["applied"] is False and "ended" in enterprise_layer["reason"]

    assert (await client.put(url, json=body, headers=admin.headers)).status_code == 200
    assert (await client.delete(url, headers=admin.headers)).status_code == 204
    assert_consistent(await all_views(client, org), "pro", "stripe")
    assert_error(await client.delete(url, headers=admin.headers), 404, "not_found")
    log = await client.get(
        f"{API}/admin/audit-log", params={"organization_id": org.id}, headers=admin.headers
    )
    actions = [e["action"] for e in log.json()["data"]]
    assert actions[:2] == ["enterprise_contract.delete", "enterprise_contract.put"]


async def test_bad_contracts_are_rejected(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    url = f"{API}/admin/organizations/{org.id}/enterprise"
    start = "2026-01-01T00:00:00Z"
    for body in (
        {"starts_at": start, "ends_at": "2025-01-01T00:00:00Z"},
        {"starts_at": start, "overrides": {"max_agents": -3}},
        {"starts_at": start, "overrides": {"warp_drive": 1}},
        {"starts_at": "2026-01-01T00:00:00"},
        {"ends_at": start},
    ):
        response = await client.put(url, json=body, headers=admin.headers)
        assert_error(response, 422, "validation_error")
    unknown_plan = await client.put(
        url, json={"starts_at": start, "plan_code": "gold"}, headers=admin.headers
    )
    assert_error(unknown_plan, 400, "bad_request")
    assert_error(
        await client.put(url, json={"starts_at": start}, headers=org.owner.headers),
        403,
        "forbidden",
    )


async def test_org_overrides_show_everywhere_on_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    response = await client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"max_members": 40, "can_record_calls": True}},
        headers=admin.headers,
    )
    assert response.status_code == 200
    views = await all_views(client, org)
    assert_consistent(views, "free", "free")
    assert views["explain"]["limits"]["max_members"] == {"value": 40, "source": "override"}
    assert views["profile"]["can_record_calls"] is True
    bad = await client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"max_members": "many"}},
        headers=admin.headers,
    )
    assert_error(bad, 422, "validation_error")
    cleared = await client.patch(
        f"{API}/admin/organizations/{org.id}", json={"limit_overrides": None}, headers=admin.headers
    )
    assert cleared.status_code == 200
    assert (await all_views(client, org))["explain"]["limits"]["max_members"][
        "source"
    ] == "plan:free"


async def test_member_limit_follows_the_effective_plan(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    for _ in range(2):
        user = await register_user(client)
        added = await client.post(
            f"{API}/organizations/{org.id}/members",
            json={"user_id": user.id},
            headers=org.owner.headers,
        )
        assert added.status_code == 201
    fourth = await register_user(client)
    body = {"user_id": fourth.id}
    members_url = f"{API}/organizations/{org.id}/members"
    assert_error(
        await client.post(members_url, json=body, headers=org.owner.headers), 403, "limit_exceeded"
    )
    await insert_subscription(settings, org.id, status="active", plan_code="pro")
    assert (await client.post(members_url, json=body, headers=org.owner.headers)).status_code == 201


async def test_current_plan_usage_and_subscription_quota_headers_follow_usage_events(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    await insert_subscription(settings, org.id, status="active", plan_code="pro")
    recorded = await client.post(
        f"{API}/usage/events",
        json={"events": [{"metric": "turns", "quantity": 7}, {"metric": "agents", "quantity": 2}]},
        headers=org.key_headers,
    )
    assert recorded.status_code == 200, recorded.text
    current = (await client.get(f"{API}/plans/current", headers=org.key_headers)).json()
    assert current["usage"]["turns"]["current"] == 7
    assert (
        current["usage"]["turns"]["limit"]
        == current["plan_details"]["limits"]["max_turns_per_period"]
    )
    assert current["usage"]["agents"] == {"current": 2, "limit": 10, "percentage": 20.0}
    assert current["usage"]["period_end"]
    subscription = await client.get(f"{API}/billing/subscription", headers=org.key_headers)
    assert subscription.status_code == 200
    assert subscription.headers["x-quota-turns-used"] == "7"
    assert subscription.headers["x-quota-agents-limit"] == "10"
    assert subscription.headers["x-quota-reset"] == current["usage"]["period_end"]


async def test_organization_list_shows_each_orgs_own_plan_and_key_prefix(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await register_user(client)
    paid = await create_org(client, owner)
    free = await create_org(client, owner)
    await insert_subscription(settings, paid.id, status="active", plan_code="business")
    listed = await client.get(f"{API}/organizations", params={"limit": 1}, headers=owner.headers)
    first = listed.json()
    assert len(first["data"]) == 1 and first["next_cursor"]
    second = await client.get(
        f"{API}/organizations", params={"cursor": first["next_cursor"]}, headers=owner.headers
    )
    orgs = {o["id"]: o for o in first["data"] + second.json()["data"]}
    assert orgs[paid.id]["plan"] == "business" and orgs[free.id]["plan"] == "free"
    assert orgs[paid.id]["rate_limit"] == 200
    assert orgs[paid.id]["api_key_prefix"] == paid.api_key[:11]
    assert orgs[free.id]["api_key_prefix"] == free.api_key[:11]


async def test_an_override_stored_past_the_cap_is_shown_refused_anew_and_logged_once(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    """An override stored before counts were capped at 10^12 keeps serving (shown as stored,
    enforcing nothing), is logged once per process rather than on every read, and cannot be
    written again."""
    org = await create_org(client)
    legacy = 10**13 + secrets.randbelow(10**9)  # a value no other test's process has logged
    async with app.state.database.session(writes=True) as session:
        await session.execute(
            update(Organization)
            .where(Organization.id == uuid.UUID(org.id))
            .values(limit_overrides={"max_members": legacy})
        )
        await session.commit()
    with captured_logs(logging.WARNING) as lines:
        for _ in range(3):
            explain = await client.get(
                f"{API}/organizations/{org.id}/plan/explain", headers=org.key_headers
            )
            assert explain.status_code == 200, explain.text
            assert explain.json()["limits"]["max_members"]["value"] == legacy
    kept = [line for line in lines if line["msg"] == "unknown or invalid limit kept as stored"]
    assert len(kept) == 1 and kept[0]["limit"] == "max_members"
    admin = await create_superadmin_user(client, settings)
    again = await client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"max_members": legacy}},
        headers=admin.headers,
    )
    assert_error(again, 422, "validation_error")
