"""Usage-ingestion benchmark (a script, not a test).

In one run, for SQLite and PostgreSQL, serves orgbill with uvicorn (one worker) on
loopback and prints:
  * events/s for POST /usage/events in batches of 1 and of 100, on a hard-limited meter
    (the conditional-update path), and
  * the profile read's requests/s with the rate limiter on and off.

    .venv/bin/python bench/usage.py   # PostgreSQL at ORGBILL_BENCH_POSTGRES_URL (default: the
                                      # local test database); skipped when unreachable
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_POSTGRES, pg_execute, postgres_reachable
from orgbill import migrate
from orgbill.cli import seed_demo, sync_plans
from orgbill.config import Settings
from orgbill.db import Database
from orgbill.models import Organization

CONCURRENCY = 16
SINGLE_EVENT_REQUESTS = 3000
BATCHED_REQUESTS = 400  # x100 events
PROFILE_REQUESTS = 3000
BENCH_SECRETS = {
    "ORGBILL_ENV": "test",
    "ORGBILL_JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123456789",
    "ORGBILL_API_KEY_SECRET": "bench-api-key-secret-0123456789abcdef0123",
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for(url: str, schema: str | None) -> Settings:
    return Settings(
        database_url=url,
        database_schema=schema,
        env="test",
        jwt_secret=BENCH_SECRETS["ORGBILL_JWT_SECRET"],
        api_key_secret=BENCH_SECRETS["ORGBILL_API_KEY_SECRET"],
    )


async def _prepare_org(settings: Settings) -> tuple[str, str]:
    """The demo org with a limit high enough never to stop the bench, still enforced by
    the same conditional update as any hard limit, and no practical rate limit."""
    demo = await seed_demo(settings)
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=True) as session:
            org = await session.get(Organization, uuid.UUID(demo["organization"]["id"]))
            assert org is not None
            org.limit_overrides = {"max_logs_per_month": 10**12}
            org.rate_limit = 1_000_000
            await session.commit()
    finally:
        await database.dispose()
    return demo["organization"]["id"], demo["api_key"]


@contextmanager
def uvicorn_server(settings: Settings, *, rate_limit: bool) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        **BENCH_SECRETS,
        "ORGBILL_DATABASE_URL": settings.database_url,
        "ORGBILL_ACCESS_LOG": "false",
        "ORGBILL_LOG_LEVEL": "WARNING",
        "ORGBILL_RATE_LIMIT_ENABLED": "true" if rate_limit else "false",
    }
    env.pop("ORGBILL_REDIS_URL", None)
    if settings.database_schema:
        env["ORGBILL_DATABASE_SCHEMA"] = settings.database_schema
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "orgbill.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _drive(
    base_url: str, requests: int, method: str, path: str, headers: dict[str, str], body: Any
) -> float:
    """Runs `requests` requests over CONCURRENCY connections; returns requests/s."""
    remaining = requests
    failures = 0
    first_failure = ""

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal remaining, failures, first_failure
        while remaining > 0:
            remaining -= 1
            payload = body() if callable(body) else body
            response = await http.request(method, path, json=payload, headers=headers)
            if response.status_code != 200:
                failures += 1
                first_failure = first_failure or f"{response.status_code} {response.text}"

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
        await http.get("/healthz")
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{failures} requests failed, first: {first_failure}")
    return requests / elapsed


def _batch(size: int) -> Any:
    def make() -> dict[str, Any]:
        return {
            "events": [
                {"metric": "logs", "quantity": 1, "idempotency_key": secrets.token_hex(12)}
                for _ in range(size)
            ]
        }

    return make


def bench_backend(name: str, settings: Settings) -> None:
    migrate.upgrade(settings)
    asyncio.run(sync_plans(settings))
    org_id, api_key = asyncio.run(_prepare_org(settings))
    headers = {"X-Api-Key": api_key}
    with uvicorn_server(settings, rate_limit=True) as base_url:
        single = asyncio.run(
            _drive(
                base_url, SINGLE_EVENT_REQUESTS, "POST", "/api/v1/usage/events", headers, _batch(1)
            )
        )
        batched = asyncio.run(
            _drive(base_url, BATCHED_REQUESTS, "POST", "/api/v1/usage/events", headers, _batch(100))
        )
        profile = f"/api/v1/organizations/profile/{org_id}"
        limited = asyncio.run(_drive(base_url, PROFILE_REQUESTS, "GET", profile, headers, None))
    with uvicorn_server(settings, rate_limit=False) as base_url:
        unlimited = asyncio.run(_drive(base_url, PROFILE_REQUESTS, "GET", profile, headers, None))
    print(f"{name:10} usage events, batches of 1   : {single:9.0f} events/s")
    print(f"{name:10} usage events, batches of 100 : {batched * 100:9.0f} events/s")
    print(f"{name:10} profile read, limiter on     : {limited:9.0f} req/s")
    print(f"{name:10} profile read, limiter off    : {unlimited:9.0f} req/s")
    print(f"{name:10} rate limiter cost            : {(1 - limited / unlimited) * 100:8.1f} %")
    sys.stdout.flush()


def main() -> None:
    print(f"concurrency {CONCURRENCY}, one uvicorn worker, loopback; client in this process")
    with tempfile.TemporaryDirectory() as tmp:
        bench_backend("sqlite", settings_for(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", None))
    pg_url = os.environ.get("ORGBILL_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    if not postgres_reachable(pg_url):
        print(f"postgres   skipped: {pg_url} unreachable (set ORGBILL_BENCH_POSTGRES_URL)")
        return
    schema = f"orgbill_bench_{secrets.token_hex(4)}"
    asyncio.run(pg_execute(pg_url, f'CREATE SCHEMA "{schema}"'))
    try:
        bench_backend("postgres", settings_for(pg_url, schema))
    finally:
        asyncio.run(pg_execute(pg_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
