"""`orgbill webhooks dispatch` as a separate worker (servers with ORGBILL_WEBHOOK_DISPATCH=false),
and an endpoint failing continuously being disabled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from orgbill.config import Settings
from orgbill.models import WebhookEndpoint
from orgbill.webhooks_out.dispatcher import Dispatcher
from tests.fixtures.app import client_for, running_app
from tests.fixtures.databases import migrated_settings
from tests.fixtures.factories import API
from tests.fixtures.webhook_receiver import Receiver
from tests.webhooks_out.conftest import FAST_DISPATCH
from tests.webhooks_out.helpers import deliveries, org_with_endpoint, verified


@pytest.fixture(scope="module")
def quiet_settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A server that does not dispatch: delivery is left to a separate worker."""
    with migrated_settings(
        backend,
        tmp_path_factory.mktemp(f"webhooks-worker-{backend}"),
        **FAST_DISPATCH,
        webhook_dispatch=False,
        webhook_disable_after_seconds=1.0,
    ) as migrated:
        yield migrated


@pytest.fixture(scope="module")
async def quiet_app(quiet_settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(quiet_settings) as application:
        yield application


@pytest.fixture
async def quiet_client(quiet_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(quiet_app) as http:
        yield http


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {
        **os.environ,
        "ORGBILL_ENV": "test",
        "ORGBILL_DATABASE_URL": settings.database_url,
        "ORGBILL_JWT_SECRET": settings.jwt_secret,
        "ORGBILL_API_KEY_SECRET": settings.api_key_secret,
    }
    if settings.database_schema:
        env["ORGBILL_DATABASE_SCHEMA"] = settings.database_schema
    return env


async def test_the_dispatch_command_delivers_what_a_non_dispatching_server_wrote(
    quiet_client: httpx.AsyncClient, quiet_settings: Settings, receiver: Receiver
) -> None:
    admin, org, endpoint, path = await org_with_endpoint(quiet_client, quiet_settings, receiver)
    await quiet_client.patch(
        f"{API}/organizations/{org.id}", json={"name": "Via worker"}, headers=org.owner.headers
    )
    await asyncio.sleep(0.5)
    assert receiver.at(path) == []  # this server does not dispatch
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "orgbill.cli", "webhooks", "dispatch", "--once"],
        env=_worker_env(quiet_settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [received] = receiver.at(path)
    payload = verified(received, endpoint["secret"])
    assert payload["data"]["name"] == "Via worker"
    log = await deliveries(quiet_client, admin, endpoint["id"])
    assert [d["status"] for d in log["data"]] == ["delivered"]


async def test_an_endpoint_failing_continuously_is_disabled(
    quiet_client: httpx.AsyncClient,
    quiet_app: FastAPI,
    quiet_settings: Settings,
    receiver: Receiver,
) -> None:
    admin, org, endpoint, path = await org_with_endpoint(quiet_client, quiet_settings, receiver)
    receiver.always_fail(path, 503)
    await quiet_client.patch(
        f"{API}/organizations/{org.id}", json={"name": "Unlucky"}, headers=org.owner.headers
    )
    # Settings here: disabled after 1 s of failures (3 days in production).
    dispatcher = Dispatcher(quiet_app.state.database, quiet_settings, quiet_app.state.catalog_store)
    deadline = time.monotonic() + 10
    try:
        while True:
            await dispatcher.drain()
            async with quiet_app.state.database.reader() as session:
                row = await session.get(WebhookEndpoint, uuid.UUID(endpoint["id"]))
                assert row is not None
                if not row.enabled:
                    break
            assert time.monotonic() < deadline, "the endpoint was never disabled"
            await asyncio.sleep(0.05)
    finally:
        await dispatcher.stop()
    shown = await quiet_client.get(
        f"{API}/admin/webhook-endpoints/{endpoint['id']}", headers=admin.headers
    )
    assert shown.json()["enabled"] is False
    assert "failed" in shown.json()["disabled_reason"]
    attempts = len(receiver.at(path))
    assert attempts >= 2
    # Disabled: nothing more is sent to it.
    await dispatcher_round(quiet_app, quiet_settings)
    assert len(receiver.at(path)) == attempts
    receiver.recover(path)
    # Re-enabled by an admin: its pending delivery goes out.
    enabled = await quiet_client.patch(
        f"{API}/admin/webhook-endpoints/{endpoint['id']}",
        json={"enabled": True},
        headers=admin.headers,
    )
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None
    log = await deliveries(quiet_client, admin, endpoint["id"])
    if log["data"][0]["status"] == "pending":
        await dispatcher_round(quiet_app, quiet_settings, wait=1.0)
        assert len(receiver.at(path)) == attempts + 1


async def dispatcher_round(app: FastAPI, settings: Settings, wait: float = 0.3) -> None:
    dispatcher = Dispatcher(app.state.database, settings, app.state.catalog_store)
    try:
        await asyncio.sleep(wait)  # let any backoff run out
        await dispatcher.drain()
    finally:
        await dispatcher.stop()


class _CancellationLosingDispatcher(Dispatcher):
    """A round that drops the cancellation landing in it, as Python 3.11's `wait_for` does
    when its wait completes at the same moment: the loop itself goes on."""

    rounds = 0
    inside = asyncio.Event()

    async def run_once(self) -> int:
        self.rounds += 1
        self.inside.set()
        with contextlib.suppress(asyncio.CancelledError):  # lost, as the race loses it
            await asyncio.sleep(0.5)
        self.inside.clear()
        return 0


async def test_stopping_ends_the_dispatch_loop_even_when_its_cancellation_is_lost(
    app: FastAPI, settings: Settings
) -> None:
    dispatcher = _CancellationLosingDispatcher(
        app.state.database, settings, app.state.catalog_store
    )
    await dispatcher.start()
    await dispatcher.inside.wait()  # the cancellation lands in the round
    started = time.monotonic()
    stopping = asyncio.create_task(dispatcher.stop())
    # Before: stop() awaited the loop, which polled on forever (a hung shutdown).
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done and time.monotonic() - started < 2
    rounds = dispatcher.rounds
    await asyncio.sleep(1.2)
    assert dispatcher.rounds == rounds  # nothing polls after stop
