from __future__ import annotations

import json
from typing import Any

import httpx
from standardwebhooks import Webhook

from orgbill.config import Settings
from tests.fixtures.factories import (
    API,
    OrgHandle,
    UserHandle,
    create_org,
    create_superadmin_user,
)
from tests.fixtures.webhook_receiver import Received, Receiver


async def create_endpoint(
    client: httpx.AsyncClient,
    admin: UserHandle,
    url: str,
    events: list[str] | None = None,
    organization_id: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "events": events or ["*"]}
    if organization_id is not None:
        body["organization_id"] = organization_id
    response = await client.post(f"{API}/admin/webhook-endpoints", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def endpoint_for(
    client: httpx.AsyncClient,
    admin: UserHandle,
    receiver: Receiver,
    organization_id: str | None,
    events: list[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """A new endpoint at a fresh receiver path: (the 201 body with its secret, the path)."""
    path = receiver.new_path()
    endpoint = await create_endpoint(client, admin, receiver.url(path), events, organization_id)
    return endpoint, path


async def org_with_endpoint(
    client: httpx.AsyncClient,
    settings: Settings,
    receiver: Receiver,
    events: list[str] | None = None,
) -> tuple[UserHandle, OrgHandle, dict[str, Any], str]:
    """A superadmin, a new org and an endpoint for that org's events at a fresh path."""
    admin = await create_superadmin_user(client, settings)
    org = await create_org(client)
    endpoint, path = await endpoint_for(client, admin, receiver, org.id, events)
    return admin, org, endpoint, path


def verified(received: Received, secret: str) -> dict[str, Any]:
    """The body, after the standardwebhooks library verified its signature."""
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    assert payload == json.loads(received.body)
    return payload


def payloads(received: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in received]


def of_type(received: list[Received], event_type: str) -> list[dict[str, Any]]:
    return [p for p in payloads(received) if p["type"] == event_type]


async def deliveries(
    client: httpx.AsyncClient, admin: UserHandle, endpoint_id: str, **params: Any
) -> dict[str, Any]:
    response = await client.get(
        f"{API}/admin/webhook-endpoints/{endpoint_id}/deliveries",
        params=params,
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()
