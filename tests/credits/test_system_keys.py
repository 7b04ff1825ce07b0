"""The idempotency keys orgbill writes itself (`expiry:…`, `monthly-credits:…`, `checkout:…`,
`reservation:…`) share each table's unique (org, key) with clients' keys: a client key of
those forms is refused on every route that takes one, so it can never pre-empt (and silently
suppress) a ledger entry, a month's grant, a purchase or a reservation's commit."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from orgbill.config import Settings
from orgbill.kit.time import isoformat_z, utcnow
from orgbill.models import CreditLedgerEntry
from tests.credits.test_credits import consume, credits, ledger_sum
from tests.credits.test_grants import _wait_until, admin_grant
from tests.fixtures.factories import API, assert_error, create_org, create_superadmin_user

RESERVED = (
    f"expiry:{uuid.uuid4()}",
    "monthly-credits:2026-12-01T00:00:00Z",
    "checkout:cs_test_1",
    f"reservation:{uuid.uuid4()}",
)


async def test_system_key_forms_are_refused_on_every_route_that_takes_a_key(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    before = (await credits(client, org))["total_credits"]
    for key in RESERVED:
        assert_error(await consume(client, org, 1, key), 422, "validation_error")
        event = {"metric": "turns", "quantity": 1, "idempotency_key": key}
        response = await client.post(
            f"{API}/usage/events", json={"events": [event]}, headers=org.key_headers
        )
        assert_error(response, 422, "validation_error")
        check = {"metric": "turns", "reserve": True, "idempotency_key": key}
        response = await client.post(f"{API}/check", json=check, headers=org.key_headers)
        assert_error(response, 422, "validation_error")
    # Nothing was consumed, recorded or held.
    assert (await credits(client, org))["total_credits"] == before
    usage = (await client.get(f"{API}/usage", headers=org.key_headers)).json()
    assert usage["turns"]["current"] == 0
    # Only those exact forms are reserved (keys compare exactly, case included).
    for index, key in enumerate(("Expiry:1", "expiry", "my-expiry:1", " checkout:1")):
        assert (await consume(client, org, 1, key)).status_code == 200, key
        assert (await credits(client, org))["total_credits"] == before - index - 1


async def test_a_client_key_stored_in_a_system_form_before_they_were_refused_hides_nothing(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    """Data from before the refusal: a consume keyed `expiry:<grant>`. The grant's expiry is
    still entered (without its key), so the ledger keeps summing to the balance."""
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    expires_at = utcnow() + timedelta(seconds=1.5)
    granted = await admin_grant(
        client, admin, org, amount=50, kind="promotional", expires_at=isoformat_z(expires_at)
    )
    grant_id = granted["grant"]["id"]
    assert (await consume(client, org, 1, "legacy")).status_code == 200
    async with app.state.database.session(writes=True) as session:
        await session.execute(
            update(CreditLedgerEntry)
            .where(CreditLedgerEntry.idempotency_key == "legacy")
            .values(idempotency_key=f"expiry:{grant_id}")
        )
        await session.commit()
    await _wait_until(expires_at)
    assert (await consume(client, org, 1, "after-expiry")).status_code == 200
    body = await credits(client, org)
    assert body["total_credits"] == 150 - 1 - 49 - 1
    assert ledger_sum(body) == Decimal(body["total_credits"])
    [expiry] = [e for e in body["ledger"] if e["kind"] == "expiry"]
    assert expiry["amount"] == -49 and expiry["pending"] is False
    assert expiry["idempotency_key"] is None
