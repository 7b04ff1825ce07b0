"""How many signed subscription events per second one orgbill worker applies on PostgreSQL,
beside a floor app measured in the same run.

Starts orgbill (one uvicorn worker) on a loopback port against a throwaway PostgreSQL schema,
and the floor (bench/apps.py `stripe_floor`: verify with the stripe SDK, insert into the
inbox table, commit) against another. In interleaved rounds (ABBA order) each gets the same
workload: a bounded number of signed `customer.subscription.*` events over HTTP with a bounded
number in flight, spread over many subscriptions (new ones each round) with increasing
`created`. Each orgbill event is verified, stored in the inbox, applied and committed before
its 200. After each round it checks every event is in orgbill's inbox as processed and every
subscription holds its newest state. Prints per round and the medians: events/s, p50/p99
latency, and orgbill / floor.

    ORGBILL_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/stripe_webhooks.py [--events 3000] [--concurrency 32] [--rounds 3]
        [--py-spy out.txt]   # py-spy records orgbill's worker during its first round
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import pg_execute, process_cpu_seconds, py_spy, uvicorn_server
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
                    select(Subscription.stripe_subscription_id, Subscription.status).where(
                        Subscription.stripe_subscription_id.in_(list(last_status))
                    )
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


async def _send_all(
    port: int, bodies: list[list[bytes]], concurrency: int
) -> tuple[float, list[float]]:
    """A lean keep-alive HTTP/1.1 client with every request signed before the clock starts,
    so the figure is the server's, not the client's. Events of one subscription go in order
    (as Stripe mostly sends them); subscriptions in parallel. Returns the elapsed seconds
    and each request's latency."""
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    for chain in bodies:
        queue.put_nowait([_request_bytes(port, body) for body in chain])
    latencies: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty():
                for request in queue.get_nowait():
                    sent = time.perf_counter()
                    writer.write(request)
                    status, body = await _read_response(reader)
                    latencies.append(time.perf_counter() - sent)
                    assert status == 200, body
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _figures(events: int, elapsed: float, latencies: list[float], cpu: float) -> dict[str, float]:
    return {
        "events_per_second": round(events / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "server_cpu_ms_per_event": round(cpu / events * 1000, 2),
    }


def _chains(
    round_no: int, org_ids: list[str], per_sub: int, now: int
) -> tuple[list[list[bytes]], dict[str, str]]:
    """One round's events: a new subscription per org, `per_sub` events each, in order."""
    chains: list[list[bytes]] = []
    last_status: dict[str, str] = {}
    for n, org_id in enumerate(org_ids):
        sub_id, customer = f"sub_bench{round_no:02d}x{n:05d}", f"cus_bench{n:05d}"
        chains.append(
            [_event(sub_id, org_id, customer, seq, now - 1000 + seq) for seq in range(per_sub)]
        )
        last_status[sub_id] = STATUSES[(per_sub - 1) % len(STATUSES)]
    return chains, last_status


def _prepare_schema(url: str, schema: str, *, seed: int) -> tuple[Settings, list[str]]:
    asyncio.run(pg_execute(url, f'CREATE SCHEMA "{schema}"'))
    settings = _settings(url, schema)
    migrate.upgrade(settings)
    asyncio.run(sync_plans(settings))
    return settings, asyncio.run(_seed_orgs(settings, seed)) if seed else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--subscriptions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-floor", action="store_true", help="measure orgbill alone")
    parser.add_argument("--py-spy", help="record orgbill's worker in round 1 (.svg or raw)")
    args = parser.parse_args()
    url = os.environ.get("ORGBILL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    tag = secrets.token_hex(4)
    schema, floor_schema = f"orgbill_bench_{tag}", f"orgbill_bench_floor_{tag}"
    per_sub = max(1, args.events // args.subscriptions)
    try:
        settings, org_ids = _prepare_schema(url, schema, seed=args.subscriptions)
        if not args.no_floor:
            _prepare_schema(url, floor_schema, seed=0)
        floor_env = {
            "BENCH_DATABASE_URL": url,
            "BENCH_DATABASE_SCHEMA": floor_schema,
            "BENCH_STRIPE_SECRET": SECRET,
        }
        results: dict[str, list[dict[str, float]]] = {"orgbill": [], "floor": []}
        processed = 0
        servers = {"orgbill": ("orgbill.main:app", _environment(settings), False)}
        if not args.no_floor:
            servers["floor"] = ("bench.apps:stripe_floor", floor_env, True)
        orgs = org_ids or [str(uuid.uuid4())] * args.subscriptions
        warmups = 0
        for round_no in range(args.rounds):
            order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
            for side in order:
                # One server at a time: PostgreSQL's 100 connections are shared with others.
                app, env, factory = servers[side]
                pids: list[int] = []
                with uvicorn_server(app, env, factory=factory, pids=pids) as base:
                    port = int(base.rsplit(":", 1)[1])
                    # Warm-up (not measured): the app opens its connections and prepares its
                    # statements, as a server in service has long done.
                    warmups += 1
                    warm, _ = _chains(
                        50 + warmups, orgs[: args.concurrency], per_sub, int(time.time())
                    )
                    asyncio.run(_send_all(port, warm, args.concurrency))
                    if side == "orgbill":
                        processed += per_sub * len(warm)
                    chains, last_status = _chains(round_no, orgs, per_sub, int(time.time()))
                    total = per_sub * len(chains)
                    spy = args.py_spy if side == "orgbill" and round_no == 0 else None
                    cpu_before = process_cpu_seconds(pids[0])
                    with py_spy(pids[0], spy):
                        elapsed, latencies = asyncio.run(_send_all(port, chains, args.concurrency))
                    cpu = process_cpu_seconds(pids[0]) - cpu_before
                if side == "orgbill":
                    processed += total
                    asyncio.run(_verify(settings, processed, last_status))
                figures = _figures(total, elapsed, latencies, cpu)
                results[side].append(figures)
                print(json.dumps({"round": round_no + 1, "app": side, **figures}), flush=True)
        summary: dict[str, object] = {
            "database": "postgresql",
            "workers": 1,
            "events_per_round": per_sub * args.subscriptions,
            "subscriptions": args.subscriptions,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "verified": True,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        for side, rows in results.items():
            for key in ("events_per_second", "p50_ms", "p99_ms", "server_cpu_ms_per_event"):
                if rows:
                    summary[f"{side}_{key}"] = statistics.median(row[key] for row in rows)
        if results["floor"]:
            ratios = [
                o["events_per_second"] / f["events_per_second"]
                for o, f in zip(results["orgbill"], results["floor"], strict=True)
            ]
            summary["ratio_per_round"] = [round(r, 2) for r in ratios]
            summary["ratio_median"] = round(statistics.median(ratios), 2)
        print(json.dumps(summary))
    finally:
        asyncio.run(pg_execute(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        asyncio.run(pg_execute(url, f'DROP SCHEMA IF EXISTS "{floor_schema}" CASCADE'))
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
