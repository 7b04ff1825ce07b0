"""Outbound webhook tests: their own database per backend with a fast dispatcher (short poll,
sweep, backoff and retry window), and a real receiver on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI

from orgbill.config import Settings
from tests.fixtures.app import running_app
from tests.fixtures.databases import migrated_settings
from tests.fixtures.webhook_receiver import Receiver, webhook_receiver

FAST_DISPATCH = {
    "webhook_poll_seconds": 0.05,
    "webhook_sweep_seconds": 0.25,
    "webhook_backoff_base_seconds": 0.1,
    "webhook_backoff_max_seconds": 0.3,
    "webhook_retry_window_seconds": 2.0,
}


@pytest.fixture(scope="session")
def webhook_settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with migrated_settings(
        backend, tmp_path_factory.mktemp(f"webhooks-{backend}"), **FAST_DISPATCH
    ) as migrated:
        yield migrated


# `settings` and `app` are overridden together for this directory: an override of `settings`
# alone would leak into the suite's session `app` (built once, from whichever `settings` asked
# first) and so into every other directory's tests.
@pytest.fixture(scope="session")
def settings(webhook_settings: Settings) -> Settings:
    return webhook_settings


@pytest.fixture(scope="session")
async def app(webhook_settings: Settings) -> AsyncIterator[FastAPI]:
    # Its dispatcher runs with the fast timings above.
    async with running_app(webhook_settings) as application:
        yield application


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running
