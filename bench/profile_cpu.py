"""CPU per profile read, this checkout against a baseline checkout, interleaved.

    git archive main | tar -x -C /tmp/orgbill-baseline
    .venv/bin/python bench/profile_cpu.py /tmp/orgbill-baseline [--rounds N] [--requests N]

On a machine other processes keep busy, wrk's requests/s swing with their load; the CPU time
this process spends per request (`time.process_time`) swings far less. Each round runs one
fresh process per side (baseline code first on PYTHONPATH, or this checkout's), which serves
`GET /organizations/profile/{id}` in-process through httpx's ASGI transport against the same
migrated SQLite database, warms up, then times `--requests` reads. Prints the median CPU
microseconds per read per side, the requests/s per core that implies, and this / baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WARMUP = 300


async def _serve_and_time(org_id: str, api_key: str, requests: int) -> float:
    import httpx

    from orgbill.config import get_settings
    from orgbill.main import create_app

    app = create_app(get_settings())
    path = f"/api/v1/organizations/profile/{org_id}"
    headers = {"X-Api-Key": api_key}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(WARMUP):
                assert (await client.get(path, headers=headers)).status_code == 200
            started = time.process_time()
            for _ in range(requests):
                await client.get(path, headers=headers)
            return (time.process_time() - started) / requests * 1e6


def worker(args: argparse.Namespace) -> None:
    micros = asyncio.run(_serve_and_time(args.org, args.key, args.requests))
    print(json.dumps({"us_per_request": micros}))


def _run_side(root: Path, env: dict[str, str], org_id: str, key: str, requests: int) -> float:
    cmd = [sys.executable, __file__, "--worker", "--org", org_id, "--key", key]
    cmd += ["--requests", str(requests)]
    full_env = {**os.environ, **env, "PYTHONPATH": f"{root / 'src'}:{root}"}
    out = subprocess.run(
        cmd, env=full_env, capture_output=True, text=True, check=True, timeout=600
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["us_per_request"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("baseline", type=Path, nargs="?")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--org", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.baseline is None:
        parser.error("baseline checkout required")

    from bench.common import ROOT, bench_databases, seed_org

    os.environ["ORGBILL_BENCH_POSTGRES_URL"] = "postgresql://postgres@127.0.0.1:1/none"
    with bench_databases() as databases:
        db = databases[0]  # SQLite: no network between the two sides
        org_id, api_key = seed_org(db)
        env = {**db.env(), "ORGBILL_LOG_LEVEL": "WARNING", "ORGBILL_ACCESS_LOG": "false"}
        sides = {"baseline": args.baseline.resolve(), "this checkout": ROOT}
        runs: dict[str, list[float]] = {name: [] for name in sides}
        for index in range(args.rounds):
            order = list(sides) if index % 2 == 0 else list(reversed(sides))
            for name in order:
                runs[name].append(_run_side(sides[name], env, org_id, api_key, args.requests))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    print(
        f"\nsqlite: profile read, CPU per request, median of {args.rounds} rounds x "
        f"{args.requests} requests (in-process, ASGI transport)"
    )
    for name, micros in medians.items():
        rounds = " ".join(f"{v:.0f}" for v in runs[name])
        print(
            f"  {name:<14} {micros:>7.0f} us/request  = {1e6 / micros:>6.0f} req/s per core  [{rounds}]"
        )
    ratio = medians["baseline"] / medians["this checkout"]
    print(f"  req/s per core, this / baseline   {ratio:.2f}")


if __name__ == "__main__":
    main()
