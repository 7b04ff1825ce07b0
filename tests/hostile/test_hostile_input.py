"""Hostile input on every write path and every list, on SQLite and PostgreSQL: refused with
the contract's envelope (413, 422, 400), never a 5xx; and what is accepted round-trips."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args, get_origin

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import ValidationError

from orgbill.config import Settings
from orgbill.kit.schemas import RequestSchema
from tests.fixtures.factories import (
    API,
    OrgHandle,
    UserHandle,
    add_member,
    assert_error,
    create_api_key,
    create_org,
    create_superadmin_user,
    register_user,
)
from tests.fixtures.stripe import WEBHOOK_URL, signed

ONE_MIB = 1024 * 1024


def nested(depth: int) -> dict[str, Any]:
    """A JSON object `depth` levels deep (the object itself is level 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def raw_json(text: str, headers: dict[str, str]) -> dict[str, Any]:
    # Hand-written JSON text, so escapes such as \udfff reach the server unchanged.
    return {"content": text.encode(), "headers": {**headers, "Content-Type": "application/json"}}


# Body size


async def test_a_body_over_the_limit_is_413_before_it_is_parsed(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    big = {"preferences": {"blob": "x" * (ONE_MIB + 10)}}
    response = await client.patch(
        f"{API}/organizations/{org.id}", json=big, headers=org.key_headers
    )
    assert_error(response, 413, "payload_too_large")
    # Not JSON at all: still refused on size alone, before any parsing.
    junk = await client.post(
        f"{API}/usage/events",
        content=b"{" * (ONE_MIB + 1),
        headers={**org.key_headers, "Content-Type": "application/json"},
    )
    assert_error(junk, 413, "payload_too_large")
    stored = await client.get(f"{API}/organization", headers=org.key_headers)
    assert stored.json()["preferences"] == {}


async def test_every_operation_refuses_an_oversized_body_and_documents_that_413(
    client: httpx.AsyncClient,
) -> None:
    """The guard sits before routing: any operation a client sends a body to, with a body
    declared or not (the Stripe webhook reads its raw body; a release takes none), answers
    413, and says so in its spec."""
    org = await create_org(client)
    spec = (await client.get("/openapi.json")).json()
    oversized = b"x" * (ONE_MIB + 1)
    tried = 0
    for path, methods in spec["paths"].items():
        url = path.replace("{org_id}", org.id)
        url = re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), url)
        for method, operation in methods.items():
            if method == "get":
                continue  # a GET with a body: refused alike, but no client sends one
            assert "413" in operation["responses"], (operation["operationId"], "undocumented")
            response = await client.request(
                method.upper(), url, content=oversized, headers=org.key_headers
            )
            assert_error(response, 413, "payload_too_large")
            tried += 1
    assert tried >= 30 and f"{API}/webhooks/stripe" in spec["paths"]


