"""The grants migration turns each organization's single balance into a grant: no existing
credits vanish, and the ledger still sums to the balance."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from orgbill import migrate
from tests.credits.test_credits import consume, credits, ledger_sum
from tests.fixtures.app import client_for, running_app
from tests.fixtures.databases import migrated_settings, off_loop
from tests.fixtures.factories import create_org

GRANTS_REVISION = "c14e0a9f5d21"


async def test_the_grants_migration_keeps_existing_balances_as_a_grant(
    backend: str, tmp_path: Path
) -> None:
    with migrated_settings(backend, tmp_path) as settings:
        async with running_app(settings) as app, client_for(app) as client:
            org = await create_org(client)
            assert (await consume(client, org, "29.5", "before")).status_code == 200
        # Back to the single balance (grants dropped), then forward again.
        off_loop(migrate.downgrade, settings, f"{GRANTS_REVISION}-1")
        off_loop(migrate.upgrade, settings, "head")
        async with running_app(settings) as app, client_for(app) as client:
            body = await credits(client, org)
            [grant] = body["grants"]
            assert grant["kind"] == "grant" and grant["expires_at"] is None
            assert grant["amount"] == grant["remaining"] == 70.5
            assert body["total_credits"] == 70.5
            assert (await consume(client, org, "0.5", "after")).json() == {"total_credits": 70}
            body = await credits(client, org)
    assert ledger_sum(body) == Decimal(70) == Decimal(str(body["total_credits"]))
