"""Two states of one subscription stamped in the same second: the later lifecycle stage wins,
whichever arrives first (incomplete < live statuses < ended), in both API eras."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.factories import API, create_org
from tests.fixtures.stripe import deliver, new_id, subscription_event
from tests.stripe_sync.helpers import subscription_row

# (earlier stage, later stage): Stripe's own order within one second.
SAME_SECOND_PAIRS = [
    ("customer.subscription.created", "incomplete", "customer.subscription.updated", "active"),
    ("customer.subscription.created", "incomplete", "customer.subscription.updated", "trialing"),
    (
        "customer.subscription.created",
        "incomplete",
        "customer.subscription.updated",
        "incomplete_expired",
    ),
    ("customer.subscription.paused", "paused", "customer.subscription.deleted", "canceled"),
]


@pytest.mark.parametrize("era", ["new", "old"])
@pytest.mark.parametrize("reverse", [False, True], ids=["in_order", "reversed"])
@pytest.mark.parametrize(
    ("first_type", "first_status", "then_type", "then_status"), SAME_SECOND_PAIRS
)
async def test_same_second_states_end_on_the_later_lifecycle_stage_in_either_order(
    client: httpx.AsyncClient,
    app: FastAPI,
    era: str,
    reverse: bool,
    first_type: str,
    first_status: str,
    then_type: str,
    then_status: str,
) -> None:
    org = await create_org(client)
    sub_id, created = new_id("sub"), int(time.time())
    common = {
        "sub_id": sub_id,
        "customer": new_id("cus"),
        "created": created,
        "org_id": org.id,
        "era": era,
    }
    earlier = subscription_event(first_type, status=first_status, **common)
    later = subscription_event(then_type, status=then_status, **common)
    for payload in (later, earlier) if reverse else (earlier, later):
        assert (await deliver(client, payload)).status_code == 200
    row = await subscription_row(app, sub_id)
    assert row is not None and row.status == then_status
    profile = await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    paying = then_status in ("active", "trialing")
    assert profile.json()["plan_source"] == ("stripe" if paying else "free")
    assert profile.json()["sub_status"] == then_status


@pytest.mark.parametrize("era", ["new", "old"])
async def test_between_two_live_statuses_in_one_second_the_later_arrival_wins(
    client: httpx.AsyncClient, app: FastAPI, era: str
) -> None:
    """Live statuses move both ways (active ↔ past_due), so neither outranks the other."""
    org = await create_org(client)
    sub_id, created = new_id("sub"), int(time.time())
    common = {"sub_id": sub_id, "customer": new_id("cus"), "created": created, "org_id": org.id}
    for status in ("active", "past_due", "active", "past_due"):
        payload = subscription_event(
            "customer.subscription.updated", status=status, era=era, **common
        )
        assert (await deliver(client, payload)).json()["status"] == "processed"
        row = await subscription_row(app, sub_id)
        assert row is not None and row.status == status
