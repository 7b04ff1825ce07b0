"""`GET /usage` warnings follow the contract's thresholds exactly: warning at >= 80%,
critical at >= 100% of the limit (CONTRACT.md, "Usage, quotas and credits"), compared on the
counts, not on the rounded percentage shown beside them."""

from __future__ import annotations

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, OrgHandle, create_org, create_superadmin_user
from tests.usage.test_usage_events import post_events, usage


async def org_with_turn_limit(
    client: httpx.AsyncClient, settings: Settings, limit: int
) -> OrgHandle:
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    patched = await client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"max_turns_per_period": limit}},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    return org


def turn_severities(body: dict[str, object]) -> list[str]:
    return [w["severity"] for w in body["warnings"] if w["type"] == "turns"]  # type: ignore[attr-defined, index]


async def test_one_unit_under_a_hard_limit_is_a_warning_not_critical(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await org_with_turn_limit(client, settings, 10_000)
    recorded = await post_events(client, org, {"metric": "turns", "quantity": 9_999})
    assert recorded.status_code == 200, recorded.text
    assert turn_severities(recorded.json()) == ["warning"]
    body = await usage(client, org)
    # Shown rounded (99.99% reads 100.0), but not critical: the next turn is still accepted.
    assert body["turns"] == {"current": 9_999, "limit": 10_000, "percentage": 100.0}
    assert turn_severities(body) == ["warning"]
    assert (await post_events(client, org, {"metric": "turns", "quantity": 1})).status_code == 200
    assert turn_severities(await usage(client, org)) == ["critical"]


async def test_just_under_80_percent_gets_no_warning(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await org_with_turn_limit(client, settings, 10_000)
    recorded = await post_events(client, org, {"metric": "turns", "quantity": 7_996})  # 79.96%
    assert recorded.status_code == 200, recorded.text
    assert turn_severities(recorded.json()) == []
    body = await usage(client, org)
    assert body["turns"]["percentage"] == 80.0  # shown rounded
    assert turn_severities(body) == []
    await post_events(client, org, {"metric": "turns", "quantity": 4})  # exactly 80%
    assert turn_severities(await usage(client, org)) == ["warning"]