async def test_a_chunked_body_without_a_length_is_counted_as_it_streams(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"preferences": {"blob": "'
        for _ in range(20):
            yield b"y" * (64 * 1024)
        yield b'"}}'

    response = await client.patch(
        f"{API}/organizations/{org.id}",
        content=chunks(),
        headers={**org.key_headers, "Content-Type": "application/json"},
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")

    async def webhook_chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * (64 * 1024)

    # The webhook route reads the raw body itself: the same guard applies.
    webhook = await client.post(WEBHOOK_URL, content=webhook_chunks())
    assert_error(webhook, 413, "payload_too_large")


async def test_a_body_just_under_the_limit_is_parsed_normally(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    padded = b'{"name": "Padded"' + b" " * (ONE_MIB - 100) + b"}"
    response = await client.patch(
        f"{API}/organizations/{org.id}",
        content=padded,
        headers={**org.key_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Padded"


# Free-form JSON: depth, size, text, numbers


@pytest.mark.parametrize("field", ["preferences", "partner_configuration"])
async def test_free_form_json_is_bounded_in_depth_and_size(
    client: httpx.AsyncClient, field: str
) -> None:
    org = await create_org(client)
    url = f"{API}/organizations/{org.id}"
    ok = await client.patch(url, json={field: nested(32)}, headers=org.key_headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()[field] == nested(32)
    for depth in (33, 500, 900):
        deep = await client.patch(url, json={field: nested(depth)}, headers=org.key_headers)
        assert_error(deep, 422, "validation_error")
    large = await client.patch(
        url, json={field: {"blob": "z" * (16 * 1024)}}, headers=org.key_headers
    )
    assert_error(large, 422, "validation_error")
    for bad in ('{"k": "\\udfff"}', '{"\\ud800": 1}', '{"k": "a\\u0000b"}', '{"k": NaN}'):
        response = await client.patch(
            url,
            **raw_json(f'{{"{field}": {bad}}}', org.key_headers),
        )
        assert_error(response, 422, "validation_error")
    huge = await client.patch(
        url,
        **raw_json(f'{{"{field}": {{"n": {2**64}}}}}', org.key_headers),
    )
    assert_error(huge, 422, "validation_error")
    # Still the value stored by the one accepted write, and reads still serialise it.
    read = await client.get(f"{API}/organization", headers=org.key_headers)
    assert read.status_code == 200 and read.json()[field] == nested(32)


async def test_admin_overrides_are_free_form_json_too(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    response = await client.patch(
        f"{API}/admin/organizations/{org.id}",
        **raw_json('{"limit_overrides": {"\\udfff": 5}}', admin.headers),
    )
    assert_error(response, 422, "validation_error")


# Text: NUL bytes and lone surrogates on every text field


async def _write_paths(
    client: httpx.AsyncClient, settings: Settings
) -> list[tuple[str, str, dict[str, str], str]]:
    """(method, url, headers, JSON body template with {bad}) for every text field."""
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    other = await register_user(client, "other")
    key = org.key_headers
    return [
        ("POST", f"{API}/organizations", org.owner.headers, '{"name": "{bad}"}'),
        ("POST", f"{API}/organizations", org.owner.headers, '{"name": "ok", "slug": "{bad}"}'),
        ("PATCH", f"{API}/organizations/{org.id}", key, '{"name": "{bad}"}'),
        (
            "POST",
            f"{API}/auth/register",
            {},
            '{"email": "e-{uniq}@example.com", "password": "long-enough-1", "name": "{bad}"}',
        ),
        (
            "POST",
            f"{API}/auth/register",
            {},
            '{"email": "f-{uniq}@example.com", "password": "long-{bad}-pw", "name": "n"}',
        ),
        ("POST", f"{API}/auth/token", {}, '{"email": "x@example.com", "password": "{bad}"}'),
        ("POST", f"{API}/auth/token", {}, '{"email": "x{bad}@example.com", "password": "p"}'),
        ("POST", f"{API}/organizations/{org.id}/api-keys", key, '{"name": "{bad}"}'),
        (
            "POST",
            f"{API}/organizations/{org.id}/members",
            key,
            '{"email": "' + other.email + '{bad}"}',
        ),
        ("POST", f"{API}/credits/consume", key, '{"amount": 1, "idempotency_key": "{bad}"}'),
        (
            "POST",
            f"{API}/credits/consume",
            key,
            '{"amount": 1, "idempotency_key": "k-{uniq}", "reason": "{bad}"}',
        ),
        (
            "POST",
            f"{API}/usage/events",
            key,
            '{"events": [{"metric": "turns", "quantity": 1, "idempotency_key": "{bad}"}]}',
        ),
        ("POST", f"{API}/usage/events", key, '{"events": [{"metric": "{bad}", "quantity": 1}]}'),
        (
            "POST",
            f"{API}/admin/organizations/{org.id}/credits",
            admin.headers,
            '{"amount": 1, "reason": "{bad}"}',
        ),
        (
            "PATCH",
            f"{API}/admin/organizations/{org.id}",
            admin.headers,
            '{"placement_group": "{bad}"}',
        ),
        (
            "PATCH",
            f"{API}/admin/organizations/{org.id}",
            admin.headers,
            '{"entitlements": ["{bad}"]}',
        ),
        (
            "POST",
            f"{API}/billing/checkout",
            key,
            '{"plan": "{bad}", "success_url": "https://a.example/", "cancel_url": "https://a.example/"}',
        ),
        ("POST", f"{API}/billing/portal", key, '{"return_url": "https://a.example/{bad}"}'),
        # The decision call: its caller step reads the body before validation (the rider).
        ("POST", f"{API}/check", key, '{"metric": "{bad}"}'),
        ("POST", f"{API}/check", key, '{"metric": "turns{bad}", "reserve": true}'),
        ("POST", f"{API}/check", key, '{"feature": "{bad}"}'),
        (
            "POST",
            f"{API}/check",
            key,
            '{"metric": "turns", "reserve": true, "idempotency_key": "k{bad}"}',
        ),
        (
            "POST",
            f"{API}/admin/webhook-endpoints",
            admin.headers,
            '{"url": "https://hooks.example/", "events": ["*"], "description": "{bad}"}',
        ),
        (
            "POST",
            f"{API}/admin/webhook-endpoints",
            admin.headers,
            '{"url": "https://hooks.example/", "events": ["{bad}"]}',
        ),
    ]


@pytest.mark.parametrize("bad", ["a\\u0000b", "\\udfff", "x\\ud800y"])
async def test_nul_bytes_and_lone_surrogates_are_422_on_every_text_field(
    client: httpx.AsyncClient, settings: Settings, bad: str
) -> None:
    for method, url, headers, template in await _write_paths(client, settings):
        body = template.replace("{bad}", bad).replace("{uniq}", uuid.uuid4().hex[:8])
        response = await client.request(
            method,
            url,
            **raw_json(body, headers),
        )
        error = assert_error(response, 422, "validation_error")
        assert error["details"], (url, body)


async def test_a_check_with_an_unstorable_metric_is_422_and_a_guessed_key_401(
    client: httpx.AsyncClient,
) -> None:
    """The caller step carries the metric's standing in the key lookup, before the body is
    validated: such a metric rides no query (it was a driver error, a 500)."""
    org = await create_org(client)
    guessed = {"X-Api-Key": "ob_" + "x" * 40}
    for bad in ("x\\udfff", "x\\u0000y"):
        body = '{"metric": "' + bad + '"}'
        response = await client.post(f"{API}/check", **raw_json(body, org.key_headers))
        assert_error(response, 422, "validation_error")
        response = await client.post(f"{API}/check", **raw_json(body, guessed))
        assert_error(response, 401, "unauthorized")


def _request_models(app: FastAPI) -> set[type[RequestSchema]]:
    """Every RequestSchema a route's JSON body is, or holds at any depth."""
    found: set[type[RequestSchema]] = set()

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, RequestSchema):
            if annotation not in found:
                found.add(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for arg in get_args(annotation):
            visit(arg)

    for context in iter_route_contexts(list(app.routes)):
        route = context.route
        if isinstance(route, APIRoute) and route.body_field is not None:
            visit(route.body_field.field_info.annotation)
    return found


def _plain_type(annotation: Any) -> Any:
    """int for `Annotated[int, ...] | None`, and so on (None when it is no one plain type)."""
    members = [a for a in (get_args(annotation) or (annotation,)) if a is not type(None)]
    if get_origin(annotation) is Annotated:
        return _plain_type(get_args(annotation)[0])
    if len(members) != 1:
        return None
    member = members[0]
    return _plain_type(member) if get_origin(member) is Annotated else member


def test_every_whole_number_and_flag_in_a_request_body_is_strict(app: FastAPI) -> None:
    """No count is taken from `true`, `"3"` or `7.0`, and no flag from `"yes"` or `1`, in
    any field of any body (pydantic's lax mode would coerce them)."""
    loose = {int: [True, "3", 7.0], bool: ["yes", "true", 1]}
    checked = 0
    for model in _request_models(app):
        for name, field in model.model_fields.items():
            kind = _plain_type(field.annotation)
            if kind not in loose:
                continue
            for value in loose[kind]:
                with pytest.raises(ValidationError) as refused:
                    model.model_validate({field.alias or name: value})
                assert any(
                    e["loc"][:1] == (field.alias or name,) for e in refused.value.errors()
                ), (
                    model.__name__,
                    name,
                    value,
                )
            checked += 1
    assert checked >= 8, checked


def test_every_request_body_is_a_request_schema(app: FastAPI) -> None:
    """Every JSON body any route takes is a `RequestSchema` (or a union of them), whose
    field validator refuses NUL and lone surrogates in every string of every field: the list
    above shows it per field; this shows no route's body escapes it."""
    bodies = 0
    for context in iter_route_contexts(list(app.routes)):
        route = context.route
        if not isinstance(route, APIRoute) or route.body_field is None:
            continue
        annotation = route.body_field.field_info.annotation
        for member in get_args(annotation) or (annotation,):
            if get_origin(member) is Annotated:
                member = get_args(member)[0]
            if member is type(None):
                continue
            assert isinstance(member, type) and issubclass(member, RequestSchema), (
                context.path_format,
                member,
            )
            bodies += 1
    assert bodies >= 21, bodies

    class Probe(RequestSchema):
        plain: str = "ok"
        listed: list[str] = []
        mapped: dict[str, str] = {}

    # The base class itself refuses them in fields typed plainly, at any depth, keys too.
    for bad in ({"plain": "a\x00b"}, {"listed": ["ok", "\udfff"]}, {"mapped": {"k\x00": "v"}}):
        with pytest.raises(ValidationError):
            Probe.model_validate(bad)
    assert Probe.model_validate({"plain": " kept as sent "}).plain == " kept as sent "


async def test_text_is_stored_and_returned_exactly_as_sent(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    name = "Ünïcode 🚀 Org"
    response = await client.patch(
        f"{API}/organizations/{org.id}", json={"name": name}, headers=org.key_headers
    )
    assert response.status_code == 200 and response.json()["name"] == name
    # Surrounding whitespace too: nothing is trimmed (contract: returned exactly as sent).
    for name in (" Spaced Org ", "Acme\n", "\tTabbed"):
        response = await client.patch(
            f"{API}/organizations/{org.id}", json={"name": name}, headers=org.key_headers
        )
        assert response.status_code == 200 and response.json()["name"] == name, response.text
        shown = await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
        assert shown.json()["name"] == name
    created = await client.post(
        f"{API}/organizations", json={"name": " Padded "}, headers=org.owner.headers
    )
    assert created.status_code == 201 and created.json()["name"] == " Padded ", created.text
    # Required text that is only whitespace is still refused, as it was when it was trimmed.
    for blank in ("   ", "\n"):
        response = await client.patch(
            f"{API}/organizations/{org.id}", json={"name": blank}, headers=org.key_headers
        )
        assert_error(response, 422, "validation_error")


async def test_a_password_with_surrounding_spaces_signs_in_as_registered(
    client: httpx.AsyncClient,
) -> None:
    """Passwords are never shown back and were always trimmed: still trimmed, so an account
    registered either way signs in with what its owner types."""
    email = f"spaces-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post(
        f"{API}/auth/register",
        json={"email": f" {email} ", "password": "  long-enough-pw  ", "name": "Spaces"},
    )
    assert registered.status_code == 201, registered.text
    for typed in ("  long-enough-pw  ", "long-enough-pw"):
        token = await client.post(f"{API}/auth/token", json={"email": email, "password": typed})
        assert token.status_code == 200, token.text


# Timestamps and integers


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "1969-12-31T23:59:59Z",
        "2030-01-01T00:00:00",  # no timezone
    ],
)
async def test_timestamps_outside_1970_to_9999_utc_or_naive_are_422(
    client: httpx.AsyncClient, settings: Settings, stamp: str
) -> None:
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    usage = await client.post(
        f"{API}/usage/events",
        json={"events": [{"metric": "turns", "quantity": 1, "timestamp": stamp}]},
        headers=org.key_headers,
    )
    assert_error(usage, 422, "validation_error")
    key = await client.post(
        f"{API}/organizations/{org.id}/api-keys",
        json={"name": "k", "expires_at": stamp},
        headers=org.key_headers,
    )
    assert_error(key, 422, "validation_error")
    contract = f"{API}/admin/organizations/{org.id}/enterprise"
    starts = await client.put(contract, json={"starts_at": stamp}, headers=admin.headers)
    assert_error(starts, 422, "validation_error")
    ends = await client.put(
        contract,
        json={"starts_at": "2026-01-01T00:00:00Z", "ends_at": stamp},
        headers=admin.headers,
    )
    assert_error(ends, 422, "validation_error")


async def test_timestamps_in_other_offsets_are_converted_to_utc(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    created = await create_api_key(
        client, org.owner, org.id, expires_at="9999-12-31T23:00:00+09:00"
    )
    assert created["expires_at"] == "9999-12-31T14:00:00Z"


async def test_integers_past_64_bits_are_422(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    for quantity in (2**63, 2**64 + 1, -(2**70)):
        response = await client.post(
            f"{API}/usage/events",
            **raw_json(
                f'{{"events": [{{"metric": "turns", "quantity": {quantity}}}]}}', org.key_headers
            ),
        )
        assert_error(response, 422, "validation_error")


# URLs


async def test_urls_are_validated_and_returned_exactly_as_sent(client: httpx.AsyncClient) -> None:
    owner = await register_user(client, "owner")
    created = await client.post(
        f"{API}/organizations",
        json={"name": "Acme", "website": "https://acme.example"},
        headers=owner.headers,
    )
    assert created.status_code == 201 and created.json()["website"] == "https://acme.example"
    org_id = created.json()["id"]
    sent = {"website": "https://ACME.example:443/a/../b?q=1#x", "image_url": "http://img.example"}
    patched = await client.patch(f"{API}/organizations/{org_id}", json=sent, headers=owner.headers)
    assert patched.status_code == 200, patched.text
    assert {k: patched.json()[k] for k in sent} == sent
    profile = await client.get(f"{API}/organizations/profile/{org_id}", headers=owner.headers)
    assert profile.json()["website"] == sent["website"]
    for bad in ("not a url", "ftp://files.example", "https://a.example/\tx", "https://"):
        response = await client.patch(
            f"{API}/organizations/{org_id}", json={"website": bad}, headers=owner.headers
        )
        assert_error(response, 422, "validation_error")


# Cursors: every list


def _forged(values: list[Any]) -> str:
    # The old, unsigned format: base64 of the JSON sort key.
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _tampered(cursor: str) -> str:
    payload, tag = cursor.split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[2] = ord("1") if raw[2] != ord("1") else ord("2")  # 2026 -> 2126: a changed position
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=") + "." + tag


async def _lists(
    client: httpx.AsyncClient, settings: Settings
) -> tuple[list[tuple[str, dict[str, str]]], OrgHandle, UserHandle]:
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    user = {**org.owner.headers}
    return (
        [
            (f"{API}/organizations", user),
            (f"{API}/organizations/{org.id}/members", user),
            (f"{API}/organizations/{org.id}/api-keys", user),
            (f"{API}/billing/invoices", org.key_headers),
            (f"{API}/credits", org.key_headers),
            (f"{API}/admin/audit-log", admin.headers),
            (f"{API}/admin/stripe/events", admin.headers),
        ],
        org,
        admin,
    )


async def test_malformed_forged_and_tampered_cursors_are_400_on_every_list(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    lists, org, _ = await _lists(client, settings)
    await create_org(client, org.owner)  # the user now has two organizations
    first = await client.get(f"{API}/organizations?limit=1", headers=org.owner.headers)
    genuine = first.json()["next_cursor"]
    assert genuine
    bad_cursors = [
        "!!!",
        "a.b",
        "x" * 150,
        _forged(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),
        _forged(["2026-01-01T00:00:00+00:00", 12345]),
        genuine + "x",
        genuine.split(".")[0] + "." + "A" * 22,
        _tampered(genuine),
        "ünï.cøde",
    ]
    for url, headers in lists:
        for cursor in bad_cursors:
            response = await client.get(url, params={"cursor": cursor}, headers=headers)
            assert_error(response, 400, "bad_request")
        # A genuine cursor is a position any list can take.
        ok = await client.get(url, params={"cursor": genuine}, headers=headers)
        assert ok.status_code == 200, (url, ok.text)


async def test_every_list_pages_through_with_limit_one(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    lists, org, admin = await _lists(client, settings)
    await create_org(client, org.owner)
    member = await register_user(client, "member")
    assert (await add_member(client, org, member, "member")).status_code == 201
    await create_api_key(client, org.owner, org.id, name="second")
    for amount in (1, 2):
        granted = await client.post(
            f"{API}/admin/organizations/{org.id}/credits",
            json={"amount": amount, "reason": "test"},
            headers=admin.headers,
        )
        assert granted.status_code == 201, granted.text
    for url, headers in lists:
        if url.endswith(("/invoices", "/stripe/events")):
            continue  # no rows made here; their cursors are covered above
        seen: list[Any] = []
        cursor = None
        for _ in range(10):
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = await client.get(url, params=params, headers=headers)
            assert page.status_code == 200, (url, page.text)
            body = page.json()
            items = body.get("data", body.get("ledger"))
            assert len(items) <= 1
            seen.extend(json.dumps(item, sort_keys=True) for item in items)
            cursor = body["next_cursor"]
            if cursor is None:
                break
            if len(seen) >= 2:
                break
        assert len(seen) == 2 and len(set(seen)) == 2, (url, seen)


# Stripe-Signature


async def test_a_stripe_signature_with_an_absurd_timestamp_is_400(
    client: httpx.AsyncClient,
) -> None:
    body, headers = signed({"id": "evt_x", "type": "ping"})
    for header in ("t=" + "9" * 400 + ",v1=abc", "t=١٢٣,v1=abc", "t=-5,v1=abc"):
        response = await client.post(
            WEBHOOK_URL,
            content=body,
            headers={**headers, "Stripe-Signature": header.encode()},  # type: ignore[dict-item]
        )
        assert_error(response, 400, "bad_request")


async def test_a_nul_in_a_text_path_segment_is_422(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await create_superadmin_user(client, settings)
    response = await client.post(f"{API}/admin/stripe/events/evt%00x/replay", headers=admin.headers)
    assert_error(response, 422, "validation_error")
    missing = await client.post(f"{API}/admin/stripe/events/evt_none/replay", headers=admin.headers)
    assert_error(missing, 404, "not_found")
