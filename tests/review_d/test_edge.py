"""Review D: the HTTP edge, the rate limiter and what /metrics and the access log record."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from ipaddress import ip_network

import pytest

from orgbill.config import Settings
from orgbill.kit.client_ip import client_address
from orgbill.ratelimit.limiter import RedisFallback
from orgbill.ratelimit.signin import WINDOW_SECONDS, SignInGuard
from tests.fixtures.factories import API, create_org
from tests.fixtures.logs import captured_logs
from tests.fixtures.server import serve
from tests.ratelimit.test_rate_limits import ONE_SHOT, client_at, limited_app


async def _chunks(total: int, size: int = 1000) -> AsyncIterator[bytes]:
    # A generator body: httpx sends it chunked, with no Content-Length.
    for _ in range(total // size):
        yield b"x" * size


@pytest.mark.parametrize(
    "path", ["/webhooks/stripe", "/check", "/organizations"], ids=["webhook", "check", "orgs"]
)
async def test_chunked_oversized_body_is_logged_and_counted_as_the_413_it_answered(
    settings: Settings, path: str
) -> None:
    """A chunked body past ORGBILL_MAX_BODY_BYTES is answered 413 (correct), but the access
    log and /metrics record what the app made of the aborted read instead: a 500 on
    route "unmatched" for the webhook and /check (the caller step reads their body before
    routing and the exception escapes it), a 400 for an ordinary route. Operators alerting
    on 5xx see server errors that no client ever received."""
    async with limited_app(settings, max_body_bytes=5000) as app, client_at(app) as http:
        org_headers = {}
        if path == "/check":
            org_headers = (await create_org(http)).key_headers
        with captured_logs() as lines:
            response = await http.post(
                f"{API}{path}",
                content=_chunks(20_000),
                headers={
                    **org_headers,
                    "content-type": "application/json",
                    "stripe-signature": "t=1,v1=00",
                },
            )
    assert response.status_code == 413, response.text
    access = [line for line in lines if line["logger"] == "orgbill.access"]
    assert len(access) == 1, access
    assert access[0]["status"] == 413, access[0]
    assert access[0]["route"] == f"{API}{path}", access[0]


async def test_paths_under_docs_and_redoc_that_are_not_docs_assets_are_rate_limited(
    settings: Settings,
) -> None:
    """CONTRACT: only /healthz, /readyz, /metrics, /openapi.json, /docs, /redoc (and, by
    the app's own note, the assets they load) are unlimited; every other call without
    credentials is charged to the client IP. main.py exempts the prefixes "/docs/" and
    "/redoc/" wholesale, so /redoc/<anything> (there are no assets there) and
    /docs/<anything> are unlimited 404s: a scanner dodges the limiter by path."""
    async with limited_app(settings, **ONE_SHOT) as app, client_at(app) as http:
        statuses = [(await http.get(f"/redoc/scan-{i}")).status_code for i in range(3)]
        statuses += [(await http.get(f"/docs/scan-{i}")).status_code for i in range(3)]
    assert 429 in statuses, statuses


async def test_failed_sign_in_memory_for_emails_never_seen_again_is_released() -> None:
    """The in-process sign-in guard (no Redis, or Redis down) keeps a list per email that
    ever failed, and drops it only if that same email is looked up again. Failed sign-ins
    for attacker-chosen addresses (any email, registered or not, is recorded) grow the
    process's memory without bound, long after their 15-minute window has passed."""
    clock = [1_000_000.0]
    guard = SignInGuard(None, "test:", RedisFallback(False), clock=lambda: clock[0])
    for i in range(5000):
        await guard.record_failure(f"old-{i}@spray.example")
    clock[0] += WINDOW_SECONDS * 4  # an hour later: every one of those has aged out
    for i in range(5000):
        await guard.record_failure(f"new-{i}@spray.example")
    await guard.retry_after("someone@else.example")
    remembered = len(guard._local)
    assert remembered <= 5000, f"{remembered} emails remembered; 5000 had long aged out"


def test_a_trusted_proxy_seen_as_an_ipv4_mapped_ipv6_peer_is_trusted() -> None:
    """Behind `--host ::` (dual stack) an IPv4 proxy's peer address is `::ffff:10.0.0.5`.
    ORGBILL_TRUSTED_PROXIES=10.0.0.0/8 then never matches (an IPv6 address is never "in" an
    IPv4 network for `ipaddress`), so every client is the proxy: one bucket for all."""
    proxies = [ip_network("10.0.0.0/8")]
    assert client_address("::ffff:10.0.0.5", ["203.0.113.7"], proxies) == "203.0.113.7"


def _raw_request(base: str, data: bytes, timeout: float = 20.0) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(data)
        answer = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_request_headers_are_bounded_like_the_body(settings: Settings) -> None:
    """ORGBILL_MAX_BODY_BYTES bounds what one request may make the server hold, but headers
    have no bound at all under `orgbill serve` (uvicorn's httptools parser buffers any
    size): a 4 MiB header line is read in full and answered 200. The same bytes as a body
    are 413. A careful server refuses oversized headers (431 or 400) before buffering them."""
    with serve(settings) as base:
        answer = _raw_request(
            base,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: "
            + b"a" * (4 * 1024 * 1024)
            + b"\r\n\r\n",
        )
    status_line = answer.split(b"\r\n", 1)[0]
    assert not status_line.startswith(b"HTTP/1.1 200"), status_line
