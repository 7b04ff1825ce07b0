from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, create_org, create_superadmin_user


async def test_credits_ledger_pages_hold_at_most_limit_and_walk_pending_entries_in_order(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # CONTRACT: "Lists are paginated: `?limit=` (default 50, max 200) and `?cursor=`"; the
    # ledger always sums to total_credits.
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    expires = datetime.now(UTC) + timedelta(seconds=1)
    granted = await client.post(
        f"{API}/admin/organizations/{org.id}/credits",
        json={"amount": "50", "reason": "trial", "expires_at": expires.isoformat()},
        headers=admin.headers,
    )
    assert granted.status_code == 201, granted.text
    await asyncio.sleep(1.5)  # the grant's expiry is now due, not yet written
    walked: list[dict[str, object]] = []
    params: dict[str, object] = {"limit": 1}
    total = None
    while True:
        page = await client.get(f"{API}/credits", params=params, headers=org.key_headers)
        assert page.status_code == 200, page.text
        body = page.json()
        total = body["total_credits"] if total is None else total
        # Before: the first page held the pending expiry *and* a full page of written entries.
        assert len(body["ledger"]) <= 1, [(e["kind"], e.get("pending")) for e in body["ledger"]]
        walked += body["ledger"]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    # The pending write-off first (it is the newest), then the grant: each once, and the
    # ledger walked page by page sums to the balance shown.
    kinds = [(e["kind"], e.get("pending", False)) for e in walked]
    assert kinds[:2] == [("expiry", True), ("grant", False)], kinds
    assert len({e["id"] for e in walked}) == len(walked)
    assert sum(Decimal(str(e["amount"])) for e in walked) == Decimal(str(total))
    everything = await client.get(f"{API}/credits", params={"limit": 200}, headers=org.key_headers)
    assert [e["id"] for e in everything.json()["ledger"]] == [e["id"] for e in walked]
