"""`/openapi.json` as a client's source of truth, built in one place.

FastAPI describes the routes; this module adds what it cannot know: camelCase operation ids
from the endpoint function names, the security schemes and each operation's, the error
envelope of every status an operation can return (derived from what the route depends on),
the response headers, examples, and enums for the closed sets the schemas carry as strings.
Routers stay free of OpenAPI decoration.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.alias_generators import to_camel

from orgbill.errors import ERROR_CODES, ErrorEnvelope
from orgbill.models import CreditEntryKind, OrganizationStatus, Role
from orgbill.models.stripe_event import StripeEventStatus

API_KEY_SCHEME = "ApiKeyAuth"
BEARER_SCHEME = "BearerAuth"
COOKIE_SCHEME = "SessionCookie"
SECURITY_SCHEMES: dict[str, Any] = {
    API_KEY_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "X-Api-Key",
        "description": "An organization's API key (`ob_…`): acts for that organization.",
    },
    BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user's access token from `POST /api/v1/auth/token`.",
    },
    COOKIE_SCHEME: {
        "type": "apiKey",
        "in": "cookie",
        "name": "orgbill_session",
        "description": "The browser session set by `POST /api/v1/auth/token`; unsafe methods "
        "also need header `X-CSRF-Token` equal to cookie `orgbill_csrf`.",
    },
}
_ANY_CALLER = [{API_KEY_SCHEME: []}, {BEARER_SCHEME: []}, {COOKIE_SCHEME: []}]
_USERS_ONLY = [{BEARER_SCHEME: []}, {COOKIE_SCHEME: []}]

_RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
HEADERS: dict[str, Any] = {
    "X-Request-Id": {
        "description": "This request's id (a 26-character ULID); logs carry it as `requestId`.",
        "schema": {"type": "string", "minLength": 26, "maxLength": 26},
    },
    "X-RateLimit-Limit": {
        "description": "The per-second refill rate of the bucket this request was charged to.",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left in that bucket now.",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Reset": {
        "description": "When that bucket is full again.",
        "schema": {"type": "string", "format": "date-time"},
    },
    "Retry-After": {
        "description": "Whole seconds to wait before retrying (at least 1).",
        "schema": {"type": "integer", "minimum": 1},
    },
    "X-Quota-Reset": {
        "description": "When the metered quotas reset (the end of the billing period). Beside "
        "it, for each metered limit of the plan, `X-Quota-<Metric>-Used` and "
        "`X-Quota-<Metric>-Limit` (e.g. `X-Quota-Turns-Used`).",
        "schema": {"type": "string", "format": "date-time"},
    },
}

# What each error status means, and which codes it carries.
_STATUS_TEXT: dict[int, str] = {
    400: "Bad request",
    401: "Missing, malformed, expired or revoked credentials",
    402: "Not enough credits",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Validation failed (`details` says where and why)",
    429: "Too many requests",
    500: "Unexpected error (never a stack trace)",
    503: "A dependency (the database, Stripe) is unavailable; retry shortly",
}
_STATUS_CODES: dict[int, tuple[str, ...]] = {
    status: tuple(code for code, code_status in ERROR_CODES.items() if code_status == status)
    for status in _STATUS_TEXT
}
_EXAMPLE_MESSAGES: dict[str, str] = {
    "validation_error": "Request validation failed",
    "bad_request": "Malformed JSON body",
    "unauthorized": "Missing credentials: send X-Api-Key or a bearer token",
    "forbidden": "You do not have access to this resource",
    "org_suspended": "This organization is suspended",
    "limit_exceeded": "Plan limit reached",
    "not_found": "Organization not found",
    "conflict": "Conflict",
    "payload_too_large": "Request body exceeds 1048576 bytes",
    "insufficient_credits": "Not enough credits",
    "rate_limited": "Rate limit of 5 requests per second exceeded",
    "quota_exceeded": "Quota exceeded",
    "internal_error": "An unexpected error occurred",
    "unavailable": "Database unavailable, retry shortly",
}
_EXAMPLE_REQUEST_ID = "01JDQ4W3Z5N8X7V2K9M6R3T1YA"

# Statuses a route's dependencies cannot show: decided by its service, named here once.
_SERVICE_ERRORS: dict[str, dict[int, tuple[str, ...]]] = {
    "registerUser": {409: ("conflict",)},
    "createAccessToken": {429: ("rate_limited",)},
    "createOrganization": {409: ("conflict",)},
    "addMember": {403: ("forbidden", "org_suspended", "limit_exceeded"), 409: ("conflict",)},
    "updateMember": {409: ("conflict",)},
    "removeMember": {409: ("conflict",)},
    "recordUsageEvents": {429: ("rate_limited", "quota_exceeded")},
    "consumeCredits": {402: ("insufficient_credits",), 409: ("conflict",)},
    "grantCredits": {403: ("forbidden", "limit_exceeded"), 409: ("conflict",)},
    "receiveStripeWebhook": {400: ("bad_request",)},
    "getSubscription": {404: ("not_found",)},
    "startCheckout": {409: ("conflict",)},
    "getReadiness": {503: ("unavailable",)},
    "check": {409: ("conflict",)},
    "commitReservation": {402: ("insufficient_credits",), 409: ("conflict",)},
    "releaseReservation": {409: ("conflict",)},
    "createWebhookEndpoint": {400: ("bad_request",)},
    "updateWebhookEndpoint": {400: ("bad_request",)},
    "retryWebhookDelivery": {409: ("conflict",)},
}
# Responses that carry the quota headers (seed 004): the success of these, and quota refusals.
_QUOTA_OPERATIONS = frozenset({"getSubscription", "getUsage"})

# Closed sets the response schemas carry as plain strings, typed for clients here.
_SUBSCRIPTION_STATUSES = [
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
]
_ENUMS: dict[tuple[str, str], list[str]] = {
    ("Organization", "status"): [s.value for s in OrganizationStatus],
    ("OrganizationProfile", "status"): [s.value for s in OrganizationStatus],
    ("OrganizationProfile", "plan_source"): ["enterprise", "stripe", "free"],
    ("OrganizationProfile", "sub_status"): _SUBSCRIPTION_STATUSES,
    ("Member", "role"): [r.value for r in Role],
    ("Membership", "role"): [r.value for r in Role],
    ("BillingSubscription", "status"): _SUBSCRIPTION_STATUSES,
    ("BillingInvoice", "status"): ["draft", "open", "paid", "uncollectible", "void"],
    ("StripeEventSummary", "status"): [s.value for s in StripeEventStatus],
    ("WebhookAck", "status"): [s.value for s in StripeEventStatus],
    ("CurrentPlan", "plan_source"): ["enterprise", "stripe", "free"],
    ("CreditEntry", "kind"): [k.value for k in CreditEntryKind],
}


def operation_id(route: APIRoute) -> str:
    """`get_organization_profile` → `getOrganizationProfile`: the endpoint function's name."""
    return to_camel(route.name)


