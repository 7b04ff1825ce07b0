"""An unreachable database is a 503 `unavailable` (never a 500), /readyz says so, and the
process recovers by itself when the database returns."""

from __future__ import annotations

import itertools
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tests.fixtures.app import client_for, running_app
from tests.fixtures.databases import (
    bootstrap,
    make_settings,
    off_loop,
    postgres_schema,
    postgres_url_or_skip,
)
from tests.fixtures.factories import API, assert_error, create_org
from tests.fixtures.tcpproxy import TcpProxy


def seconds_pass_between_probes(app: FastAPI) -> None:
    # /readyz reuses its answer for a second; on this clock a second passes at every look.
    app.state.readiness.clock = itertools.count().__next__


async def test_postgres_outage_is_503_and_recovers() -> None:
    url = make_url(postgres_url_or_skip())
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    direct = url.render_as_string(hide_password=False)
    with postgres_schema(direct) as schema:
        # Migrate directly: the proxy is served by this (blocked) test loop.
        off_loop(bootstrap, make_settings(direct, database_schema=schema))
        settings = make_settings(proxied, database_schema=schema)
        async with running_app(settings) as app, client_for(app) as client:
            seconds_pass_between_probes(app)
            org = await create_org(client)
            profile_url = f"{API}/organizations/profile/{org.id}"
            assert (await client.get(profile_url, headers=org.key_headers)).status_code == 200

            await proxy.stop()
            assert_error(await client.get("/readyz"), 503, "unavailable")
            down = await client.get(profile_url, headers=org.key_headers)
            assert_error(down, 503, "unavailable")
            write = await client.post(
                f"{API}/organizations", json={"name": "x"}, headers=org.owner.headers
            )
            assert_error(write, 503, "unavailable")
            assert (await client.get("/healthz")).status_code == 200

            await proxy.start()
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get(profile_url, headers=org.key_headers)).status_code == 200
    await proxy.stop()


async def test_sqlite_unreachable_file_is_503_and_recovers(tmp_path: Path) -> None:
    missing_dir = tmp_path / "not-yet"
    settings = make_settings(f"sqlite+aiosqlite:///{missing_dir / 'orgbill.db'}")
    async with running_app(settings) as app, client_for(app) as client:
        seconds_pass_between_probes(app)
        assert_error(await client.get("/readyz"), 503, "unavailable")
        response = await client.post(
            f"{API}/auth/register",
            json={"email": "a@example.com", "password": "password-1", "name": "A"},
        )
        assert_error(response, 503, "unavailable")
        missing_dir.mkdir()
        off_loop(bootstrap, settings)
        assert (await client.get("/readyz")).status_code == 200
        assert (await create_org(client)).id
