"""Outbound webhooks: events delivered per second to a fast local receiver, and the latency a
write that emits an event pays with and without an endpoint to fan out to.

For each database (SQLite file; PostgreSQL schema when reachable):

1. Latency. orgbill (one uvicorn worker, its dispatcher running) and a fast receiver on
   loopback. Rounds of sequential `PATCH /organizations/{id}` (each writes an
   organization.updated event), interleaved: with no endpoint, then with an enabled endpoint
   for the org (the write also writes a delivery row and the dispatcher sends it meanwhile).
   Medians and p90 per mode, and the same-run ratio.
2. Throughput. Events written straight into the outbox (20 organizations, one endpoint for
   all), then a dispatcher alone delivers them: events delivered per second, median of rounds.

    .venv/bin/python bench/webhooks_out.py [--writes 100] [--rounds 5] [--events 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BenchDatabase, bench_databases, seed_org, uvicorn_server
from orgbill.cli import create_superadmin
from orgbill.db import Database
from orgbill.models import Organization, OrganizationStatus
from orgbill.plans.catalog import load_catalog
from orgbill.plans.store import CatalogStore
from orgbill.webhooks_out import outbox
from orgbill.webhooks_out.dispatcher import Dispatcher
from orgbill.webhooks_out.events import EventType

API = "/api/v1"
ADMIN_PASSWORD = "bench-admin-password"
QUIET_LIMITS = {"ORGBILL_USER_RATE_LIMIT": "1000000", "ORGBILL_ACCESS_LOG": "false"}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _admin_headers(http: httpx.AsyncClient, db: BenchDatabase) -> dict[str, str]:
    email = f"bench-admin-{uuid.uuid4().hex[:6]}@example.com"
    await create_superadmin(db.settings(), email, ADMIN_PASSWORD)
    token = await http.post(f"{API}/auth/token", json={"email": email, "password": ADMIN_PASSWORD})
    token.raise_for_status()
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def _latency(
    db: BenchDatabase, org_id: str, api_key: str, writes: int, rounds: int
) -> dict[str, Any]:
    env = {**db.env(), **QUIET_LIMITS}
    with (
        uvicorn_server("bench.apps:webhook_receiver", {}, factory=True) as receiver,
        uvicorn_server("orgbill.main:app", env) as base,
    ):
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            admin = await _admin_headers(http, db)
            created = await http.post(
                f"{API}/admin/webhook-endpoints",
                json={"url": f"{receiver}/hook", "events": ["*"], "organization_id": org_id},
                headers=admin,
            )
            created.raise_for_status()
            endpoint = f"{API}/admin/webhook-endpoints/{created.json()['id']}"
            key = {"X-Api-Key": api_key}
            samples: dict[str, list[float]] = {"without": [], "with": []}
            # Warm-up: connections, caches, the first statements.
            for i in range(20):
                await http.patch(
                    f"{API}/organizations/{org_id}", json={"name": f"w{i}"}, headers=key
                )
            for round_no in range(rounds):
                for mode in ("without", "with"):
                    toggled = await http.patch(
                        endpoint, json={"enabled": mode == "with"}, headers=admin
                    )
                    toggled.raise_for_status()
                    for i in range(writes):
                        started = time.perf_counter()
                        response = await http.patch(
                            f"{API}/organizations/{org_id}",
                            json={"name": f"r{round_no}-{mode}-{i}"},
                            headers=key,
                        )
                        samples[mode].append((time.perf_counter() - started) * 1000)
                        assert response.status_code == 200, response.text
            delivered = (await http.get(f"{receiver}/count")).json()["count"]
    without, with_ = samples["without"], samples["with"]
    return {
        "writes_per_mode": len(without),
        "median_ms_without_endpoint": round(statistics.median(without), 2),
        "median_ms_with_endpoint": round(statistics.median(with_), 2),
        "p90_ms_without_endpoint": round(_percentile(without, 0.9), 2),
        "p90_ms_with_endpoint": round(_percentile(with_, 0.9), 2),
        "median_ratio_with_over_without": round(
            statistics.median(with_) / statistics.median(without), 3
        ),
        "delivered_during_rounds": delivered,
    }


async def _fill_outbox(database: Database, org_ids: list[uuid.UUID], events: int) -> None:
    async with database.session(writes=True) as session:
        for i in range(events):
            org_id = org_ids[i % len(org_ids)]
            await outbox.emit(
                session,
                EventType.ORGANIZATION_UPDATED,
                org_id,
                {"organization_id": str(org_id), "id": str(org_id), "name": f"bench {i}"},
            )
        await session.commit()


async def _orgs(database: Database, count: int) -> list[uuid.UUID]:
    from orgbill.kit.time import utcnow

    ids = [uuid.uuid4() for _ in range(count)]
    async with database.session(writes=True) as session:
        now = utcnow()
        for org_id in ids:
            session.add(
                Organization(
                    id=org_id,
                    name="bench",
                    slug=f"bench-{org_id.hex[:12]}",
                    status=OrganizationStatus.ACTIVE,
                    entitlements=[],
                    preferences={},
                    partner_configuration={},
                    created_at=now,
                    updated_at=now,
                )
            )
        await session.commit()
    return ids


async def _throughput(db: BenchDatabase, events: int, rounds: int) -> dict[str, Any]:
    settings = db.settings().model_copy(update={"webhook_dispatch": False})
    database = Database.from_settings(settings)
    store = CatalogStore(load_catalog(settings.plans_file))
    rates: list[float] = []
    try:
        org_ids = await _orgs(database, 20)
        with uvicorn_server("bench.apps:webhook_receiver", {}, factory=True) as receiver:
            async with httpx.AsyncClient(timeout=30) as http:
                from orgbill.kit.time import utcnow
                from orgbill.models import WebhookEndpoint

                async with database.session(writes=True) as session:
                    now = utcnow()
                    session.add(
                        WebhookEndpoint(
                            id=uuid.uuid4(),
                            url=f"{receiver}/hook",
                            events=["*"],
                            enabled=True,
                            secret_nonce="bench-nonce",
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    await session.commit()
                for _ in range(rounds):
                    before = (await http.get(f"{receiver}/count")).json()["count"]
                    await _fill_outbox(database, org_ids, events)
                    dispatcher = Dispatcher(database, settings, store)
                    started = time.perf_counter()
                    async with asyncio.timeout(600):
                        await dispatcher.drain()
                    elapsed = time.perf_counter() - started
                    await dispatcher.stop()
                    after = (await http.get(f"{receiver}/count")).json()["count"]
                    assert after - before == events, (before, after)
                    rates.append(events / elapsed)
    finally:
        await database.dispose()
    return {
        "events_per_round": events,
        "rounds": rounds,
        "delivered_per_second_median": round(statistics.median(rates), 1),
        "delivered_per_second_rounds": [round(r, 1) for r in rates],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=100, help="writes per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=1000, help="events per throughput round")
    args = parser.parse_args()
    print(f"# load average before: {os.getloadavg()}")
    with bench_databases() as databases:
        for db in databases:
            org_id, api_key = seed_org(db)
            latency = asyncio.run(_latency(db, org_id, api_key, args.writes, args.rounds))
            print(f"{db.name} write latency: {latency}")
            throughput = asyncio.run(_throughput(db, args.events, 3))
            print(f"{db.name} delivery throughput: {throughput}")
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
