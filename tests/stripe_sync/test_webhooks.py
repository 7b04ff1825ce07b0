"""POST /webhooks/stripe: signatures, the inbox, ordering, both API eras, failures."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from orgbill.config import Settings
from tests.fixtures.factories import API, assert_error, create_org, create_superadmin_user
from tests.fixtures.stripe import (
    BUSINESS_PRICE,
    WEBHOOK_URL,
    customer_event,
    deliver,
    event,
    invoice_event,
    new_id,
    signed,
    subscription_event,
)
from tests.stripe_sync.helpers import customer_of, inbox_row, invoice_row, state, subscription_row


async def _profile(client: httpx.AsyncClient, org: Any) -> dict[str, Any]:
    response = await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return response.json()


def _now() -> int:
    return int(time.time())


@pytest.mark.parametrize(
    "mutate",
    ["missing", "wrong_secret", "stale", "future", "tampered", "garbage_header", "no_v1"],
)
async def test_bad_signatures_are_400_and_store_nothing(
    client: httpx.AsyncClient, app: FastAPI, mutate: str
) -> None:
    payload = customer_event(
        "customer.created", customer=new_id("cus"), created=_now(), org_id=None
    )
    body, headers = signed(payload)
    if mutate == "missing":
        headers.pop("Stripe-Signature")
    elif mutate == "wrong_secret":
        body, headers = signed(payload, secret="whsec_not_ours")
    elif mutate == "stale":
        body, headers = signed(payload, timestamp=_now() - 301)
    elif mutate == "future":
        body, headers = signed(payload, timestamp=_now() + 301)
    elif mutate == "tampered":
        body = body.replace(b'"customer.created"', b'"customer.deleted"')
    elif mutate == "garbage_header":
        headers["Stripe-Signature"] = "not a signature"
    elif mutate == "no_v1":
        headers["Stripe-Signature"] = headers["Stripe-Signature"].replace("v1=", "v0=")
    response = await client.post(WEBHOOK_URL, content=body, headers=headers)
    error = assert_error(response, 400, "bad_request")
    assert "whsec" not in error["message"]
    assert await inbox_row(app, payload["id"]) is None


async def test_signature_within_tolerance_and_raw_bytes_are_what_is_verified(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    payload = customer_event(
        "customer.created", customer=new_id("cus"), created=_now(), org_id=None
    )
    # Unusual but valid JSON spacing: verification must use these exact bytes.
    body = json.dumps(payload, indent=3).encode()
    body, headers = signed(body, timestamp=_now() - 290)
    response = await client.post(WEBHOOK_URL, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert (await inbox_row(app, payload["id"])) is not None


async def test_signed_body_that_is_not_an_event_is_400(client: httpx.AsyncClient) -> None:
    for body in (b"not json", b"[]", json.dumps({"id": "evt_1", "type": "x"}).encode()):
        signed_body, headers = signed(body)
        response = await client.post(WEBHOOK_URL, content=signed_body, headers=headers)
        assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("era", ["new", "old"])
async def test_subscription_event_of_either_era_gives_the_paid_plan_on_the_next_request(
    client: httpx.AsyncClient, app: FastAPI, era: str
) -> None:
    org = await create_org(client)
    assert (await _profile(client, org))["plan_source"] == "free"
    assert_error(
        await client.get(f"{API}/billing/subscription", headers=org.key_headers), 404, "not_found"
    )
    created = _now()
    sub_id, customer = new_id("sub"), new_id("cus")
    payload = subscription_event(
        "customer.subscription.created",
        sub_id=sub_id,
        customer=customer,
        status="active",
        created=created,
        org_id=org.id,
        era=era,
    )
    response = await deliver(client, payload)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "received": True,
        "event_id": payload["id"],
        "status": "processed",
        "duplicate": False,
    }
    profile = await _profile(client, org)
    assert profile["plan_source"] == "stripe" and profile["plan_name"] == "Pro"
    assert profile["sub_status"] == "active"
    assert profile["period_end"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(created + 30 * 86400)
    )
    subscription = (await client.get(f"{API}/billing/subscription", headers=org.key_headers)).json()
    assert subscription["stripe_subscription_id"] == sub_id
    assert subscription["plan"] == "pro" and subscription["status"] == "active"
    assert subscription["cancel_at_period_end"] is False
    composite = (await client.get(f"{API}/organizations/{org.id}", headers=org.key_headers)).json()
    assert composite["plan"]["code"] == "pro" and composite["plan"]["plan_source"] == "stripe"
    assert composite["subscription"]["stripe_id"] == sub_id
    # The subscription's metadata linked the org to its customer.
    assert await customer_of(app, org.id) == customer
    row = await inbox_row(app, payload["id"])
    assert row is not None and row.status == "processed" and row.processed_at is not None
    assert row.organization_id == uuid.UUID(org.id) and row.object_id == sub_id


async def test_duplicate_delivery_answers_200_and_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    sub_id, customer, created = new_id("sub"), new_id("cus"), _now()
    first = subscription_event(
        "customer.subscription.created",
        sub_id=sub_id,
        customer=customer,
        status="active",
        created=created,
        org_id=org.id,
    )
    assert (await deliver(client, first)).status_code == 200
    before = await subscription_row(app, sub_id)
    assert before is not None
    # Same event id, but a body saying otherwise: a replay is recognised by id, not content.
    replayed = json.loads(json.dumps(first))
    replayed["data"]["object"]["status"] = "canceled"
    replayed["created"] = created + 10
    response = await deliver(client, replayed)
    assert response.status_code == 200 and response.json()["duplicate"] is True
    after = await subscription_row(app, sub_id)
    assert after is not None and after.status == "active"
    assert after.updated_at == before.updated_at
    row = await inbox_row(app, first["id"])
    assert row is not None and row.attempts == 1


# One subscription's life; each state is what the mirror must show once that event is applied.
_LIFECYCLE: list[tuple[str, str, bool]] = [
    ("customer.subscription.created", "incomplete", False),
    ("customer.subscription.updated", "active", False),
    ("customer.subscription.updated", "past_due", False),
    ("customer.subscription.updated", "active", True),
    ("customer.subscription.deleted", "canceled", False),
]


async def test_every_pair_of_out_of_order_events_keeps_the_newer_state(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    base = _now() - 1000
    for (i, older), (j, newer) in itertools.combinations(enumerate(_LIFECYCLE), 2):
        sub_id, customer = new_id("sub"), new_id("cus")

        def build(
            index: int, spec: tuple[str, str, bool], sub_id: str = sub_id, customer: str = customer
        ) -> dict[str, Any]:
            event_type, status, cancel_at_end = spec
            return subscription_event(
                event_type,
                sub_id=sub_id,
                customer=customer,
                status=status,
                created=base + index * 10,
                org_id=org.id,
                cancel_at_period_end=cancel_at_end,
                era="new" if index % 2 else "old",
            )

        newer_event, older_event = build(j, newer), build(i, older)
        assert (await deliver(client, newer_event)).status_code == 200
        response = await deliver(client, older_event)
        assert response.status_code == 200
        assert response.json()["status"] == "ignored", (i, j)
        expected = {"status": newer[1], "cancel_at_period_end": newer[2]}
        assert state(await subscription_row(app, sub_id)) == expected, (i, j)
        # And in order, the newer one still wins over the older.
        row = await subscription_row(app, sub_id)
        assert row is not None and int(row.stripe_event_created.timestamp()) == base + j * 10


async def test_same_second_events_let_cancellation_win(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    sub_id, customer, created = new_id("sub"), new_id("cus"), _now()
    common = {"sub_id": sub_id, "customer": customer, "created": created, "org_id": org.id}
    deleted = subscription_event("customer.subscription.deleted", status="canceled", **common)
    updated = subscription_event("customer.subscription.updated", status="active", **common)
    assert (await deliver(client, deleted)).status_code == 200
    assert (await deliver(client, updated)).json()["status"] == "ignored"
    assert state(await subscription_row(app, sub_id)) == {
        "status": "canceled",
        "cancel_at_period_end": False,
    }


async def test_past_due_flags_overdue_and_deletion_returns_the_org_to_free(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    sub_id, customer, created = new_id("sub"), new_id("cus"), _now() - 100
    common = {"sub_id": sub_id, "customer": customer, "org_id": org.id, "price": BUSINESS_PRICE}
    await deliver(
        client,
        subscription_event(
            "customer.subscription.created", status="active", created=created, **common
        ),
    )
    assert (await _profile(client, org))["plan_name"] == "Business"
    await deliver(
        client,
        subscription_event(
            "customer.subscription.updated", status="past_due", created=created + 1, **common
        ),
    )
    current = (await client.get(f"{API}/organization", headers=org.key_headers)).json()
    assert current["is_stripe_overdue"] is True and current["plan"] == "business"
    profile = await _profile(client, org)
    assert profile["plan_source"] == "stripe" and profile["sub_status"] == "past_due"
    await deliver(
        client,
        subscription_event(
            "customer.subscription.updated", status="unpaid", created=created + 2, **common
        ),
    )
    current = (await client.get(f"{API}/organization", headers=org.key_headers)).json()
    assert current["is_stripe_overdue"] is True and current["plan"] == "free"
    await deliver(
        client,
        subscription_event(
            "customer.subscription.deleted", status="canceled", created=created + 3, **common
        ),
    )
    profile = await _profile(client, org)
    assert profile["plan_source"] == "free" and profile["plan_name"] == "Free"
    current = (await client.get(f"{API}/organization", headers=org.key_headers)).json()
    assert current["is_stripe_overdue"] is False
    subscription = (await client.get(f"{API}/billing/subscription", headers=org.key_headers)).json()
    assert subscription["status"] == "canceled" and subscription["ended_at"] is not None


@pytest.mark.parametrize("era", ["new", "old"])
async def test_invoice_events_mirror_invoices_in_order(
    client: httpx.AsyncClient, app: FastAPI, era: str
) -> None:
    org = await create_org(client)
    sub_id, customer, created = new_id("sub"), new_id("cus"), _now() - 100
    await deliver(
        client,
        subscription_event(
            "customer.subscription.created",
            sub_id=sub_id,
            customer=customer,
            status="active",
            created=created,
            org_id=org.id,
        ),
    )
    invoice_id = new_id("in")
    common = {"invoice_id": invoice_id, "customer": customer, "sub_id": sub_id, "era": era}
    paid = invoice_event("invoice.paid", status="paid", created=created + 5, **common)
    finalized = invoice_event("invoice.finalized", status="open", created=created + 2, **common)
    assert (await deliver(client, paid)).json()["status"] == "processed"
    assert (await deliver(client, finalized)).json()["status"] == "ignored"
    row = await invoice_row(app, invoice_id)
    assert row is not None and row.status == "paid" and row.amount_paid == 2900
    assert row.organization_id == uuid.UUID(org.id) and row.stripe_subscription_id == sub_id
    listed = (await client.get(f"{API}/billing/invoices", headers=org.key_headers)).json()
    assert listed["next_cursor"] is None
    [invoice] = listed["data"]
    assert invoice["stripe_invoice_id"] == invoice_id
    assert invoice["amount"] == 2900 and invoice["currency"] == "usd"
    assert invoice["status"] == "paid"
    assert invoice["invoice_pdf"].endswith("/pdf") and invoice["hosted_invoice_url"]
    assert invoice["created_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created + 5))


async def test_a_subscriptions_invoices_go_where_it_went_not_to_its_customers_org(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The subscription names org A in its metadata while its customer is linked to org B:
    it is A's, and so is every invoice of it — whether the invoice arrives after it (no
    metadata of its own) or before it (the subscription's metadata copied onto the invoice)."""
    org_a, org_b = await create_org(client), await create_org(client)
    customer, created = new_id("cus"), _now() - 100
    await deliver(
        client,
        customer_event("customer.created", customer=customer, created=created, org_id=org_b.id),
    )
    sub_id = new_id("sub")
    common = {"customer": customer, "status": "active", "org_id": org_a.id}
    created_sub = subscription_event(
        "customer.subscription.created", sub_id=sub_id, created=created + 1, **common
    )
    assert (await deliver(client, created_sub)).json()["status"] == "processed"

    def paid(of_sub: str, at: int) -> dict[str, Any]:
        return invoice_event(
            "invoice.paid",
            invoice_id=new_id("in"),
            customer=customer,
            sub_id=of_sub,
            status="paid",
            created=at,
        )

    after = paid(sub_id, created + 2)
    assert after["data"]["object"]["parent"]["subscription_details"]["metadata"] == {}
    # Before its subscription is known: only the metadata Stripe copied says whose it is.
    before = paid(new_id("sub"), created + 3)
    before["data"]["object"]["parent"]["subscription_details"]["metadata"] = {
        "organization_id": org_a.id
    }
    for invoice in (after, before):
        assert (await deliver(client, invoice)).json()["status"] == "processed"
        row = await invoice_row(app, invoice["data"]["object"]["id"])
        assert row is not None and row.organization_id == uuid.UUID(org_a.id)
    listed_a = (await client.get(f"{API}/billing/invoices", headers=org_a.key_headers)).json()
    assert len(listed_a["data"]) == 2
    listed_b = (await client.get(f"{API}/billing/invoices", headers=org_b.key_headers)).json()
    assert listed_b["data"] == []


