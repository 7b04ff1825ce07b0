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
At 32 connections every app queues (mean latency = 32 / its requests/s), so it also runs the
check and the ceiling at --quiet-connections (4) in the same rounds: their own p50 and p99.
The org's limit on the meter is raised so no decision is a refusal; the rate limiter is on
(its org bucket is far above the load), as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select, update

from bench.common import (
    BENCH_RATE_LIMIT,
    BenchDatabase,
    LoadResult,
    bench_databases,
    cpu_ratio,
    cpu_text,
    median_result,
    py_spy,
    seed_org,
    serve,
    wrk,
)
from orgbill.db import Database
from orgbill.models import Membership, Organization, User
from orgbill.organizations import service as org_service
from orgbill.organizations.schemas import OrganizationCreate
from orgbill.plans.catalog import load_catalog
from orgbill.plans.store import CatalogStore

CHECK_LUA = """
wrk.method = "POST"
wrk.body = '{"metric": "turns"}'
wrk.headers["Content-Type"] = "application/json"
"""

# Per wrk thread (its own Lua state, its own org's key): a reserve's response queues its
# id; the next request commits it. One org for all threads: one hot meter row.
RESERVE_COMMIT_LUA = """
local keys = {%s}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("key", keys[(threads - 1) %% #keys + 1])
end

local pending = {}
local reserve_body = '{"metric": "turns", "reserve": true, "ttl_seconds": 60}'

function request()
  local id = table.remove(pending)
  if id then
    return wrk.format("POST", "/api/v1/reservations/" .. id .. "/commit", {["X-Api-Key"] = key}, "")
  end
  return wrk.format("POST", "/api/v1/check",
    {["X-Api-Key"] = key, ["Content-Type"] = "application/json"}, reserve_body)
end

function response(status, headers, body)
  local id = string.match(body, '"reservation":{"id":"([%%x%%-]+)"')
  if id then
    table.insert(pending, id)
  end
end
"""


def reserve_commit_lua(keys: list[str]) -> str:
    return RESERVE_COMMIT_LUA % ", ".join(f'"{key}"' for key in keys)


async def _bench_orgs(
    db: BenchDatabase, first: tuple[str, str], count: int
) -> list[tuple[str, str]]:
    """`count` orgs (the demo org `first` and more of its user's) with an API key each, a
    meter limit no run reaches and a rate limit (an admin override) far above the load:
    the limiter runs but never refuses."""
    org_id, api_key = first
    database = Database.from_settings(db.settings())
    orgs = [(org_id, api_key)]
    store = CatalogStore(load_catalog(db.settings().plans_file))
    try:
        async with database.session(writes=True) as session:
            owner = await session.scalar(
                select(Membership.user_id).where(Membership.organization_id == uuid.UUID(org_id))
            )
            user = await session.get(User, owner)
            assert user is not None
            for index in range(1, count):
                org, _ = await org_service.create_organization(
                    session, user, OrganizationCreate(name=f"Bench {index}"), store
                )
                _, key = await org_service.create_initial_api_key(
                    session, org, db.settings(), name="bench"
                )
                orgs.append((str(org.id), key))
            await session.execute(
                update(Organization)
                .where(Organization.id.in_([uuid.UUID(o) for o, _ in orgs]))
                .values(
                    rate_limit=BENCH_RATE_LIMIT,
                    limit_overrides={"max_turns_per_period": 10**12},
                )
            )
            await session.commit()
    finally:
        await database.dispose()
    return orgs


def _row(name: str, result: LoadResult) -> str:
    return (
        f"  {name:<18} {result.requests_per_second:>8.0f} req/s   p50 {result.p50_ms:>7.2f} ms"
        f"   p99 {result.p99_ms:>7.2f} ms   non-2xx {result.non_2xx}"
        f"   socket errors {result.socket_errors}{cpu_text(result)}"
    )


