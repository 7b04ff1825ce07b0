"""/openapi.json is a client's source of truth: security, camelCase operation ids, the error
envelope per status, headers, date-time and enums; a generated client gets typed errors."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.factories import create_org

CAMEL = re.compile(r"^[a-z]+(?:[A-Z][a-z0-9]*)*$")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    from orgbill.main import create_app
    from tests.fixtures.databases import make_settings

    return create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def _by_id(spec: dict[str, Any], operation_id: str) -> dict[str, Any]:
    return next(op for _, _, op in _operations(spec) if op["operationId"] == operation_id)


def test_every_operation_has_a_unique_camel_case_id(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(spec)]
    assert len(ids) == len(set(ids))
    assert all(CAMEL.match(i) for i in ids), [i for i in ids if not CAMEL.match(i)]
    assert "getOrganizationProfile" in ids and "getCurrentPlan" in ids


def test_security_schemes_and_per_operation_security(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {**schemes["ApiKeyAuth"], "type": "apiKey", "in": "header"}
    assert schemes["ApiKeyAuth"]["name"] == "X-Api-Key"
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert schemes["SessionCookie"] == {
        **schemes["SessionCookie"],
        "in": "cookie",
        "name": "orgbill_session",
    }
    org_scoped = {frozenset(s) for s in _by_id(spec, "getOrganizationProfile")["security"]}
    assert org_scoped == {
        frozenset({"ApiKeyAuth"}),
        frozenset({"BearerAuth"}),
        frozenset({"SessionCookie"}),
    }
    users_only = {frozenset(s) for s in _by_id(spec, "listOrganizations")["security"]}
    assert users_only == {frozenset({"BearerAuth"}), frozenset({"SessionCookie"})}
    assert _by_id(spec, "listPlans")["security"] == []
    assert _by_id(spec, "receiveStripeWebhook")["security"] == []


def test_errors_are_the_envelope_for_every_status_an_operation_can_return(
    spec: dict[str, Any],
) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["Error"]["required"] == ["error"]
    for _, _, operation in _operations(spec):
        responses = operation["responses"]
        assert "500" in responses
        for status, response in responses.items():
            if int(status) >= 400:
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}
                assert content["examples"]
            assert "X-Request-Id" in response["headers"], (operation["operationId"], status)
    profile = _by_id(spec, "getOrganizationProfile")["responses"]
    assert {"401", "403", "404", "429", "503"} <= set(profile)
    assert "org_suspended" in profile["403"]["content"]["application/json"]["examples"]
    assert "Retry-After" in profile["429"]["headers"]
    assert "X-RateLimit-Remaining" in profile["200"]["headers"]
    create = _by_id(spec, "createOrganization")["responses"]
    assert {"400", "409", "413", "422"} <= set(create)
    assert "402" in _by_id(spec, "consumeCredits")["responses"]
    assert "X-Quota-Reset" in _by_id(spec, "getUsage")["responses"]["200"]["headers"]
    quota = _by_id(spec, "recordUsageEvents")["responses"]["429"]
    assert "quota_exceeded" in quota["content"]["application/json"]["examples"]
    assert "401" not in _by_id(spec, "listPlans")["responses"]


def test_timestamps_are_date_time_and_closed_sets_are_enums(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["Organization"]["properties"]["created_at"]["format"] == "date-time"
    assert schemas["Organization"]["properties"]["status"]["enum"] == [
        "ACTIVE",
        "SUSPENDED",
        "DELETED",
    ]
    assert set(schemas["OrganizationProfile"]["properties"]["plan_source"]["enum"]) == {
        "enterprise",
        "stripe",
        "free",
    }
    assert "owner" in schemas["Member"]["properties"]["role"]["enum"]
    codes = schemas["ErrorCode"]["enum"]
    assert {"validation_error", "org_suspended", "quota_exceeded", "unavailable"} <= set(codes)


def test_public_descriptions_carry_no_internal_jargon(spec: dict[str, Any]) -> None:
    text = json.dumps(spec)
    assert not re.search(r"\bseed\s*\d{3}", text, re.IGNORECASE), re.findall(
        r"[^\"]{0,40}\bseed\s*\d{3}[^\"]{0,40}", text, re.IGNORECASE
    )


# The operations the vendor documents show a response for: their examples come from there.
SEEDED_OPERATIONS = {
    "getCurrentOrganization",
    "regenerateKey",
    "getCurrentPlan",
    "getSubscription",
    "listInvoices",
    "getUsage",
    "getOrganizationProfile",
    "getOrganization",
    "listPlans",
}


def test_seeded_operations_carry_examples_that_match_their_response_schema(
    spec: dict[str, Any],
) -> None:
    from fastapi import routing
    from fastapi.routing import APIRoute
    from pydantic import TypeAdapter

    from orgbill.main import create_app
    from orgbill.openapi import operation_id
    from tests.fixtures.databases import make_settings

    app = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    models = {
        operation_id(ctx.original_route): ctx.original_route.response_model
        for ctx in routing.iter_route_contexts(app.routes)
        if isinstance(ctx.original_route, APIRoute)
    }
    for name in SEEDED_OPERATIONS:
        content = _by_id(spec, name)["responses"]["200"]["content"]["application/json"]
        assert "example" in content, name
        TypeAdapter(models[name]).validate_python(content["example"])


@pytest.fixture(scope="module")
def generated_client(spec: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client")
    (root / "openapi.json").write_text(json.dumps(spec))
    (root / "config.yaml").write_text("post_hooks: []\npackage_name_override: orgbill_client\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            "openapi.json",
            "--meta",
            "none",
            "--output-path",
            "orgbill_client",
            "--config",
            "config.yaml",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout
    return root


def test_generated_client_has_clean_module_and_model_names(generated_client: Path) -> None:
    package = generated_client / "orgbill_client"
    modules = {p.stem for p in (package / "api").rglob("*.py")} - {"__init__"}
    assert {"get_organization_profile", "get_current_plan", "list_plans"} <= modules
    assert all(len(m) < 40 and "api_v1" not in m for m in modules), modules
    models = {p.stem for p in (package / "models").glob("*.py")}
    assert {"error", "error_body", "health", "organization_profile"} <= models
    assert not any("api_v1" in m or "response_" in m for m in models), models


async def test_generated_client_parses_errors_into_the_error_model(
    generated_client: Path, app: FastAPI, client: httpx.AsyncClient
) -> None:
    org = await create_org(client)
    sys.path.insert(0, str(generated_client))
    try:
        generated = importlib.import_module("orgbill_client")
        profile_api = importlib.import_module(
            "orgbill_client.api.organizations.get_organization_profile"
        )
        error_model = importlib.import_module("orgbill_client.models.error").Error
        profile_model = importlib.import_module(
            "orgbill_client.models.organization_profile"
        ).OrganizationProfile
    finally:
        sys.path.remove(str(generated_client))
    api = generated.AuthenticatedClient(
        base_url="http://testserver",
        token=org.key_headers["X-Api-Key"],
        prefix="",
        auth_header_name="X-Api-Key",
    )
    api.set_async_httpx_client(
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"X-Api-Key": org.key_headers["X-Api-Key"]},
        )
    )
    ok = await profile_api.asyncio_detailed(org_id=uuid.UUID(str(org.id)), client=api)
    assert ok.status_code == 200 and isinstance(ok.parsed, profile_model)
    assert ok.parsed.id == uuid.UUID(str(org.id))

    forbidden = await profile_api.asyncio_detailed(org_id=uuid.uuid4(), client=api)
    assert forbidden.status_code == 403
    assert isinstance(forbidden.parsed, error_model)
    assert forbidden.parsed.error.code.value == "forbidden"
    assert forbidden.parsed.error.request_id == forbidden.headers["x-request-id"]

    invalid = await api.get_async_httpx_client().get("/api/v1/organizations/profile/not-a-uuid")
    parsed = profile_api._parse_response(client=api, response=invalid)
    assert isinstance(parsed, error_model)
    assert parsed.error.code.value == "validation_error" and parsed.error.details