@dataclass(slots=True)
class _RouteFacts:
    """What a route's signature and dependencies say about who may call it and how it fails."""

    authenticated: bool = False
    users_only: bool = False
    org_in_path: bool = False
    org_from_header: bool = False
    has_body: bool = False
    has_params: bool = False
    paginated: bool = False
    path_params: list[str] = field(default_factory=list)


def _walk(dependant: Dependant) -> Iterable[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def _route_facts(route: APIRoute) -> _RouteFacts:
    dependants = list(_walk(route.dependant))
    names: set[str] = set()
    for dependant in dependants[1:]:
        names.add(getattr(dependant.call, "__qualname__", ""))
        names.add(getattr(dependant.call, "__name__", ""))
    facts = _RouteFacts()
    # The auth dependencies (auth/dependencies.py) are recognised by name: org_access /
    # current_org_access build the tenant guard, require_user / require_superadmin gate users.
    facts.org_in_path = any(n.startswith("org_access") for n in names)
    facts.org_from_header = any(n.startswith("current_org_access") for n in names)
    facts.users_only = bool(names & {"require_user", "require_superadmin"})
    facts.authenticated = (
        facts.org_in_path or facts.org_from_header or facts.users_only or "get_principal" in names
    )
    facts.has_body = route.body_field is not None
    facts.paginated = "page_params" in names
    facts.path_params = [p.name for d in dependants for p in d.path_params]
    facts.has_params = any(
        d.path_params or d.query_params or d.header_params or d.cookie_params for d in dependants
    )
    return facts


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _error_statuses(route: APIRoute, facts: _RouteFacts) -> dict[int, tuple[str, ...]]:
    statuses: dict[int, set[str]] = {}

    def add(status: int, *codes: str) -> None:
        statuses.setdefault(status, set()).update(codes)

    if facts.authenticated:
        add(401, "unauthorized")
        add(403, "forbidden")
    if facts.org_in_path or facts.org_from_header:
        add(403, "org_suspended")
        add(404, "not_found")
    if facts.org_from_header:
        add(400, "bad_request")  # a user token without X-Organization-Id
    if facts.path_params:
        add(404, "not_found")
    if facts.paginated:
        add(400, "bad_request")  # a malformed or tampered cursor
    if facts.has_body or route.methods & _BODY_METHODS:
        # The body guard refuses an oversized body before routing, declared or not: the
        # Stripe webhook reads its raw body, and a bodiless POST may still be sent one.
        add(413, "payload_too_large")
    if facts.has_body:
        add(400, "bad_request")
        add(422, "validation_error")
    if facts.has_params:
        add(422, "validation_error")
    add(429, "rate_limited")
    add(500, "internal_error")
    add(503, "unavailable")
    for status, codes in _SERVICE_ERRORS.get(operation_id(route), {}).items():
        add(status, *codes)
    return {status: tuple(sorted(codes)) for status, codes in sorted(statuses.items())}


def _header_refs(names: Iterable[str]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _error_response(status: int, codes: tuple[str, ...], headers: dict[str, Any]) -> dict[str, Any]:
    examples = {
        code: {
            "value": {
                "error": {
                    "code": code,
                    "message": _EXAMPLE_MESSAGES.get(code, code),
                    "request_id": _EXAMPLE_REQUEST_ID,
                }
            }
        }
        for code in codes
    }
    return {
        "description": f"{_STATUS_TEXT.get(status, 'Error')}: "
        + ", ".join(f"`{c}`" for c in codes),
        "headers": headers,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "examples": examples,
            }
        },
    }


