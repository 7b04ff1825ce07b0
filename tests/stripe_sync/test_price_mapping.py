"""Which plan a Stripe price means is decided when read, against the live catalog: a `plans sync`
that moves or adds a price id or lookup key re-maps stored subscriptions with no Stripe event."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orgbill.cli import sync_plans
from orgbill.config import Settings
from orgbill.plans.catalog import DEFAULT_PLANS_FILE
from tests.fixtures.factories import API, OrgHandle, create_org
from tests.fixtures.stripe import deliver, new_id, subscription_event
from tests.stripe_sync.helpers import inbox_row, subscription_row

BASE_PLANS = DEFAULT_PLANS_FILE.read_text()
_VERSIONS = itertools.count(10_000)


def plans_file(tmp_path: Path, **plan_lines: dict[str, str]) -> Path:
    """The shipped plans file under a new version, with `stripe_*` lines of named plans set."""
    version = next(_VERSIONS)  # above whatever an earlier test in this database synced
    text = re.sub(r"(?m)^version = \d+$", f"version = {version}", BASE_PLANS, count=1)
    for code, fields in plan_lines.items():
        header = f"[plans.{code}]\n"
        start = text.index(header) + len(header)
        end = text.index("\n[", start)
        section = text[start:end]
        for name, value in fields.items():
            section = re.sub(rf"(?m)^{name} = .*\n", "", section)
            section = f'{name} = "{value}"\n' + section
        text = text[:start] + section + text[end:]
    path = tmp_path / f"plans-{version}.toml"
    path.write_text(text)
    return path


async def plan_views(client: httpx.AsyncClient, org: OrgHandle) -> dict[str, Any]:
    """The plan as every route that shows it says it."""
    key = org.key_headers
    subscription = (await client.get(f"{API}/billing/subscription", headers=key)).json()
    composite = (await client.get(f"{API}/organizations/{org.id}", headers=key)).json()
    organization = (await client.get(f"{API}/organization", headers=key)).json()
    profile = (await client.get(f"{API}/organizations/profile/{org.id}", headers=key)).json()
    return {
        "subscription.plan": subscription["plan"],
        "composite.subscription.plan": composite["subscription"]["plan"],
        "composite.plan": composite["plan"]["code"],
        "organization.plan": organization["plan"],
        "profile.plan_source": profile["plan_source"],
    }


def on_plan(plan: str | None) -> dict[str, Any]:
    shown = plan or "free"
    return {
        "subscription.plan": plan,
        "composite.subscription.plan": plan,
        "composite.plan": shown,
        "organization.plan": shown,
        "profile.plan_source": "stripe" if plan else "free",
    }


@pytest.mark.parametrize("era", ["new", "old"])
async def test_catalog_change_remaps_existing_subscriptions_without_a_stripe_event(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, tmp_path: Path, era: str
) -> None:
    org = await create_org(client)
    sub_id, price, lookup_key = new_id("sub"), new_id("price_launch"), new_id("launch")
    payload = subscription_event(
        "customer.subscription.created",
        sub_id=sub_id,
        customer=new_id("cus"),
        status="active",
        created=int(time.time()),
        org_id=org.id,
        price=price,
        era=era,
    )
    if era == "new":
        payload["data"]["object"]["items"]["data"][0]["price"]["lookup_key"] = lookup_key
    assert (await deliver(client, payload)).status_code == 200
    row = await subscription_row(app, sub_id)
    assert row is not None
    if era == "new":  # the price as Stripe names it is what is stored
        assert (row.stripe_price_id, row.stripe_lookup_key) == (price, lookup_key)
    else:  # 2017: items name a legacy plan, whose id is a price id
        assert (row.stripe_price_id, row.stripe_legacy_plan_id) == (None, price)
    assert await plan_views(client, org) == on_plan(None)

    # The catalog learns the price (by lookup key where Stripe sends one, else by its id).
    learned = {"stripe_lookup_key": lookup_key} if era == "new" else {"stripe_price_id": price}
    await sync_plans(settings, plans_file(tmp_path, business=learned))
    assert await plan_views(client, org) == on_plan("business")

    # The price id moves to pro (business keeps the lookup key: a price id is matched first).
    kept = {"business": learned} if era == "new" else {}
    await sync_plans(settings, plans_file(tmp_path, pro={"stripe_price_id": price}, **kept))
    assert await plan_views(client, org) == on_plan("pro")

    # And back out of the catalog: nothing maps it, the org is on free again.
    await sync_plans(settings, plans_file(tmp_path))
    assert await plan_views(client, org) == on_plan(None)


async def test_webhook_after_a_plans_sync_elsewhere_chooses_its_item_by_the_new_catalog(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, tmp_path: Path
) -> None:
    """Webhooks apply with the catalog this instance last read and check its revision in the
    same transaction: a `plans sync` by another process is applied by the very next event."""
    org = await create_org(client)
    common = {"customer": new_id("cus"), "status": "active", "org_id": org.id}
    warm = subscription_event(
        "customer.subscription.created", sub_id=new_id("sub"), created=int(time.time()), **common
    )
    assert (await deliver(client, warm)).json()["status"] == "processed"
    # Another process's sync: this app is not told, it reads the revision on its next event.
    launch_price = new_id("price_launch")
    await sync_plans(settings, plans_file(tmp_path, business={"stripe_price_id": launch_price}))
    try:
        sub_id = new_id("sub")
        payload = subscription_event(
            "customer.subscription.created", sub_id=sub_id, created=int(time.time()), **common
        )
        items = payload["data"]["object"]["items"]["data"]
        second = json.loads(json.dumps(items[0]))
        second["id"], second["price"]["id"], second["plan"]["id"] = (
            new_id("si"),
            launch_price,
            launch_price,
        )
        items.append(second)
        assert (await deliver(client, payload)).json()["status"] == "processed"
        # Of a pro item and a business one, the business price (the higher plan) is kept.
        row = await subscription_row(app, sub_id)
        assert row is not None and row.stripe_price_id == launch_price
        inbox = await inbox_row(app, payload["id"])
        assert inbox is not None and "plan business" in (inbox.outcome or "")
    finally:
        await sync_plans(settings, plans_file(tmp_path))
