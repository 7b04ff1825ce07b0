"""Decision-call benchmark: `POST /check` against the one-SELECT ceiling app.

    .venv/bin/python bench/check.py [--seconds N] [--rounds N] [--connections N] [--sqlite]

On PostgreSQL (and SQLite with --sqlite) it serves orgbill and the one-SELECT FastAPI app
(bench/apps.py) on loopback, one uvicorn worker each, and loads them with the same wrk
client in interleaved rounds:
  * `check`            POST /check {"metric": "turns"} — a plain decision, nothing held;
  * `reserve+commit`   POST /check {"metric": "turns", "reserve": true}, then POST
                       /reservations/{id}/commit for the id it returned (a wrk Lua script
                       pairs them), all on one org's one hot meter row;
  * `one-SELECT app`   one primary-key SELECT per request through SQLAlchemy.
It prints median requests/s, p50, p99, errors, and the ratios the issue sets: check
>= 0.7x the ceiling with p99 <= 25 ms; reserve+commit pairs/s >= 0.3x the ceiling, 0 errors.
The org's limit on the meter is raised so no decision is a refusal; the rate limiter is on
(its org bucket is far above the load), as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    BenchDatabase,
    LoadResult,
    bench_databases,
    seed_org,
    uvicorn_server,
    wrk,
)
from orgbill.db import Database
from orgbill.models import Organization

CHECK_LUA = """
wrk.method = "POST"
wrk.body = '{"metric": "turns"}'
wrk.headers["Content-Type"] = "application/json"
"""

# One thread: a reserve's response queues its id; the next request commits it. Non-2xx
# answers are counted by wrk itself.
RESERVE_COMMIT_LUA = """
local pending = {}
local reserve_body = '{"metric": "turns", "reserve": true, "ttl_seconds": 60}'
wrk.headers["Content-Type"] = "application/json"

request = function()
  local id = table.remove(pending)
  if id then
    return wrk.format("POST", "/api/v1/reservations/" .. id .. "/commit", nil, "")
  end
  return wrk.format("POST", "/api/v1/check", nil, reserve_body)
end

response = function(status, headers, body)
  local id = string.match(body, '"reservation":{"id":"([%x%-]+)"')
  if id then
    table.insert(pending, id)
  end
end
"""


async def _raise_meter_limit(db: BenchDatabase, org_id: str) -> None:
    database = Database.from_settings(db.settings())
    try:
        async with database.session(writes=True) as session:
            org = await session.get(Organization, uuid.UUID(org_id))
            assert org is not None
            org.limit_overrides = {"max_turns_per_period": 10**12}
            await session.commit()
    finally:
        await database.dispose()


def _row(name: str, result: LoadResult) -> str:
    errors = result.non_2xx + result.socket_errors
    return (
        f"  {name:<18} {result.requests_per_second:>8.0f} req/s   p50 {result.p50_ms:>7.2f} ms"
        f"   p99 {result.p99_ms:>7.2f} ms   errors {errors}"
    )


def _median(results: list[LoadResult]) -> LoadResult:
    return LoadResult(
        requests_per_second=statistics.median(r.requests_per_second for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
    )


def bench(db: BenchDatabase, args: argparse.Namespace, scripts: Path) -> None:
    org_id, api_key = seed_org(db)
    asyncio.run(_raise_meter_limit(db, org_id))
    key = {"X-Api-Key": api_key}
    load = {"seconds": args.seconds, "connections": args.connections}
    with ExitStack() as stack:
        orgbill = stack.enter_context(uvicorn_server("orgbill.main:app", db.env()))
        probe = httpx.post(f"{orgbill}/api/v1/check", json={"metric": "turns"}, headers=key)
        assert probe.status_code == 200 and probe.json()["allowed"], probe.text
        one_select = stack.enter_context(
            uvicorn_server(
                "bench.apps:one_select",
                {"BENCH_DATABASE_URL": db.url, "BENCH_DATABASE_SCHEMA": db.schema or ""},
                factory=True,
            )
        )
        targets = {
            "check": (f"{orgbill}/api/v1/check", key, scripts / "check.lua"),
            "reserve+commit": (f"{orgbill}/api/v1/check", key, scripts / "reserve_commit.lua"),
            "one-SELECT app": (f"{one_select}/profile/{org_id}", {}, None),
        }
        rounds: dict[str, list[LoadResult]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, headers, script) in targets.items():
                rounds[name].append(wrk(url, headers, script=script, **load))
        usage = httpx.get(f"{orgbill}/api/v1/usage", headers=key).json()
    results = {name: _median(runs) for name, runs in rounds.items()}
    print(
        f"\n{db.name}: median of {args.rounds} rounds x {args.seconds}s, "
        f"{args.connections} connections, 1 worker, interleaved"
    )
    for name, result in results.items():
        print(_row(name, result))
    ceiling = results["one-SELECT app"].requests_per_second
    plain = results["check"]
    pairs = results["reserve+commit"].requests_per_second / 2
    print(
        f"  check / one-SELECT          {plain.requests_per_second / ceiling:.2f}   (target >= 0.70)"
    )
    print(f"  check p99                   {plain.p99_ms:.1f} ms (target <= 25 ms)")
    print(f"  reserve+commit pairs/s      {pairs:.0f}")
    print(f"  pairs / one-SELECT          {pairs / ceiling:.2f}   (target >= 0.30)")
    print(f"  turns committed in the run  {usage['turns']['current']}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="per target per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sqlite", action="store_true", help="measure SQLite too")
    args = parser.parse_args()
    scripts = Path(tempfile.mkdtemp(prefix="orgbill-bench-lua-"))
    (scripts / "check.lua").write_text(CHECK_LUA)
    (scripts / "reserve_commit.lua").write_text(RESERVE_COMMIT_LUA)
    with bench_databases() as databases:
        for db in databases:
            if db.name == "sqlite" and not args.sqlite:
                continue
            bench(db, args, scripts)


if __name__ == "__main__":
    main()
