"""`GET /usage` warnings follow the contract's thresholds exactly: warning at >= 80%,
critical at >= 100% (CONTRACT.md, "Usage, quotas and credits"). A meter under its limit is
never reported as critical (whose message says new usage is refused), and one under 80% gets
no warning."""

from __future__ import annotations

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, create_org, create_superadmin_user


async def _org_with_turn_limit(client: httpx.AsyncClient, settings: Settings, limit: int):
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    patched = await client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"max_turns_per_period": limit}},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    return org


async def _record(client: httpx.AsyncClient, org, quantity: int) -> httpx.Response:
    return await client.post(
        f"{API}/usage/events",
        json={"events": [{"metric": "turns", "quantity": quantity}]},
        headers=org.key_headers,
    )


async def test_a_meter_one_unit_under_its_hard_limit_is_not_critical(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await _org_with_turn_limit(client, settings, 10_000)
    assert (await _record(client, org, 9_999)).status_code == 200
    usage = await client.get(f"{API}/usage", headers=org.key_headers)
    assert usage.status_code == 200
    turns = [w for w in usage.json()["warnings"] if w["type"] == "turns"]
    # 99.99% of the limit: a warning, not critical ("New turns are refused ...").
    assert [w["severity"] for w in turns] == ["warning"], turns
    # Indeed the next turn is still accepted.
    assert (await _record(client, org, 1)).status_code == 200


async def test_a_meter_just_under_80_percent_gets_no_warning(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await _org_with_turn_limit(client, settings, 10_000)
    recorded = await _record(client, org, 7_996)  # 79.96%
    assert recorded.status_code == 200
    assert [w for w in recorded.json()["warnings"] if w["type"] == "turns"] == []
    usage = await client.get(f"{API}/usage", headers=org.key_headers)
    assert [w for w in usage.json()["warnings"] if w["type"] == "turns"] == []
