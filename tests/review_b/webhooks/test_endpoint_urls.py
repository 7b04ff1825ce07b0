"""Webhook endpoint URLs: what the API accepts must be deliverable (or refused up front), and
an endpoint may not aim orgbill's dispatcher at the host's own cloud metadata service."""

from __future__ import annotations

import asyncio
import time

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, create_org, create_superadmin_user
from tests.webhooks_out.helpers import deliveries


async def test_an_accepted_url_that_httpx_cannot_send_to_is_recorded_as_a_failed_attempt(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # `xn--ls8h.la` passes the URL validator (and httpx.URL() at creation), but httpx raises
    # idna's InvalidCodepoint (a ValueError, not an httpx.HTTPError) when it builds the
    # request. The dispatcher only records httpx errors as failed attempts, so this delivery
    # is never recorded: it stays pending with 0 attempts, re-leased forever, never `failed`,
    # and holds back every later event of its (endpoint, organization) queue.
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    created = await client.post(
        f"{API}/admin/webhook-endpoints",
        json={"url": "http://xn--ls8h.la/hook", "events": ["*"], "organization_id": org.id},
        headers=admin.headers,
    )
    if created.status_code in (400, 422):
        return  # refusing such a URL up front is a fine fix too
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["id"]
    try:
        renamed = await client.patch(
            f"{API}/organizations/{org.id}", json={"name": "Emoji host"}, headers=org.owner.headers
        )
        assert renamed.status_code == 200
        deadline = time.monotonic() + 6
        while True:
            [delivery] = (await deliveries(client, admin, endpoint_id))["data"]
            if delivery["attempts"] >= 1:
                break
            assert time.monotonic() < deadline, (
                f"no attempt was ever recorded for the delivery: {delivery}"
            )
            await asyncio.sleep(0.1)
        assert delivery["last_error"], delivery
    finally:  # the stuck delivery would otherwise be re-leased for the rest of the session
        await client.delete(f"{API}/admin/webhook-endpoints/{endpoint_id}", headers=admin.headers)


async def test_an_endpoint_aimed_at_the_cloud_metadata_address_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # SSRF: the dispatcher POSTs signed events to whatever URL is stored, from inside the
    # deployment, and the delivery log reports each attempt's status code and connection
    # error. Link-local addresses (169.254.0.0/16: the instance metadata service of every
    # major cloud) are never a legitimate receiver.
    admin = await create_superadmin_user(client, settings)
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/hook"):
        created = await client.post(
            f"{API}/admin/webhook-endpoints",
            json={"url": url, "events": ["*"]},
            headers=admin.headers,
        )
        if created.status_code == 201:  # leave no endpoint behind for other tests
            await client.delete(
                f"{API}/admin/webhook-endpoints/{created.json()['id']}", headers=admin.headers
            )
        assert created.status_code in (400, 422), (url, created.status_code, created.text)
