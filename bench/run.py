"""Profile-read benchmark: orgbill against a bare JSON route and a one-SELECT app.

    make bench            (or: .venv/bin/python bench/run.py [--seconds N])

For SQLite and PostgreSQL, serves three apps one after another on loopback (one uvicorn
worker each) and loads each with the same wrk client; prints requests/s, p50, p99 and the
ratios the plans issue sets (target: orgbill >= 0.7x the one-SELECT app).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import LoadResult, bench_databases, seed_org, uvicorn_server, wrk


def _row(name: str, result: LoadResult) -> str:
    flag = f"  ({result.non_2xx} non-2xx!)" if result.non_2xx else ""
    return (
        f"  {name:<28} {result.requests_per_second:>9.0f} req/s   p50 {result.p50_ms:>7.2f} ms"
        f"   p99 {result.p99_ms:>7.2f} ms{flag}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    load = {"seconds": args.seconds, "connections": args.connections}
    with bench_databases() as databases:
        for db in databases:
            org_id, api_key = seed_org(db)
            path = f"/api/v1/organizations/profile/{org_id}"
            key = {"X-Api-Key": api_key}
            results: dict[str, LoadResult] = {}
            with uvicorn_server("orgbill.main:app", db.env()) as base:
                body = httpx.get(base + path, headers=key).json()
                assert body["id"] == org_id, body
                results["orgbill profile"] = wrk(base + path, key, **load)
            with uvicorn_server(
                "orgbill.main:app", {**db.env(), "ORGBILL_RATE_LIMIT_ENABLED": "false"}
            ) as base:
                results["orgbill, limiter off"] = wrk(base + path, key, **load)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
                json.dump(body, handle)
            with uvicorn_server(
                "bench.apps:bare_json", {"BENCH_JSON_FILE": handle.name}, factory=True
            ) as base:
                results["bare JSON route"] = wrk(f"{base}/profile/{org_id}", {}, **load)
            env = {"BENCH_DATABASE_URL": db.url, "BENCH_DATABASE_SCHEMA": db.schema or ""}
            with uvicorn_server("bench.apps:one_select", env, factory=True) as base:
                results["one-SELECT app"] = wrk(f"{base}/profile/{org_id}", {}, **load)
            Path(handle.name).unlink()

            profile = results["orgbill profile"].requests_per_second
            print(f"\n{db.name} ({args.seconds}s each, {args.connections} connections, 1 worker)")
            for name, result in results.items():
                print(_row(name, result))
            print(
                f"  ratio profile / one-SELECT  {profile / results['one-SELECT app'].requests_per_second:.2f}"
                "   (target >= 0.70)"
            )
            print(
                f"  ratio profile / bare JSON   {profile / results['bare JSON route'].requests_per_second:.2f}"
                "   (stretch >= 0.50)"
            )
            off = results["orgbill, limiter off"].requests_per_second
            print(
                f"  rate limiter cost           {1 - profile / off:+.1%} of the profile read"
                "   (target <= 10%)"
            )


if __name__ == "__main__":
    main()
