"""Register, token, me; JWT edge cases; cookie sessions with CSRF double submit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
from jose import jwt

from orgbill.config import Settings
from tests.fixtures.factories import (
    API,
    PASSWORD,
    assert_error,
    create_org,
    register_user,
    unique_email,
)


async def test_register_hashes_password_and_rejects_duplicates(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    body = {"email": email.upper(), "password": PASSWORD, "name": "Ada"}
    created = await client.post(f"{API}/auth/register", json=body)
    assert created.status_code == 201
    user = created.json()
    assert user["email"] == email and "password" not in json.dumps(user)
    assert_error(await client.post(f"{API}/auth/register", json=body), 409, "conflict")


async def test_token_and_me_show_memberships(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    me = await client.get(f"{API}/me", headers=org.owner.headers)
    assert me.status_code == 200
    assert me.json()["memberships"] == [{"organization_id": org.id, "role": "owner"}]


async def test_wrong_password_and_unknown_email_are_401(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    wrong = await client.post(
        f"{API}/auth/token", json={"email": user.email, "password": "nope-nope"}
    )
    assert_error(wrong, 401, "unauthorized")
    unknown = await client.post(
        f"{API}/auth/token", json={"email": unique_email(), "password": PASSWORD}
    )
    assert_error(unknown, 401, "unauthorized")


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def test_bad_tokens_are_401(client: httpx.AsyncClient, settings: Settings) -> None:
    user = await register_user(client)
    now = int(time.time())
    claims = {"sub": user.id, "iat": now, "exp": now + 600}
    none_alg = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    expired = jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, settings.jwt_secret)
    wrong_key = jwt.encode(claims, "another-secret-that-is-long-enough-1234567")
    header, _payload, signature = user.token.split(".")
    tampered = f"{header}.{_b64({**claims, 'sub': str(uuid.uuid4())})}.{signature}"
    no_exp = jwt.encode({"sub": user.id, "iat": now}, settings.jwt_secret)
    no_iat = jwt.encode({"sub": user.id, "exp": now + 600}, settings.jwt_secret)
    no_sub = jwt.encode({"iat": now, "exp": now + 600}, settings.jwt_secret)
    unknown_user = jwt.encode({**claims, "sub": str(uuid.uuid4())}, settings.jwt_secret)
    for token in (
        none_alg,
        expired,
        wrong_key,
        tampered,
        no_exp,
        no_iat,
        no_sub,
        unknown_user,
        "garbage",
    ):
        response = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401, "unauthorized")
    assert_error(
        await client.get(f"{API}/me", headers={"Authorization": f"Basic {user.token}"}),
        401,
        "unauthorized",
    )
    assert (await client.get(f"{API}/me", headers=user.headers)).status_code == 200


async def test_token_sets_secure_httponly_session_and_csrf_cookies(
    client: httpx.AsyncClient,
) -> None:
    user = await register_user(client)
    response = await client.post(
        f"{API}/auth/token", json={"email": user.email, "password": PASSWORD}
    )
    cookies = {c.split("=", 1)[0]: c.lower() for c in response.headers.get_list("set-cookie")}
    assert {"orgbill_session", "orgbill_csrf"} <= set(cookies)
    assert "httponly" in cookies["orgbill_session"] and "secure" in cookies["orgbill_session"]
    assert "samesite=lax" in cookies["orgbill_session"]
    assert "httponly" not in cookies["orgbill_csrf"]


async def test_cookie_session_needs_csrf_header_for_unsafe_methods(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    session_cookie = f"orgbill_session={org.owner.token}; orgbill_csrf=csrf-value-123"
    read = await client.get(f"{API}/me", headers={"Cookie": session_cookie})
    assert read.status_code == 200
    url = f"{API}/organizations/{org.id}"
    missing = await client.patch(url, json={"name": "x"}, headers={"Cookie": session_cookie})
    assert_error(missing, 403, "forbidden")
    wrong = await client.patch(
        url, json={"name": "x"}, headers={"Cookie": session_cookie, "X-CSRF-Token": "other"}
    )
    assert_error(wrong, 403, "forbidden")
    ok = await client.patch(
        url,
        json={"name": "Renamed"},
        headers={"Cookie": session_cookie, "X-CSRF-Token": "csrf-value-123"},
    )
    assert ok.status_code == 200 and ok.json()["name"] == "Renamed"


async def test_rs256_tokens_with_a_public_key(settings: Settings) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.fixtures.app import client_for, running_app

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    rs256 = settings.model_copy(
        update={
            "jwt_algorithm": "RS256",
            "jwt_private_key": private_pem,
            "jwt_public_key": public_pem,
        }
    )
    async with running_app(rs256) as app, client_for(app) as client:
        user = await register_user(client)
        assert jwt.get_unverified_header(user.token)["alg"] == "RS256"
        assert (await client.get(f"{API}/me", headers=user.headers)).status_code == 200
        # An HS256 token signed with the public key (algorithm confusion) is refused.
        now = int(time.time())
        signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': user.id, 'iat': now, 'exp': now + 600})}"
        mac = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
        forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
        response = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {forged}"})
        assert_error(response, 401, "unauthorized")
