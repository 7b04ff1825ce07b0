"""The HTTP edge records and bounds what it answers: a chunked body refused mid-read is
logged and counted as the 413 it was answered with (on its route), paths under /docs and
/redoc other than the docs' assets are rate limited, and a request head is bounded like a
body (431)."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import pytest

from orgbill.config import Settings
from orgbill.kit.http_head import MAX_HEAD_BYTES
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
    """A chunked body past ORGBILL_MAX_BODY_BYTES is answered 413, and the access log (and
    /metrics) record that 413 on the route's template: not what the app made of the aborted
    read (a 500 on "unmatched" for the webhook and /check, whose bodies the caller step reads
    before routing; a 400 for an ordinary route), which would page operators for 5xx no
    client ever received."""
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
    """Only /healthz, /readyz, /metrics, /openapi.json, /docs, /redoc and the assets the docs
    load (/docs/assets/) are unlimited; any other path under /docs or /redoc is charged to
    the client IP like any other call without credentials (a scanner cannot dodge the
    limiter by path)."""
    async with limited_app(settings, **ONE_SHOT) as app, client_at(app) as http:
        statuses = [(await http.get(f"/redoc/scan-{i}")).status_code for i in range(3)]
        statuses += [(await http.get(f"/docs/scan-{i}")).status_code for i in range(3)]
    assert 429 in statuses, statuses


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
    """`orgbill serve` bounds a request's head as the body is bounded: a head past
    MAX_HEAD_BYTES is answered 431 in the error envelope (httptools alone would buffer any
    size), and the client can read that answer; a head within it is served."""
    with serve(settings) as base:
        for size in (MAX_HEAD_BYTES + 16 * 1024, 4 * 1024 * 1024):
            answer = _raw_request(
                base, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * size + b"\r\n\r\n"
            )
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            assert b'"code": "bad_request"' in answer
        fits = _raw_request(
            base,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: "
            + b"a" * (MAX_HEAD_BYTES // 2)
            + b"\r\nConnection: close\r\n\r\n",
        )
        assert fits.startswith(b"HTTP/1.1 200 "), fits[:200]
