"""Stripe answering an error in checkout or the portal: 400 when Stripe refused what the
caller sent, else 503 `unavailable`; either way the cause is logged with the request id and
never shown."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.factories import API, assert_error, create_org
from tests.fixtures.stripe import (
    BAD_API_KEY,
    CALLER_URL_REFUSED,
    OUR_REQUEST_REFUSED,
    PORTAL_URL_REFUSED,
    RATE_LIMITED,
    SERVER_ERROR,
    FakeStripe,
    StripeAnswer,
)

URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


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
    stripe_client: httpx.AsyncClient,
    stripe_api: FakeStripe,
    error_log: Captured,
    answer: StripeAnswer,
    route: str,
) -> None:
    stripe_api.fail_sessions(answer)
    org = await create_org(stripe_client)
    body = {"plan": "pro", **URLS} if route == "checkout" else {"return_url": URLS["success_url"]}
    calls = stripe_api.session_calls()
    response = await stripe_client.post(
        f"{API}/billing/{route}", json=body, headers=org.key_headers
    )
    error = assert_error(response, 503, "unavailable")
    assert stripe_api.session_calls() > calls  # Stripe was asked, and answered an error
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
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe, route: str, answer: StripeAnswer
) -> None:
    stripe_api.fail_sessions(answer)
    org = await create_org(stripe_client)
    body = {"plan": "pro", **URLS} if route == "checkout" else {"return_url": URLS["success_url"]}
    response = await stripe_client.post(
        f"{API}/billing/{route}", json=body, headers=org.key_headers
    )
    error = assert_error(response, 400, "bad_request")
    assert answer.error["param"] in error["message"]
