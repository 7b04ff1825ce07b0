"""Profile read of this checkout against a baseline checkout, same run, interleaved.

    git archive main | tar -x -C /tmp/orgbill-baseline
    .venv/bin/python bench/compare.py /tmp/orgbill-baseline [--seconds N] [--rounds N]

Both servers (one uvicorn worker each, rate limiter on) serve the same migrated database
(this checkout's migrations) and the same org; the baseline's code is put first on
PYTHONPATH. wrk loads one server at a time, alternating every round, and the script prints
median requests/s per side and their ratio (this / baseline). The baseline must be able to
serve this checkout's schema (true while the change between them only adds or drops tables
the profile read does not use).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ROOT,
    LoadResult,
    bench_databases,
    median_result,
    seed_org,
    uvicorn_server,
    wrk,
)
from bench.run import _row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("baseline", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--seconds", type=int, default=5, help="per server per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    baseline = args.baseline.resolve()
    load = {"seconds": args.seconds, "connections": args.connections}
    with bench_databases() as databases:
        for db in databases:
            org_id, api_key = seed_org(db)
            path = f"/api/v1/organizations/profile/{org_id}"
            key = {"X-Api-Key": api_key}
            with ExitStack() as stack:
                servers = {
                    "baseline": stack.enter_context(
                        uvicorn_server(
                            "orgbill.main:app",
                            {**db.env(), "PYTHONPATH": f"{baseline / 'src'}:{baseline}"},
                        )
                    ),
                    "this checkout": stack.enter_context(
                        uvicorn_server(
                            "orgbill.main:app", {**db.env(), "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
                        )
                    ),
                }
                for url in servers.values():
                    response = httpx.get(url + path, headers=key)
                    assert response.status_code == 200 and response.json()["id"] == org_id
                rounds: dict[str, list[LoadResult]] = {name: [] for name in servers}
                for index in range(args.rounds):
                    # Alternate who goes first, so neither always gets the warmer machine.
                    order = list(servers) if index % 2 == 0 else list(reversed(servers))
                    for name in order:
                        rounds[name].append(wrk(servers[name] + path, key, **load))
            results = {name: median_result(runs) for name, runs in rounds.items()}
            print(
                f"\n{db.name}: profile read, median of {args.rounds} rounds x {args.seconds}s, "
                f"{args.connections} connections, 1 worker"
            )
            for name, result in results.items():
                print(_row(name, result))
            ratio = (
                results["this checkout"].requests_per_second
                / results["baseline"].requests_per_second
            )
            paired = [
                a.requests_per_second / b.requests_per_second
                for a, b in zip(rounds["this checkout"], rounds["baseline"], strict=True)
            ]
            print(f"  this / baseline          {ratio:.2f}   (ratio of medians)")
            # Each round's pair ran back to back: the median of their ratios is the least
            # disturbed by load from other processes drifting over the run.
            print(f"  median paired ratio      {statistics.median(paired):.2f}")
            print("  per round                " + " ".join(f"{r:.2f}" for r in paired))


if __name__ == "__main__":
    main()
