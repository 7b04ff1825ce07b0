"""Superadmins manage webhook endpoints; the secret is shown once."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from fastapi import FastAPI

from orgbill.config import Settings
from orgbill.models import WebhookEndpoint
from tests.fixtures.factories import (
    API,
    assert_error,
    create_org,
    create_superadmin_user,
    register_user,
)
from tests.webhooks_out.helpers import create_endpoint


async def test_endpoint_crud_shows_the_secret_once(
    client: httpx.AsyncClient, settings: Settings, app: FastAPI
) -> None:
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    created = await create_endpoint(
        client, admin, "https://product.example/hooks", ["organization.updated"], org.id
    )
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 32
    assert created["events"] == ["organization.updated"]
    assert created["organization_id"] == org.id
    assert created["enabled"] is True
    endpoint_url = f"{API}/admin/webhook-endpoints/{created['id']}"

    shown = await client.get(endpoint_url, headers=admin.headers)
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    listed = await client.get(f"{API}/admin/webhook-endpoints", headers=admin.headers)
    assert listed.status_code == 200
    assert created["id"] in [e["id"] for e in listed.json()["data"]]
    assert all("secret" not in e for e in listed.json()["data"])
    # Not stored either: the database holds a nonce the secret is derived from.
    async with app.state.database.reader() as session:
        row = await session.get(WebhookEndpoint, uuid.UUID(created["id"]))
        assert row is not None
        assert secret.removeprefix("whsec_") not in str(row.__dict__)

    patched = await client.patch(
        endpoint_url,
        json={"url": "https://product.example/v2", "events": ["*"], "enabled": False},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["url"] == "https://product.example/v2"
    assert patched.json()["events"] == ["*"]
    assert patched.json()["enabled"] is False
    assert "secret" not in patched.json()

    deleted = await client.delete(endpoint_url, headers=admin.headers)
    assert deleted.status_code == 204
    assert_error(await client.get(endpoint_url, headers=admin.headers), 404, "not_found")


async def test_each_endpoint_gets_its_own_secret(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    first = await create_endpoint(client, admin, "https://a.example/h")
    second = await create_endpoint(client, admin, "https://a.example/h")
    assert first["secret"] != second["secret"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://x.example/h", "events": ["*"]},
        {"url": "https://x.example/h", "events": []},
        {"url": "https://x.example/h", "events": ["organization.exploded"]},
        {"url": "https://x.example/h", "events": ["*"], "secret": "whsec_mine"},
    ],
)
async def test_invalid_endpoint_is_422(
    client: httpx.AsyncClient, settings: Settings, body: dict[str, object]
) -> None:
    admin = await create_superadmin_user(client, settings)
    response = await client.post(f"{API}/admin/webhook-endpoints", json=body, headers=admin.headers)
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # every major cloud's metadata service
        "http://169.254.0.1:8080/hook",
        "http://[fe80::1]/hook",
        "http://[febf:ffff::1]/hook",  # the top of fe80::/10
        "http://[::ffff:a9fe:a9fe]/hook",  # 169.254.169.254, IPv4-mapped
    ],
)
async def test_an_endpoint_aimed_at_a_link_local_address_is_422(
    client: httpx.AsyncClient, settings: Settings, url: str
) -> None:
    # SSRF: the dispatcher POSTs from inside the deployment and the delivery log shows each
    # attempt's status and error, so a link-local URL would let an admin probe the host's
    # cloud metadata service. Refused on create and on update.
    admin = await create_superadmin_user(client, settings)
    created = await client.post(
        f"{API}/admin/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=admin.headers
    )
    assert_error(created, 422, "validation_error")
    endpoint = await create_endpoint(client, admin, "http://127.0.0.1:9/hook")  # loopback: fine
    patched = await client.patch(
        f"{API}/admin/webhook-endpoints/{endpoint['id']}", json={"url": url}, headers=admin.headers
    )
    assert_error(patched, 422, "validation_error")
    await client.delete(f"{API}/admin/webhook-endpoints/{endpoint['id']}", headers=admin.headers)


async def test_an_endpoint_url_no_request_can_be_built_for_is_422(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # httpx.URL() takes `xn--ls8h.la` (an IDNA 2003-only label), but building the request
    # fails on it: such an endpoint could never be delivered to.
    admin = await create_superadmin_user(client, settings)
    url = "http://xn--ls8h.la/hook"
    with pytest.raises(ValueError):
        httpx.Request("POST", url)
    created = await client.post(
        f"{API}/admin/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=admin.headers
    )
    assert_error(created, 422, "validation_error")


async def test_endpoint_for_an_unknown_organization_is_400(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    response = await client.post(
        f"{API}/admin/webhook-endpoints",
        json={
            "url": "https://x.example/h",
            "events": ["*"],
            "organization_id": "00000000-0000-4000-8000-000000000000",
        },
        headers=admin.headers,
    )
    assert_error(response, 400, "bad_request")


async def test_non_superadmins_get_403_on_every_webhook_route(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    endpoint = await create_endpoint(client, admin, "https://x.example/h")
    org = await create_org(client)
    user = await register_user(client, "plain")
    base = f"{API}/admin/webhook-endpoints"
    calls = [
        ("POST", base, {"url": "https://x.example/h", "events": ["*"]}),
        ("GET", base, None),
        ("GET", f"{base}/{endpoint['id']}", None),
        ("PATCH", f"{base}/{endpoint['id']}", {"enabled": False}),
        ("DELETE", f"{base}/{endpoint['id']}", None),
        ("GET", f"{base}/{endpoint['id']}/deliveries", None),
        ("POST", f"{API}/admin/webhook-deliveries/{endpoint['id']}/retry", None),
    ]
    for method, url, body in calls:
        for headers in (user.headers, org.owner.headers):
            response = await client.request(method, url, json=body, headers=headers)
            assert_error(response, 403, "forbidden")
        # An organization's API key is not a superadmin either.
        response = await client.request(method, url, json=body, headers=org.key_headers)
        assert response.status_code in (401, 403), response.text
    still_there = await client.get(f"{base}/{endpoint['id']}", headers=admin.headers)
    assert still_there.status_code == 200