def bench(db: BenchDatabase, args: argparse.Namespace, scripts: Path) -> None:
    orgs = asyncio.run(_bench_orgs(db, seed_org(db), args.orgs))
    org_id, api_key = orgs[0]
    key = {"X-Api-Key": api_key}
    (scripts / "reserve_commit_hot.lua").write_text(reserve_commit_lua([api_key]))
    (scripts / "reserve_commit_spread.lua").write_text(reserve_commit_lua([k for _, k in orgs]))
    load = {"seconds": args.seconds, "connections": args.connections}
    with ExitStack() as stack:
        orgbill, orgbill_pid = serve(stack, "orgbill.main:app", db.env())
        probe = httpx.post(f"{orgbill}/api/v1/check", json={"metric": "turns"}, headers=key)
        assert probe.status_code == 200 and probe.json()["allowed"], probe.text
        one_select, one_select_pid = serve(
            stack,
            "bench.apps:one_select",
            {"BENCH_DATABASE_URL": db.url, "BENCH_DATABASE_SCHEMA": db.schema or ""},
            factory=True,
        )
        check_url = f"{orgbill}/api/v1/check"
        targets = {
            "check": (check_url, key, scripts / "check.lua", 1, orgbill_pid),
            "reserve+commit": (check_url, {}, scripts / "reserve_commit_hot.lua", 1, orgbill_pid),
            f"... over {len(orgs)} orgs": (
                check_url,
                {},
                scripts / "reserve_commit_spread.lua",
                len(orgs),
                orgbill_pid,
            ),
            "one-SELECT app": (f"{one_select}/profile/{org_id}", {}, None, 1, one_select_pid),
        }
        rounds: dict[str, list[LoadResult]] = {name: [] for name in targets}
        # The same check and ceiling at a load that does not queue: their own latency.
        quiet = {"seconds": args.seconds, "connections": args.quiet_connections}
        quiet_targets = {name: targets[name] for name in ("check", "one-SELECT app")}
        quiet_rounds: dict[str, list[LoadResult]] = {name: [] for name in quiet_targets}
        for round_no in range(args.rounds):
            for name, (url, headers, script, threads, pid) in targets.items():
                spy = args.py_spy if round_no == 0 and name == args.py_spy_target else None
                with py_spy(pid, spy):
                    rounds[name].append(
                        wrk(url, headers, script=script, threads=threads, server_pid=pid, **load)
                    )
            for name, (url, headers, script, threads, pid) in quiet_targets.items():
                quiet_rounds[name].append(
                    wrk(url, headers, script=script, threads=threads, server_pid=pid, **quiet)
                )
        usage = httpx.get(f"{orgbill}/api/v1/usage", headers=key).json()
    results = {name: median_result(runs) for name, runs in rounds.items()}
    print(
        f"\n{db.name}: median of {args.rounds} rounds x {args.seconds}s, "
        f"{args.connections} connections, 1 worker, interleaved"
    )
    for name, result in results.items():
        print(_row(name, result))
    ceiling = results["one-SELECT app"].requests_per_second
    plain = results["check"]
    hot = results["reserve+commit"].requests_per_second / 2
    spread = results[f"... over {len(orgs)} orgs"].requests_per_second / 2
    print(
        f"  check / one-SELECT          {plain.requests_per_second / ceiling:.2f}   (target >= 0.70)"
    )
    print(f"  ... by CPU per request      {cpu_ratio(plain, results['one-SELECT app'])}")
    print(f"  check p99                   {plain.p99_ms:.1f} ms (target <= 25 ms)")
    print(
        f"  pairs / one-SELECT, 1 org   {hot / ceiling:.2f}   ({hot:.0f} pairs/s; target >= 0.30)"
    )
    print(
        f"  pairs / one-SELECT, {len(orgs)} orgs  {spread / ceiling:.2f}   ({spread:.0f} pairs/s)"
    )
    # A pair is two requests: by CPU, the ceiling's CPU per request over a pair's.
    spread_result = results[f"... over {len(orgs)} orgs"]
    print(f"  ... by CPU per pair         {cpu_ratio(spread_result, results['one-SELECT app'], 2)}")
    print(f"  turns committed, 1st org    {usage['turns']['current']}")
    # Little's law: at 32 connections a worker serving R req/s answers in 32/R s on average,
    # so the p99 there is queueing; at a few connections it is the request's own time.
    print(f"\n  at {args.quiet_connections} connections (not queueing):")
    for name, runs in quiet_rounds.items():
        print(_row(name, median_result(runs)))
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="per target per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--orgs", type=int, default=8, help="orgs (wrk threads) for the spread run")
    parser.add_argument(
        "--quiet-connections", type=int, default=4, help="connections of the latency run"
    )
    parser.add_argument("--sqlite", action="store_true", help="measure SQLite too")
    parser.add_argument(
        "--py-spy", help="record orgbill during round 1 of one target (.svg or raw)"
    )
    parser.add_argument(
        "--py-spy-target", default="check", help="the target --py-spy records (e.g. reserve+commit)"
    )
    args = parser.parse_args()
    scripts = Path(tempfile.mkdtemp(prefix="orgbill-bench-lua-"))
    (scripts / "check.lua").write_text(CHECK_LUA)
    with bench_databases() as databases:
        for db in databases:
            if db.name == "sqlite" and not args.sqlite:
                continue
            bench(db, args, scripts)


if __name__ == "__main__":
    main()
