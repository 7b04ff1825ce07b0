"""Events a product receives: non-changes, keys that already stopped working, catalog
re-mapping."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from orgbill.cli import sync_plans
from orgbill.config import Settings
from orgbill.plans.catalog import DEFAULT_PLANS_FILE
from tests.fixtures.factories import API, create_api_key
from tests.fixtures.stripe import deliver, new_id, subscription_event
from tests.fixtures.webhook_receiver import Receiver
from tests.webhooks_out.helpers import org_with_endpoint, payloads


async def _settle(receiver: Receiver, path: str, count: int) -> list[dict[str, Any]]:
    await receiver.wait_for(path, count)
    await asyncio.sleep(0.6)
    return payloads(receiver.at(path))


async def test_a_patch_that_changes_nothing_sends_no_organization_updated(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    # CONTRACT: organization.updated is for a change; the admin PATCH already sends nothing
    # when nothing changed. The owner's PATCH resending the org's current name must not either.
    admin, org, _, path = await org_with_endpoint(
        client, settings, receiver, ["organization.updated"]
    )
    current = (await client.get(f"{API}/organizations/{org.id}", headers=org.owner.headers)).json()
    name = current["organization"]["name"]
    same = await client.patch(
        f"{API}/organizations/{org.id}", json={"name": name}, headers=org.owner.headers
    )
    assert same.status_code == 200, same.text
    admin_same = await client.patch(
        f"{API}/admin/organizations/{org.id}", json={"kyc_level": 0}, headers=admin.headers
    )
    assert admin_same.status_code == 200, admin_same.text
    # A real change afterwards, so the test knows delivery is running.
    real = await client.patch(
        f"{API}/organizations/{org.id}", json={"name": name + " renamed"}, headers=org.owner.headers
    )
    assert real.status_code == 200
    events = await _settle(receiver, path, 1)
    assert [e["data"]["name"] for e in events] == [name + " renamed"]


async def test_deleting_an_org_does_not_announce_revoking_a_key_that_already_expired(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    # README: deleting the org sends api_key.revoked "one per live key"; a key past its
    # expires_at stopped working on its own and is not revoked by the deletion.
    _, org, _, path = await org_with_endpoint(client, settings, receiver, ["api_key.revoked"])
    expiring = await create_api_key(
        client,
        org.owner,
        org.id,
        name="short lived",
        expires_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
    )
    await asyncio.sleep(1.5)
    refused = await client.get(
        f"{API}/organizations/profile/{org.id}", headers={"X-Api-Key": expiring["key"]}
    )
    assert refused.status_code == 401  # it already stopped working
    deleted = await client.delete(f"{API}/organizations/{org.id}", headers=org.owner.headers)
    assert deleted.status_code == 204
    events = await _settle(receiver, path, 1)
    assert [e["data"]["id"] for e in events] == [org.api_key_id]


_VERSION = iter(range(50_000, 60_000))


def _plans_file(tmp_path: Path, business_price: str | None) -> Path:
    version = next(_VERSION)
    text = re.sub(
        r"(?m)^version = \d+$", f"version = {version}", DEFAULT_PLANS_FILE.read_text(), count=1
    )
    if business_price is not None:
        header = "[plans.business]\n"
        start = text.index(header) + len(header)
        end = text.index("\n[", start)
        section = re.sub(r"(?m)^stripe_price_id = .*\n", "", text[start:end])
        text = text[:start] + f'stripe_price_id = "{business_price}"\n' + section + text[end:]
    path = tmp_path / f"plans-{version}.toml"
    path.write_text(text)
    return path


async def test_a_plans_sync_that_moves_an_org_to_another_plan_announces_plan_changed(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    # README: a `plans sync` that adds a price id re-maps existing subscriptions at once (the
    # effective plan moves, every response shows it). CONTRACT: plan_changed for every change of
    # the effective plan; a real change never announced is a defect.
    _, org, _, path = await org_with_endpoint(
        client, settings, receiver, ["organization.plan_changed"]
    )
    price = new_id("price_launch")
    created = subscription_event(
        "customer.subscription.created",
        sub_id=new_id("sub"),
        customer=new_id("cus"),
        status="active",
        created=int(time.time()),
        org_id=org.id,
        price=price,
    )
    assert (await deliver(client, created)).status_code == 200
    profile = f"{API}/organizations/profile/{org.id}"
    assert (await client.get(profile, headers=org.key_headers)).json()["plan_source"] == "free"
    await sync_plans(settings, _plans_file(tmp_path, price))
    try:
        shown = (await client.get(f"{API}/organization", headers=org.key_headers)).json()
        assert shown["plan"] == "business"  # the plan moved
        events = await _settle(receiver, path, 1)
        assert [(e["data"]["from"], e["data"]["to"]) for e in events] == [("free", "business")]
    finally:
        await sync_plans(settings, _plans_file(tmp_path, None))
