"""Every API test runs against SQLite and PostgreSQL, each migrated with Alembic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pytest_asyncio import is_async_test

from orgbill.config import Settings
from tests.fixtures.app import client_for, running_app
from tests.fixtures.databases import migrated_settings
from tests.fixtures.stripe import FakeStripe, fake_stripe

BACKENDS = ["sqlite", "postgres"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One event loop for the whole run, so session-scoped apps and their pools stay usable.
    marker = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if is_async_test(item):
            item.add_marker(marker, append=False)
    # The bounded fuzz run is a third of the suite's time: started first, it runs beside
    # the rest on another xdist worker instead of being the tail of the run.
    items.sort(key=lambda item: item.get_closest_marker("fuzz") is None)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with migrated_settings(backend, tmp_path_factory.mktemp(backend)) as migrated:
        yield migrated


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture(scope="module")
def stripe_api() -> Iterator[FakeStripe]:
    """A fake Stripe on loopback for one module; a test may set its `delay` or `failures`."""
    with fake_stripe() as fake:
        yield fake


@pytest.fixture(scope="module")
async def stripe_app(settings: Settings, stripe_api: FakeStripe) -> AsyncIterator[FastAPI]:
    """The app talking to the module's fake Stripe."""
    async with running_app(settings.model_copy(update={"stripe_api_base": stripe_api.url})) as app:
        yield app


@pytest.fixture
async def stripe_client(stripe_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(stripe_app) as http:
        yield http


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path
