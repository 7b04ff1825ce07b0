"""/readyz: database reachable, schema at head, plans loaded; otherwise 503 with the reason.
Every 5xx logs its cause with the request id."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from orgbill import migrate
from orgbill.cli import sync_plans
from orgbill.config import Settings
from tests.fixtures.app import client_for, running_app
from tests.fixtures.databases import (
    make_settings,
    off_loop,
    postgres_schema,
    postgres_url_or_skip,
)
from tests.fixtures.factories import API, assert_error
from tests.fixtures.logs import captured_logs


@contextmanager
def empty_database(backend: str, tmp_path: Path) -> Iterator[Settings]:
    if backend == "sqlite":
        yield make_settings(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
        return
    url = postgres_url_or_skip()
    with postgres_schema(url) as schema:
        yield make_settings(url, database_schema=schema)


async def test_readyz_reports_the_schema_revision_when_ready(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "database": "ok",
        "schema_revision": migrate.head_revision(),
        "plans": "loaded",
    }


async def test_readyz_is_503_until_migrated_then_until_plans_are_loaded(
    backend: str, tmp_path: Path
) -> None:
    with empty_database(backend, tmp_path) as settings:
        async with running_app(settings) as app, client_for(app) as client:
            # /readyz reuses its answer for a second; on this clock a second passes per look.
            app.state.readiness.clock = itertools.count().__next__
            with captured_logs() as lines:
                unmigrated = await client.get("/readyz")
            assert "not migrated" in assert_error(unmigrated, 503, "unavailable")["message"]
            logged = [line for line in lines if line["msg"] == "not ready"]
            assert logged and logged[0]["requestId"] == unmigrated.headers["x-request-id"]

            off_loop(migrate.upgrade, settings)
            no_plans = await client.get("/readyz")
            assert "plans sync" in assert_error(no_plans, 503, "unavailable")["message"]

            off_loop(asyncio.run, sync_plans(settings))
            assert (await client.get("/readyz")).status_code == 200


async def test_readyz_is_503_when_the_schema_is_behind_head(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as settings:
        off_loop(migrate.upgrade, settings, _previous_revision())
        async with running_app(settings) as app, client_for(app) as client:
            message = assert_error(await client.get("/readyz"), 503, "unavailable")["message"]
            assert _previous_revision() in message and "orgbill migrate" in message


def _previous_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config(make_settings("sqlite://")))
    head = script.get_revision(migrate.head_revision())
    assert head is not None and isinstance(head.down_revision, str)
    return head.down_revision


async def test_database_outage_503_logs_its_cause_with_the_request_id(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'orgbill.db'}")
    async with running_app(settings) as app, client_for(app) as client:
        with captured_logs() as lines:
            response = await client.post(
                f"{API}/auth/register",
                json={"email": "a@example.com", "password": "password-1", "name": "A"},
            )
        assert_error(response, 503, "unavailable")
        causes = [line for line in lines if line["msg"] == "database unavailable"]
        assert causes, lines
        assert causes[0]["requestId"] == response.headers["x-request-id"]
        assert "unable to open database file" in causes[0]["cause"]
