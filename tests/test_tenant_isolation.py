"""Walks every org-scoped route in the app's own OpenAPI schema with a foreign org's API key
and a foreign user's token, and expects 403. A route added later without the guard fails here."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from tests.fixtures.factories import API, OrgHandle, assert_error, create_org, register_user

# Routes that act on the caller's own org (API key) or on X-Organization-Id (user).
CURRENT_ORG_PREFIXES = (
    "/api/v1/organization/",
    "/api/v1/plans/current",
    "/api/v1/billing/",
    "/api/v1/usage",
    "/api/v1/credits",
    "/api/v1/check",
    "/api/v1/reservations/",
)
CURRENT_ORG_EXACT = {"/api/v1/organization"}
ORG_PARAMS = {"org_id", "id", "organization_id"}


def _org_scoped_operations(schema: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(method, path, has org id in path) for every org-scoped operation."""
    operations = []
    for path, item in schema["paths"].items():
        params = set(re.findall(r"{([^}]+)}", path))
        in_path = bool(params & ORG_PARAMS)
        current = path in CURRENT_ORG_EXACT or path.startswith(CURRENT_ORG_PREFIXES)
        if not (in_path or current) or path.startswith("/api/v1/admin"):
            continue
        for method in item:
            operations.append((method.upper(), path, in_path))
    return operations


def _fill(path: str, victim: OrgHandle) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ORG_PARAMS:
            return victim.id
        if name == "user_id":
            return victim.owner.id
        if name == "key_id":
            return victim.api_key_id
        return str(uuid.uuid4())

    return re.sub(r"{([^}]+)}", value, path)


async def test_every_org_scoped_route_refuses_foreign_callers(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    victim = await create_org(client)
    attacker = await create_org(client)
    stranger = await register_user(client, "stranger")
    operations = _org_scoped_operations(app.openapi())
    assert len(operations) >= 12, operations  # the walk must actually cover the routes
    checked = 0
    for method, path, in_path in operations:
        url = _fill(path, victim)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        callers = [attacker.owner.headers, stranger.headers]
        if in_path:
            callers.append(attacker.key_headers)
        for headers in callers:
            if not in_path:
                headers = {**headers, "X-Organization-Id": victim.id}
            response = await client.request(method, url, json=body, headers=headers)
            assert response.status_code == 403, (method, path, response.text)
            assert_error(response, 403, "forbidden")
            checked += 1
    assert checked >= 30
    # and the victim still works: nothing above changed it
    profile = await client.get(
        f"{API}/organizations/profile/{victim.id}", headers=victim.key_headers
    )
    assert profile.status_code == 200


async def test_api_key_cannot_name_another_org_in_the_org_header(
    client: httpx.AsyncClient,
) -> None:
    victim = await create_org(client)
    attacker = await create_org(client)
    response = await client.get(
        f"{API}/organization", headers={**attacker.key_headers, "X-Organization-Id": victim.id}
    )
    assert_error(response, 403, "forbidden")