def _document_operation(
    operation: dict[str, Any], route: APIRoute, examples: dict[str, Any], api: bool
) -> None:
    facts = _route_facts(route)
    op_id = operation["operationId"]
    if facts.authenticated:
        operation["security"] = _USERS_ONLY if facts.users_only else _ANY_CALLER
    else:
        operation["security"] = []
    common = ["X-Request-Id", *(_RATE_HEADERS if api else ())]
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status_text, response in responses.items():
        if status_text.startswith("2"):
            names = [*common, *(["X-Quota-Reset"] if op_id in _QUOTA_OPERATIONS else [])]
            response["headers"] = {**response.get("headers", {}), **_header_refs(names)}
            example = examples.get(op_id)
            content = response.get("content", {}).get("application/json")
            if example is not None and content is not None:
                content["example"] = example
    errors = (
        _error_statuses(route, facts)
        if api
        else {500: ("internal_error",), **_SERVICE_ERRORS.get(op_id, {})}
    )
    for status, codes in errors.items():
        names = list(common)
        if status == 429:
            names.append("Retry-After")
            if "quota_exceeded" in codes:
                names.append("X-Quota-Reset")
        if status == 404 and op_id in _QUOTA_OPERATIONS:
            names.append("X-Quota-Reset")  # no subscription: the org's quotas still apply
        responses[str(status)] = _error_response(status, codes, _header_refs(names))
    if "422" in responses and "422" not in {str(s) for s in errors}:
        del responses["422"]


def _apply_enums(schemas: dict[str, Any]) -> None:
    for (schema_name, prop), values in _ENUMS.items():
        properties = schemas.get(schema_name, {}).get("properties", {})
        if prop not in properties:
            continue
        spec = properties[prop]
        nullable = any(o.get("type") == "null" for o in spec.get("anyOf", []))
        typed: dict[str, Any] = {"type": "string", "enum": values}
        if nullable:
            replacement: dict[str, Any] = {"anyOf": [typed, {"type": "null"}]}
        else:
            replacement = typed
        if "title" in spec:
            replacement["title"] = spec["title"]
        if "description" in spec:
            replacement["description"] = spec["description"]
        properties[prop] = replacement


def _error_schemas() -> dict[str, Any]:
    schema = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    schema["title"] = "Error"
    return {"Error": schema, **definitions}


def _load_examples() -> dict[str, Any]:
    return json.loads((files("orgbill") / "openapi_examples.json").read_text(encoding="utf-8"))


def build_openapi(app: FastAPI, api_prefix: str) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    # FastAPI's default error models are not what orgbill sends: the envelope is.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(_error_schemas())
    components["securitySchemes"] = SECURITY_SCHEMES
    components["headers"] = HEADERS
    _apply_enums(schemas)
    examples = _load_examples()
    # The route as declared (its dependant) under the path it is served at (with prefix).
    routes = {
        (context.path_format, method.lower()): context.original_route
        for context in routing.iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        for method in context.original_route.methods
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            route = routes.get((path, method))
            if route is not None:
                _document_operation(operation, route, examples, path.startswith(api_prefix))
    return schema


def install_openapi(app: FastAPI, api_prefix: str) -> None:
    """Replace FastAPI's generator with ours (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, api_prefix)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
