"""Stripe answering an error in checkout or the portal: 400 when Stripe refused what the
caller sent, else 503 `unavailable`; either way the cause is logged with the request id and
never shown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from orgbill.config import Settings
from tests.fixtures.app import client_for, running_app
from tests.fixtures.factories import API, assert_error, create_org
from tests.fixtures.stripe_errors import (
    BAD_API_KEY,
    CALLER_URL_REFUSED,
    OUR_REQUEST_REFUSED,
    PORTAL_URL_REFUSED,
    RATE_LIMITED,
    SERVER_ERROR,
    ErroringStripe,
    StripeAnswer,
    erroring_stripe,
)

URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def stripe_api() -> Iterator[ErroringStripe]:
    with erroring_stripe() as fake:
        yield fake


@pytest.fixture(scope="module")
async def stripe_app(settings: Settings, stripe_api: ErroringStripe) -> AsyncIterator[FastAPI]:
    async with running_app(settings.model_copy(update={"stripe_api_base": stripe_api.url})) as app:
        yield app


@pytest.fixture
async def http(stripe_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(stripe_app) as client:
        yield client


@pytest.fixture
def error_log() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("orgbill.errors")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("answer", [SERVER_ERROR, OUR_REQUEST_REFUSED, BAD_API_KEY, RATE_LIMITED])
@pytest.mark.parametrize("route", ["checkout", "portal"])
async def test_stripe_failing_is_503_with_its_cause_logged_not_shown(
    http: httpx.AsyncClient,
    stripe_api: ErroringStripe,
    error_log: Captured,
    answer: StripeAnswer,
    route: str,
) -> None:
    stripe_api.answer = answer
    org = await create_org(http)
    body = {"plan": "pro", **URLS} if route == "checkout" else {"return_url": URLS["success_url"]}
    calls = stripe_api.session_calls
    response = await http.post(f"{API}/billing/{route}", json=body, headers=org.key_headers)
    error = assert_error(response, 503, "unavailable")
    assert stripe_api.session_calls > calls  # Stripe was asked, and answered an error
    assert "sk_test" not in response.text and answer.error["message"] not in response.text
    [record] = [r for r in error_log.records if getattr(r, "status", None) == 503]
    assert record.requestId == error["request_id"]  # type: ignore[attr-defined]
    assert record.exc_info is not None
    # The log names Stripe's own error (the cause), the body does not.
    cause = record.exc_info[1].__cause__ if record.exc_info[1] else None
    assert cause is not None and "stripe" in type(cause).__module__


@pytest.mark.parametrize(
    ("route", "answer"), [("checkout", CALLER_URL_REFUSED), ("portal", PORTAL_URL_REFUSED)]
)
async def test_stripe_refusing_the_callers_own_value_is_400(
    http: httpx.AsyncClient, stripe_api: ErroringStripe, route: str, answer: StripeAnswer
) -> None:
    stripe_api.answer = answer
    org = await create_org(http)
    body = {"plan": "pro", **URLS} if route == "checkout" else {"return_url": URLS["success_url"]}
    response = await http.post(f"{API}/billing/{route}", json=body, headers=org.key_headers)
    error = assert_error(response, 400, "bad_request")
    assert answer.error["param"] in error["message"]
