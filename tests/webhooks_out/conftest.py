"""Outbound webhook tests: their own database per backend with a fast dispatcher (short poll,
sweep, backoff and retry window), and a real receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orgbill.config import Settings
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
def settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    # Overrides the suite's `settings` for this directory: the session `app` built on it
    # runs its dispatcher with these timings.
    with migrated_settings(
        backend, tmp_path_factory.mktemp(f"webhooks-{backend}"), **FAST_DISPATCH
    ) as migrated:
        yield migrated


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running
