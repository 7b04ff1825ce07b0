"""The api_key_prefix a user sees names a key that still works: neither revoked nor expired."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from tests.fixtures.factories import API, create_api_key, create_org


async def test_user_visible_api_key_prefix_skips_an_expired_key(
    client: httpx.AsyncClient,
) -> None:
    # README "Organization object": for users, api_key_prefix is "the newest active key's".
    # An expired key is refused (401) like a revoked one, so it is not active.
    org = await create_org(client)
    revoked = await client.delete(
        f"{API}/organizations/{org.id}/api-keys/{org.api_key_id}", headers=org.owner.headers
    )
    assert revoked.status_code == 204
    soon = datetime.now(UTC) + timedelta(seconds=1)
    expiring = await create_api_key(client, org.owner, org.id, expires_at=soon.isoformat())
    await asyncio.sleep(1.3)
    refused = await client.get(f"{API}/organization", headers={"X-Api-Key": expiring["key"]})
    assert refused.status_code == 401  # the key no longer works...

    composite = await client.get(f"{API}/organizations/{org.id}", headers=org.owner.headers)
    listed = await client.get(f"{API}/organizations", headers=org.owner.headers)
    [mine] = [o for o in listed.json()["data"] if o["id"] == org.id]
    # ...so no key works and no prefix is shown as the org's key.
    assert composite.json()["organization"]["api_key_prefix"] is None
    assert mine["api_key_prefix"] is None