async def test_invoices_are_paginated(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    customer, created = new_id("cus"), _now() - 100
    await deliver(
        client,
        customer_event("customer.created", customer=customer, created=created, org_id=org.id),
    )
    ids = []
    for n in range(3):
        invoice_id = new_id("in")
        ids.append(invoice_id)
        payload = invoice_event(
            "invoice.created",
            invoice_id=invoice_id,
            customer=customer,
            sub_id=None,
            status="draft",
            created=created + n,
        )
        assert (await deliver(client, payload)).json()["status"] == "processed"
    first = (await client.get(f"{API}/billing/invoices?limit=2", headers=org.key_headers)).json()
    assert [i["stripe_invoice_id"] for i in first["data"]] == [ids[2], ids[1]]
    second = (
        await client.get(
            f"{API}/billing/invoices",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=org.key_headers,
        )
    ).json()
    assert [i["stripe_invoice_id"] for i in second["data"]] == [ids[0]]
    assert second["next_cursor"] is None


async def test_unknown_event_types_are_stored_and_answered_200(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    payload = event("radar.early_fraud_warning.created", {"id": new_id("issfr")}, _now(), "x")
    response = await deliver(client, payload)
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    row = await inbox_row(app, payload["id"])
    assert row is not None and row.payload == payload


async def test_event_for_an_unknown_org_is_kept_and_applied_once_linked_and_replays_change_nothing(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    sub_id, customer, created = new_id("sub"), new_id("cus"), _now()
    payload = subscription_event(
        "customer.subscription.created",
        sub_id=sub_id,
        customer=customer,
        status="active",
        created=created,
        org_id=str(uuid.uuid4()),  # an org that does not exist
    )
    response = await deliver(client, payload)
    assert response.status_code == 200 and response.json()["status"] == "unmatched"
    assert await subscription_row(app, sub_id) is None
    assert (await _profile(client, org))["plan_source"] == "free"
    listed = await client.get(
        f"{API}/admin/stripe/events", params={"status": "unmatched"}, headers=admin.headers
    )
    assert listed.status_code == 200
    [entry] = [e for e in listed.json()["data"] if e["stripe_event_id"] == payload["id"]]
    assert "no organization" in entry["outcome"] and entry["organization_id"] is None
    # Checkout completion links the customer, and applies the kept event in that transaction.
    checkout = {
        "id": new_id("cs"),
        "object": "checkout.session",
        "client_reference_id": org.id,
        "customer": customer,
        "subscription": sub_id,
        "metadata": {},
    }
    linked = await deliver(client, event("checkout.session.completed", checkout, created, "x"))
    assert linked.json()["status"] == "processed"
    assert await customer_of(app, org.id) == customer
    kept = await inbox_row(app, payload["id"])
    assert kept is not None and (kept.status, kept.attempts) == ("processed", 2)
    assert kept.organization_id == uuid.UUID(org.id)
    assert (await _profile(client, org))["plan_source"] == "stripe"
    replay = await client.post(
        f"{API}/admin/stripe/events/{payload['id']}/replay", headers=admin.headers
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "processed" and replay.json()["attempts"] == 3
    assert (await _profile(client, org))["plan_source"] == "stripe"
    log = await client.get(
        f"{API}/admin/audit-log", params={"organization_id": org.id}, headers=admin.headers
    )
    entry = log.json()["data"][0]
    assert entry["action"] == "stripe_event.replay"
    assert entry["details"]["from"] == "processed" and entry["details"]["to"] == "processed"


async def test_admin_stripe_routes_need_a_superadmin(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    for headers in (org.owner.headers, org.key_headers):
        assert_error(
            await client.get(f"{API}/admin/stripe/events", headers=headers), 403, "forbidden"
        )
        assert_error(
            await client.post(f"{API}/admin/stripe/events/evt_x/replay", headers=headers),
            403,
            "forbidden",
        )


async def _install_failing_trigger(app: FastAPI, sub_id: str) -> None:
    """A real database error on inserting this one subscription (not a patched function)."""
    async with app.state.database.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.execute(
                text(
                    "CREATE TRIGGER fail_sub BEFORE INSERT ON subscription "
                    f"WHEN NEW.stripe_subscription_id = '{sub_id}' "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE FUNCTION fail_sub() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER fail_sub BEFORE INSERT ON subscription FOR EACH ROW "
                    f"WHEN (NEW.stripe_subscription_id = '{sub_id}') EXECUTE FUNCTION fail_sub()"
                )
            )


async def _drop_failing_trigger(app: FastAPI) -> None:
    async with app.state.database.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.execute(text("DROP TRIGGER fail_sub"))
        else:
            await conn.execute(text("DROP TRIGGER fail_sub ON subscription"))
            await conn.execute(text("DROP FUNCTION fail_sub()"))


async def test_database_error_mid_event_is_5xx_with_nothing_applied_and_a_retry_succeeds(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    sub_id, customer = new_id("sub"), new_id("cus")
    payload = subscription_event(
        "customer.subscription.created",
        sub_id=sub_id,
        customer=customer,
        status="active",
        created=_now(),
        org_id=org.id,
    )
    await _install_failing_trigger(app, sub_id)
    try:
        response = await deliver(client, payload)
    finally:
        await _drop_failing_trigger(app)
    error = assert_error(response, 500, "internal_error")
    assert "injected" not in error["message"] and "INSERT" not in error["message"]
    # Nothing of the event survived: not the subscription, not the customer link made before it.
    assert await subscription_row(app, sub_id) is None
    assert await customer_of(app, org.id) is None
    assert (await _profile(client, org))["plan_source"] == "free"
    row = await inbox_row(app, payload["id"])
    assert row is not None and row.status == "failed" and row.processed_at is None
    assert row.error is not None and "injected failure" in row.error
    failed = await client.get(
        f"{API}/admin/stripe/events", params={"status": "failed"}, headers=admin.headers
    )
    assert payload["id"] in [e["stripe_event_id"] for e in failed.json()["data"]]
    # Stripe's retry of the same event now applies it.
    retry = await deliver(client, payload)
    assert retry.status_code == 200 and retry.json()["status"] == "processed"
    assert retry.json()["duplicate"] is False
    assert (await _profile(client, org))["plan_source"] == "stripe"
    assert await customer_of(app, org.id) == customer
    row = await inbox_row(app, payload["id"])
    assert row is not None and row.status == "processed" and row.attempts == 2 and row.error is None
