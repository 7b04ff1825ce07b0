"""How many signed subscription events per second one orgbill worker applies on PostgreSQL.

Starts orgbill (one uvicorn worker) on a loopback port against a throwaway PostgreSQL schema,
then sends a bounded number of signed `customer.subscription.*` events over HTTP with a bounded
number in flight, spread over many subscriptions with increasing `created`. Each event is
verified, stored in the inbox, applied and committed before its 200. Afterwards it checks every
event is in the inbox as processed and every subscription holds its newest state.

    ORGBILL_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/stripe_webhooks.py [--events 3000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import pg_execute, uvicorn_server
from orgbill import migrate
from orgbill.cli import sync_plans
from orgbill.config import Settings
from orgbill.db import Database
from orgbill.models import Organization, StripeEvent, Subscription
from orgbill.stripe_sync.signature import signature_header

SECRET = "whsec_bench_0123456789abcdef"
STATUSES = ("incomplete", "active", "past_due", "active", "trialing", "active")


def _settings(url: str, schema: str) -> Settings:
    return Settings(
        env="test",
        database_url=url,
        database_schema=schema,
        jwt_secret="bench-jwt-secret-0123456789abcdef0123456789",
        api_key_secret="bench-api-key-secret-0123456789abcdef0123",
        stripe_webhook_secret=SECRET,
        access_log=False,
        log_level="WARNING",
    )


def _event(sub_id: str, org_id: str, customer: str, seq: int, created: int) -> bytes:
    start = created - 86400
    obj = {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": STATUSES[seq % len(STATUSES)],
        "metadata": {"organization_id": org_id},
        "cancel_at_period_end": False,
        "created": start,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{sub_id}",
                    "price": {"id": "price_orgbill_pro_monthly", "lookup_key": None},
                    "current_period_start": start,
                    "current_period_end": start + 30 * 86400,
                }
            ],
        },
    }
    body = {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "type": "customer.subscription.created" if seq == 0 else "customer.subscription.updated",
        "data": {"object": obj},
    }
    return json.dumps(body).encode()


async def _seed_orgs(settings: Settings, count: int) -> list[str]:
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=True) as session:
            ids = []
            for n in range(count):
                org = Organization(id=uuid.uuid4(), name=f"bench {n}", slug=f"bench-{n}")
                session.add(org)
                ids.append(str(org.id))
            await session.commit()
            return ids
    finally:
        await database.dispose()


async def _verify(settings: Settings, events: int, last_status: dict[str, str]) -> None:
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=False) as session:
            processed = await session.scalar(
                select(func.count()).where(StripeEvent.status == "processed")
            )
            assert processed == events, f"{processed} of {events} events processed"
            rows = (
                await session.execute(
                    select(Subscription.stripe_subscription_id, Subscription.status)
                )
            ).all()
            found = dict(rows)
            assert found == last_status, "a subscription does not hold its newest state"
    finally:
        await database.dispose()


def _request_bytes(port: int, body: bytes) -> bytes:
    head = (
        "POST /api/v1/webhooks/stripe HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Stripe-Signature: {signature_header(SECRET, body)}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def _send_all(port: int, bodies: list[list[bytes]], concurrency: int) -> float:
    """A lean keep-alive HTTP/1.1 client with every request signed before the clock starts,
    so the figure is the server's, not the client's. Events of one subscription go in order
    (as Stripe mostly sends them); subscriptions in parallel."""
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    for chain in bodies:
        queue.put_nowait([_request_bytes(port, body) for body in chain])

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty():
                for request in queue.get_nowait():
                    writer.write(request)
                    status, body = await _read_response(reader)
                    assert status == 200, body
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--subscriptions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    url = os.environ.get("ORGBILL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"orgbill_bench_{secrets.token_hex(4)}"
    asyncio.run(pg_execute(url, f'CREATE SCHEMA "{schema}"'))
    try:
        settings = _settings(url, schema)
        migrate.upgrade(settings)
        asyncio.run(sync_plans(settings))
        org_ids = asyncio.run(_seed_orgs(settings, args.subscriptions))
        per_sub = max(1, args.events // args.subscriptions)
        now = int(time.time())
        chains: list[list[bytes]] = []
        last_status: dict[str, str] = {}
        for n, org_id in enumerate(org_ids):
            sub_id, customer = f"sub_bench{n:05d}", f"cus_bench{n:05d}"
            chains.append(
                [_event(sub_id, org_id, customer, seq, now - 1000 + seq) for seq in range(per_sub)]
            )
            last_status[sub_id] = STATUSES[(per_sub - 1) % len(STATUSES)]
        total = per_sub * len(chains)

        # A separate process: the worker measured does not share its interpreter with the client.
        with uvicorn_server("orgbill.main:app", _environment(settings)) as base:
            port = int(base.rsplit(":", 1)[1])
            elapsed = asyncio.run(_send_all(port, chains, args.concurrency))
        asyncio.run(_verify(settings, total, last_status))
        print(
            json.dumps(
                {
                    "database": "postgresql",
                    "workers": 1,
                    "events": total,
                    "subscriptions": len(chains),
                    "concurrency": args.concurrency,
                    "seconds": round(elapsed, 3),
                    "events_per_second": round(total / elapsed, 1),
                    "verified": True,
                }
            )
        )
    finally:
        asyncio.run(pg_execute(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    return 0


def _environment(settings: Settings) -> dict[str, str]:
    return {
        "ORGBILL_ENV": settings.env,
        "ORGBILL_DATABASE_URL": settings.database_url,
        "ORGBILL_DATABASE_SCHEMA": settings.database_schema or "",
        "ORGBILL_JWT_SECRET": settings.jwt_secret,
        "ORGBILL_API_KEY_SECRET": settings.api_key_secret,
        "ORGBILL_STRIPE_WEBHOOK_SECRET": SECRET,
        "ORGBILL_ACCESS_LOG": "false",
        "ORGBILL_LOG_LEVEL": "WARNING",
    }


if __name__ == "__main__":
    raise SystemExit(main())
