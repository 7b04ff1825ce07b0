"""A catalog change written by `plans sync` (elsewhere) shows on the very next request of
every route, admin routes included; a stored catalog is read leniently, never fatally."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import httpx

from orgbill.config import Settings
from orgbill.plans.catalog import parse_catalog
from tests.entitlements.test_effective_plan import _loaded_document, stored_catalog
from tests.fixtures.factories import API, create_org, create_superadmin_user


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def test_contract_on_a_plan_added_by_a_sync_is_accepted_on_the_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    # This instance has read the current catalog.
    assert (
        await client.get(f"{API}/organizations/{org.id}/plan/explain", headers=org.key_headers)
    ).status_code == 200
    document = await _loaded_document(settings)
    gold = copy.deepcopy(document["plans"]["enterprise"])
    gold["name"] = "Gold"
    gold["rank"] = gold["rank"] + 10
    gold.pop("stripe_price_id", None)
    gold.pop("stripe_lookup_key", None)
    document["plans"]["gold"] = gold
    parse_catalog(document)  # a file `plans sync` accepts
    url = f"{API}/admin/organizations/{org.id}/enterprise"
    async with stored_catalog(settings, document):
        body = {"starts_at": _iso(datetime.now(UTC) - timedelta(days=1)), "plan_code": "gold"}
        put = await client.put(url, json=body, headers=admin.headers)
        try:
            assert put.status_code == 200, put.text
            explain = await client.get(
                f"{API}/organizations/{org.id}/plan/explain", headers=org.key_headers
            )
            assert explain.json()["plan"] == "gold"
        finally:
            await client.delete(url, headers=admin.headers)


async def test_stored_catalog_with_an_odd_meter_serves_normally(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A newer version's catalog whose meter names its limit in a shape this version does not
    know: the meter is skipped (as the lenient reader promises), requests are not 500."""
    org = await create_org(client)
    document = await _loaded_document(settings)
    document["meters"]["logs"]["limit"] = {"name": "max_logs_per_month", "window": "month"}
    async with stored_catalog(settings, document):
        plans = await client.get(f"{API}/plans")
        explain = await client.get(
            f"{API}/organizations/{org.id}/plan/explain", headers=org.key_headers
        )
        assert plans.status_code == 200, plans.text
        assert explain.status_code == 200, explain.text
