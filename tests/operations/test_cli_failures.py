"""CLI failures are one line, and demo / create-superadmin produce usable results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orgbill import cli
from tests.fixtures.app import client_for, running_app
from tests.fixtures.databases import migrated_settings
from tests.fixtures.factories import API, register_user
from tests.operations.test_cli import Invoke, assert_one_line_failure


def _invoke(run: Invoke, *args: str, **env: str) -> tuple[int, str, str]:
    try:
        return run(*args, **env)
    except Exception as exc:  # the CLI let it escape: a traceback for the user
        pytest.fail(f"`orgbill {' '.join(args)}` raised {exc!r} instead of one line on stderr")


def test_serve_with_an_out_of_range_port_is_one_line(run: Invoke) -> None:
    # CONTRACT "Configuration and CLI": "A CLI failure (... busy port) is one line on stderr and
    # a non-zero exit, not a traceback."  Observed: OverflowError from socket.bind escapes.
    assert_one_line_failure(_invoke(run, "serve", "--check", "--port", "99999"), "99999")


async def test_demo_when_its_slug_is_taken_is_one_line(
    run: Invoke,
    tmp_path: Path,
) -> None:
    # CONTRACT "Configuration and CLI": "`orgbill demo` (seeds a demo user, org and key; prints
    # them as JSON)" and "A CLI failure ... is one line on stderr and a non-zero exit, not a
    # traceback."  Observed: Conflict("Slug 'demo-org' is already taken") escapes main().
    with migrated_settings("sqlite", tmp_path) as settings:
        async with running_app(settings) as app, client_for(app) as client:
            squatter = await register_user(client, "squatter")
            taken = await client.post(
                f"{API}/organizations",
                json={"name": "Mine", "slug": cli.DEMO_SLUG},
                headers=squatter.headers,
            )
            assert taken.status_code == 201
        result = _invoke(run, "demo", database_url=settings.database_url)
    code, out, _ = result
    if code == 0:  # printing a working demo would do too
        assert json.loads(out)["api_key"].startswith("ob_")
    else:
        assert_one_line_failure(result)


async def test_demo_after_its_org_was_deleted_prints_a_working_key(
    run: Invoke,
    tmp_path: Path,
) -> None:
    # CONTRACT: "`orgbill demo` (seeds a demo user, org and key; prints them as JSON)";
    # README: "`demo` reuses its organization".  Observed: it reuses the DELETED org and prints
    # a key that is 401 "Invalid API key" (cli.seed_demo selects the org by slug, any status).
    with migrated_settings("sqlite", tmp_path) as settings:
        code, out, _ = _invoke(run, "demo", database_url=settings.database_url)
        assert code == 0
        first = json.loads(out)
        async with running_app(settings) as app, client_for(app) as client:
            token = await client.post(
                f"{API}/auth/token",
                json={"email": first["user"]["email"], "password": first["user"]["password"]},
            )
            owner = {"Authorization": f"Bearer {token.json()['access_token']}"}
            deleted = await client.delete(
                f"{API}/organizations/{first['organization']['id']}", headers=owner
            )
            assert deleted.status_code == 204
            code, out, _ = _invoke(run, "demo", database_url=settings.database_url)
            assert code == 0
            second = json.loads(out)
            used = await client.get(f"{API}/organization", headers={"X-Api-Key": second["api_key"]})
    assert used.status_code == 200, used.text


async def test_a_superadmin_created_with_a_spaced_password_can_sign_in_with_it(
    run: Invoke,
    tmp_path: Path,
) -> None:
    # CONTRACT: "`orgbill create-superadmin EMAIL --password PW`" makes a superadmin who signs
    # in with `POST /auth/token {email, password}`; README: passwords are trimmed "as they
    # always were".  Observed: the CLI hashes "  spaced-pass  " untrimmed, /auth/token trims
    # it, and neither form ever signs in (401).
    with migrated_settings("sqlite", tmp_path) as settings:
        password = "  spaced-pass  "
        code, _, _ = _invoke(
            run,
            "create-superadmin",
            "boss@example.com",
            "--password",
            password,
            database_url=settings.database_url,
        )
        assert code == 0
        async with running_app(settings) as app, client_for(app) as client:
            signed_in = await client.post(
                f"{API}/auth/token", json={"email": "boss@example.com", "password": password}
            )
    assert signed_in.status_code == 200, signed_in.text
