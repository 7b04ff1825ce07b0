from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.stripe import LocalStripe


@pytest.fixture(scope="session")
def localstripe_server() -> Iterator[LocalStripe]:
    # One process for the session: localstripe always persists to /tmp/localstripe.pickle.
    server = LocalStripe()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def localstripe(localstripe_server: LocalStripe) -> LocalStripe:
    localstripe_server.reset()
    return localstripe_server
