"""API keys: shown once, hashed, prefix, expiry, revoke, regenerate, last_used_at."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from orgbill.config import Settings
from orgbill.db import Database
from orgbill.kit.crypto import hash_api_key
from orgbill.models import ApiKey
from tests.fixtures.app import client_for, running_app
from tests.fixtures.factories import API, assert_error, create_api_key, create_org


async def _stored_key(settings: Settings, key_id: str) -> ApiKey:
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=False) as session:
            key = await session.scalar(select(ApiKey).where(ApiKey.id == uuid.UUID(key_id)))
            assert key is not None
            return key
    finally:
        await database.dispose()


async def test_key_is_random_shown_once_and_stored_only_as_keyed_hash(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    created = await create_api_key(client, org.owner, org.id, name="ci")
    plaintext = created["key"]
    assert plaintext.startswith("ob_") and len(plaintext) >= 3 + 32  # ≥160 bits in base64url
    assert created["prefix"] == plaintext[:11]
    stored = await _stored_key(settings, created["id"])
    assert stored.key_hash == hash_api_key(plaintext, settings.api_key_secret)
    assert plaintext not in stored.key_hash
    listed = await client.get(f"{API}/organizations/{org.id}/api-keys", headers=org.owner.headers)
    assert plaintext not in listed.text and "key_hash" not in listed.text
    assert created["id"] in {k["id"] for k in listed.json()["data"]}


async def test_revoked_key_is_refused_on_the_next_request(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    assert (await client.get(f"{API}/organization", headers=org.key_headers)).status_code == 200
    revoke = await client.delete(
        f"{API}/organizations/{org.id}/api-keys/{org.api_key_id}", headers=org.owner.headers
    )
    assert revoke.status_code == 204
    assert_error(
        await client.get(f"{API}/organization", headers=org.key_headers), 401, "unauthorized"
    )
    missing = await client.delete(
        f"{API}/organizations/{org.id}/api-keys/{org.owner.id}", headers=org.owner.headers
    )
    assert_error(missing, 404, "not_found")


async def test_regenerated_key_rejects_old_key_immediately(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    response = await client.post(f"{API}/organization/regenerate-key", headers=org.key_headers)
    assert response.status_code == 200
    body = response.json()
    assert {"id", "name", "api_key", "created_at"} <= set(body)
    assert body["id"] == org.id and body["api_key"] != org.api_key
    assert_error(
        await client.get(f"{API}/organization", headers=org.key_headers), 401, "unauthorized"
    )
    fresh = await client.get(f"{API}/organization", headers={"X-Api-Key": body["api_key"]})
    assert fresh.status_code == 200
    assert body["api_key"] not in fresh.text  # plaintext appears in no later response
    assert fresh.json()["api_key_prefix"] == body["api_key"][:11]
    by_user = await client.post(
        f"{API}/organization/regenerate-key",
        headers={**org.owner.headers, "X-Organization-Id": org.id},
    )
    assert_error(by_user, 403, "forbidden")


async def test_expired_key_is_refused(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    created = await create_api_key(client, org.owner, org.id, expires_at=soon.isoformat())
    past = await client.post(
        f"{API}/organizations/{org.id}/api-keys",
        json={"name": "past", "expires_at": "2020-01-01T00:00:00Z"},
        headers=org.owner.headers,
    )
    assert_error(past, 400, "bad_request")
    await asyncio.sleep(1.2)
    assert_error(
        await client.get(f"{API}/organization", headers={"X-Api-Key": created["key"]}),
        401,
        "unauthorized",
    )


async def test_malformed_and_unknown_keys_are_401(client: httpx.AsyncClient) -> None:
    for key in ("", "nope", "ob_" + "x" * 43, "ob_short"):
        response = await client.get(f"{API}/organization", headers={"X-Api-Key": key})
        assert_error(response, 401, "unauthorized")


async def test_last_used_at_is_recorded_once_a_minute_not_per_request(
    client: httpx.AsyncClient, settings: Settings, app: object
) -> None:
    org = await create_org(client)
    for _ in range(5):
        assert (await client.get(f"{API}/organization", headers=org.key_headers)).status_code == 200
    await app.state.api_key_usage.drain()  # type: ignore[attr-defined]
    first = (await _stored_key(settings, org.api_key_id)).last_used_at
    assert first is not None
    for _ in range(5):
        await client.get(f"{API}/organization", headers=org.key_headers)
    await app.state.api_key_usage.drain()  # type: ignore[attr-defined]
    assert (await _stored_key(settings, org.api_key_id)).last_used_at == first


async def test_revocation_shows_on_another_instance_immediately(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    async with running_app(settings) as other_app, client_for(other_app) as other:
        assert (await other.get(f"{API}/organization", headers=org.key_headers)).status_code == 200
        regenerated = await client.post(
            f"{API}/organization/regenerate-key", headers=org.key_headers
        )
        assert regenerated.status_code == 200
        stale = await other.get(f"{API}/organization", headers=org.key_headers)
        assert_error(stale, 401, "unauthorized")
        new_key = {"X-Api-Key": regenerated.json()["api_key"]}
        assert (await other.get(f"{API}/organization", headers=new_key)).status_code == 200
