"""Profile-read benchmark: orgbill against a bare JSON route and a one-SELECT app.

    make bench            (or: .venv/bin/python bench/run.py [--seconds N] [--rounds N])

For SQLite and PostgreSQL it serves four apps on loopback, one uvicorn worker each: orgbill's
`GET /organizations/profile/{id}` with an API key (rate limiter on, and off), a bare FastAPI
app returning the same JSON, and a bare FastAPI app doing one primary-key SELECT through
SQLAlchemy. The same wrk client loads one app at a time, in interleaved rounds (this machine's
speed drifts; interleaving and taking medians keeps the ratios honest). It prints median
requests/s, p50 and p99 per app, and the ratios the issues set.

`--baseline REF` (e.g. `main`) also serves orgbill as committed at REF (its `src/` exported
to a temporary directory), in the same interleaved rounds: the change's effect on the
profile read (e.g. issue 9's caller step: identify once per request, in a middleware).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ROOT,
    LoadResult,
    bench_databases,
    cpu_ratio,
    cpu_text,
    median_result,
    seed_org,
    serve,
    wrk,
)


def _export_src(ref: str) -> Path:
    """orgbill's source as committed at `ref`, in a temporary directory (nothing checked out)."""
    target = Path(tempfile.mkdtemp(prefix="orgbill-baseline-"))
    archive = subprocess.run(
        ["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def _row(name: str, result: LoadResult) -> str:
    flag = f"  ({result.non_2xx} non-2xx!)" if result.non_2xx else ""
    return (
        f"  {name:<24} {result.requests_per_second:>8.0f} req/s   p50 {result.p50_ms:>7.2f} ms"
        f"   p99 {result.p99_ms:>7.2f} ms{cpu_text(result)}{flag}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="per app per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--baseline", help="also serve orgbill as committed at this git ref")
    args = parser.parse_args()
    baseline_src = _export_src(args.baseline) if args.baseline else None
    load = {"seconds": args.seconds, "connections": args.connections}
    with bench_databases() as databases:
        for db in databases:
            org_id, api_key = seed_org(db)
            path = f"/api/v1/organizations/profile/{org_id}"
            key = {"X-Api-Key": api_key}
            with ExitStack() as stack:
                pids: dict[str, int] = {}
                orgbill, pids["orgbill profile"] = serve(stack, "orgbill.main:app", db.env())
                body = httpx.get(orgbill + path, headers=key).json()
                assert body["id"] == org_id, body
                limiter_off, pids["orgbill, limiter off"] = serve(
                    stack,
                    "orgbill.main:app",
                    {**db.env(), "ORGBILL_RATE_LIMIT_ENABLED": "false"},
                )
                json_file = Path(tempfile.mkdtemp()) / "profile.json"
                json_file.write_text(json.dumps(body))
                bare, pids["bare JSON route"] = serve(
                    stack,
                    "bench.apps:bare_json",
                    {"BENCH_JSON_FILE": str(json_file)},
                    factory=True,
                )
                select_env = {
                    "BENCH_DATABASE_URL": db.url,
                    "BENCH_DATABASE_SCHEMA": db.schema or "",
                }
                one_select, pids["one-SELECT app"] = serve(
                    stack, "bench.apps:one_select", select_env, factory=True
                )
                targets = {
                    "orgbill profile": (orgbill + path, key),
                    "orgbill, limiter off": (limiter_off + path, key),
                    "bare JSON route": (f"{bare}/profile/{org_id}", {}),
                    "one-SELECT app": (f"{one_select}/profile/{org_id}", {}),
                }
                if baseline_src is not None:
                    baseline, pids[f"orgbill @{args.baseline}"] = serve(
                        stack,
                        "orgbill.main:app",
                        {**db.env(), "PYTHONPATH": f"{baseline_src}:{ROOT}"},
                    )
                    targets[f"orgbill @{args.baseline}"] = (baseline + path, key)
                rounds: dict[str, list[LoadResult]] = {name: [] for name in targets}
                for _ in range(args.rounds):
                    for name, (url, headers) in targets.items():
                        rounds[name].append(wrk(url, headers, server_pid=pids[name], **load))
            results = {name: median_result(runs) for name, runs in rounds.items()}
            profile = results["orgbill profile"].requests_per_second
            print(
                f"\n{db.name}: median of {args.rounds} rounds x {args.seconds}s, "
                f"{args.connections} connections, 1 worker"
            )
            for name, result in results.items():
                print(_row(name, result))
            one = results["one-SELECT app"].requests_per_second
            bare_rps = results["bare JSON route"].requests_per_second
            off = results["orgbill, limiter off"].requests_per_second
            print(f"  profile / one-SELECT     {profile / one:.2f}   (target >= 0.70)")
            print(
                f"  ... by CPU per request   {cpu_ratio(results['orgbill profile'], results['one-SELECT app'])}"
                "   (one-SELECT's CPU / orgbill's: the rate ratio both CPU-bound)"
            )
            print(f"  profile / bare JSON      {profile / bare_rps:.2f}   (stretch >= 0.50)")
            print(
                f"  limiter on / off         {profile / off:.3f}   (cost {1 - profile / off:+.1%}, goal <= 5%)"
            )
            if baseline_src is not None:
                before = results[f"orgbill @{args.baseline}"].requests_per_second
                print(f"  profile / @{args.baseline:<12} {profile / before:.3f}")


if __name__ == "__main__":
    main()
