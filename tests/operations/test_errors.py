"""Every error path answers with the contract's envelope and the response's request id."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi import FastAPI

from orgbill.kit.routing import TransactionalRoute
from tests.fixtures.app import client_for, running_app
from tests.fixtures.factories import API, assert_error, create_org, register_user

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


async def test_every_response_has_a_fresh_ulid_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] != ids[1]
    for request_id in ids:
        assert len(request_id) == 26 and set(request_id) <= CROCKFORD


async def test_unknown_route_is_enveloped_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"{API}/no-such-route"), 404, "not_found")


async def test_wrong_method_is_enveloped_405(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete(f"{API}/auth/register"), 405, "method_not_allowed")


async def test_validation_error_has_details_without_echoing_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"{API}/auth/register", json={"email": "not-an-email", "password": "x", "name": ""}
    )
    error = assert_error(response, 422, "validation_error")
    fields = {tuple(d["loc"])[-1] for d in error["details"]}
    assert {"email", "password", "name"} <= fields
    assert "input" not in json.dumps(error["details"])


async def test_malformed_json_is_enveloped_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/auth/register", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "bad_request")


async def test_missing_credentials_is_enveloped_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"{API}/organization"), 401, "unauthorized")


async def test_invalid_pagination_is_enveloped(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    assert_error(
        await client.get(f"{API}/organizations?limit=500", headers=user.headers),
        422,
        "validation_error",
    )
    assert_error(
        await client.get(f"{API}/organizations?cursor=!!!", headers=user.headers),
        400,
        "bad_request",
    )


async def test_unexpected_exception_is_500_without_internals(
    settings: object, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_app(settings) as app:  # type: ignore[arg-type]
        _add_exploding_route(app)
        async with client_for(app) as client:
            with caplog.at_level(logging.ERROR, logger="orgbill.errors"):
                response = await client.get("/explode")
    error = assert_error(response, 500, "internal_error")
    assert "secret-detail" not in response.text and "Traceback" not in response.text
    assert error["message"] == "An unexpected error occurred"


def _add_exploding_route(app: FastAPI) -> None:
    async def explode() -> None:
        raise RuntimeError("secret-detail SELECT * FROM user")

    app.router.routes.append(TransactionalRoute("/explode", explode, methods=["GET"]))


async def test_pagination_walks_every_page_once(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    for n in range(4):
        created = await client.post(
            f"{API}/organizations/{org.id}/api-keys",
            json={"name": f"k{n}"},
            headers=org.owner.headers,
        )
        assert created.status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await client.get(
            f"{API}/organizations/{org.id}/api-keys", params=params, headers=org.owner.headers
        )
        assert page.status_code == 200
        body = page.json()
        seen += [k["id"] for k in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len(set(seen)) == 5


async def test_one_json_access_log_line_per_request(settings: object) -> None:
    import io

    from orgbill.kit.logging import JsonFormatter

    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("orgbill.access")
    enabled = settings.model_copy(update={"access_log": True, "log_level": "INFO"})  # type: ignore[attr-defined]
    async with running_app(enabled) as app:
        access.addHandler(handler)
        try:
            async with client_for(app) as client:
                org = await create_org(client)
                logged.truncate(0)
                logged.seek(0)
                ok = await client.get(
                    f"{API}/organizations/profile/{org.id}", headers=org.key_headers
                )
                missing = await client.get(f"{API}/nope", headers={"X-Api-Key": org.api_key})
        finally:
            access.removeHandler(handler)
    lines = [json.loads(line) for line in logged.getvalue().splitlines() if line.strip()]
    assert len(lines) == 2
    first, second = lines
    assert first["requestId"] == ok.headers["x-request-id"]
    assert first["organizationId"] == org.id and first["status"] == 200
    assert isinstance(first["durationMs"], float) and first["method"] == "GET"
    assert second["status"] == 404 and second["requestId"] == missing.headers["x-request-id"]
    assert org.api_key not in logged.getvalue()  # no secrets in logs
