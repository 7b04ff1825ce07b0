"""CLI failures are one line, and demo / create-superadmin produce usable results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from orgbill import cli
from orgbill.config import Settings
from tests.fixtures.app import client_for, running_app
from tests.fixtures.databases import migrated_settings
from tests.fixtures.factories import API, register_user
from tests.operations.test_cli import Invoke, assert_one_line_failure


def _invoke(run: Invoke, *args: str, **env: str) -> tuple[int, str, str]:
    try:
        return run(*args, **env)
    except Exception as exc:  # the CLI let it escape: a traceback for the user
        pytest.fail(f"`orgbill {' '.join(args)}` raised {exc!r} instead of one line on stderr")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("redis_url", "localhost:6379"),  # scheme forgotten: redis-py raised in create_app
        ("redis_url", "redis://localhost:abc"),
        ("log_level", "verbose"),  # logging.dictConfig raised in uvicorn
        ("database_url", "not a url"),  # make_url raised in the lifespan (exit 3)
        ("database_url", "nosuchdb://x/y"),
        ("database_url", "mysql://h/db"),  # parses, but orgbill runs on sqlite or postgresql
        # inf passed `gt=0`: every request charged to the bucket was then a 500
        ("public_rate_limit", "inf"),
        ("user_rate_limit", "inf"),
        ("rate_limit_burst_seconds", "inf"),
        ("public_rate_limit", "1e-12"),  # a Reset date past year 9999
    ],
)
def test_serve_check_refuses_a_bad_setting_in_one_line_naming_it(
    run: Invoke, variable: str, value: str
) -> None:
    # CONTRACT "Configuration and CLI": "A bad value is refused at start with one line naming
    # the variable."  Observed: `serve` (and the Dockerfile's `serve --check` gate) accepted
    # these, and the server failed with a traceback or answered 500s.
    result = _invoke(run, "serve", "--check", "--port", "0", **{variable: value})
    assert_one_line_failure(result, f"ORGBILL_{variable.upper()}")


def test_a_refused_database_url_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    # `uvicorn orgbill.main:app` prints the settings' ValidationError whole: a URL carries a
    # password, so the refused value is left out of it.
    monkeypatch.setenv("ORGBILL_DATABASE_URL", "mysql://orgbill:s3cret@db.example/orgbill")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "database_url" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_serve_check_accepts_the_supported_urls_and_log_levels(run: Invoke) -> None:
    for variable, value in [
        ("redis_url", "redis://127.0.0.1:6379/0"),
        ("redis_url", "rediss://user:pw@cache.example:6380"),
        ("redis_url", "unix:///run/redis.sock"),
        ("log_level", "debug"),
        ("log_level", "WARNING"),
        ("database_url", "postgresql://orgbill@127.0.0.1/orgbill"),
        ("database_url", "postgres://orgbill@127.0.0.1/orgbill"),
        ("database_url", "postgresql+asyncpg://orgbill@127.0.0.1:5432/orgbill"),
        ("database_url", "sqlite:///./orgbill.db"),
        ("public_rate_limit", "0.001"),
        ("user_rate_limit", "1000000"),
        ("rate_limit_burst_seconds", "86400"),
    ]:
        code, _, err = _invoke(run, "serve", "--check", "--port", "0", **{variable: value})
        assert code == 0, (variable, value, err)


def test_a_plans_file_that_is_not_utf8_is_one_line(run: Invoke, tmp_path: Path) -> None:
    # CONTRACT: "A CLI failure (... missing plans file ...) is one line on stderr".  Observed:
    # a UTF-16 plans file (as some editors save) was a UnicodeDecodeError traceback from
    # `plans sync` and from `serve`, which caught only OSError and TOMLDecodeError.
    plans = tmp_path / "plans.toml"
    plans.write_text('version = 1\n[plans.free]\nname = "Free"\n', encoding="utf-16")
    assert run("migrate")[0] == 0
    for command in (["plans", "sync", "--file", str(plans)], ["serve", "--check", "--port", "0"]):
        result = _invoke(run, *command, plans_file=str(plans))
        assert "not UTF-8" in assert_one_line_failure(result, "plans.toml")


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
