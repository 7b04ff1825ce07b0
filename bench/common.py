"""Shared bench plumbing: throwaway databases, uvicorn servers on loopback, wrk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import update

from orgbill import migrate
from orgbill.cli import seed_demo, sync_plans
from orgbill.config import Settings
from orgbill.db import Database
from orgbill.models import Organization

ROOT = Path(__file__).resolve().parents[1]
BENCH_RATE_LIMIT = 1_000_000
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
BENCH_SECRETS = {
    "ORGBILL_JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123456789",
    "ORGBILL_API_KEY_SECRET": "bench-api-key-secret-0123456789abcdef0123",
}


@dataclass
class BenchDatabase:
    name: str
    url: str
    schema: str | None

    def settings(self) -> Settings:
        return Settings(
            env="test",
            database_url=self.url,
            database_schema=self.schema,
            jwt_secret=BENCH_SECRETS["ORGBILL_JWT_SECRET"],
            api_key_secret=BENCH_SECRETS["ORGBILL_API_KEY_SECRET"],
        )

    def env(self) -> dict[str, str]:
        env = {"ORGBILL_ENV": "test", "ORGBILL_DATABASE_URL": self.url, **BENCH_SECRETS}
        if self.schema:
            env["ORGBILL_DATABASE_SCHEMA"] = self.schema
        return env


def postgres_reachable(url: str) -> bool:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception:
        return False
    return True


async def pg_execute(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def bench_databases() -> Iterator[list[BenchDatabase]]:
    """A migrated SQLite file and (when reachable) a migrated PostgreSQL schema."""
    tmp = Path(tempfile.mkdtemp(prefix="orgbill-bench-"))
    databases = [BenchDatabase("sqlite", f"sqlite+aiosqlite:///{tmp / 'bench.db'}", None)]
    pg_url = os.environ.get("ORGBILL_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    schema = f"orgbill_bench_{secrets.token_hex(3)}"
    if postgres_reachable(pg_url):
        asyncio.run(pg_execute(pg_url, f'CREATE SCHEMA "{schema}"'))
        databases.append(BenchDatabase("postgres", pg_url, schema))
    else:
        print(f"# PostgreSQL at {pg_url} unreachable: measuring SQLite only", file=sys.stderr)
    try:
        for db in databases:
            migrate.upgrade(db.settings())
            asyncio.run(sync_plans(db.settings()))
        yield databases
    finally:
        if len(databases) > 1:
            asyncio.run(pg_execute(pg_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        shutil.rmtree(tmp, ignore_errors=True)


async def _raise_rate_limit(db: BenchDatabase, org_id: str) -> None:
    database = Database.from_settings(db.settings())
    try:
        async with database.session(writes=True) as session:
            await session.execute(
                update(Organization)
                .where(Organization.id == uuid.UUID(org_id))
                .values(rate_limit=BENCH_RATE_LIMIT)
            )
            await session.commit()
    finally:
        await database.dispose()


def seed_org(db: BenchDatabase) -> tuple[str, str]:
    """A demo org whose rate limit (an admin override) is far above what the load reaches:
    the limiter runs on every request but never refuses one."""
    demo = asyncio.run(seed_demo(db.settings()))
    org_id = demo["organization"]["id"]
    asyncio.run(_raise_rate_limit(db, org_id))
    return org_id, demo["api_key"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def uvicorn_server(
    app: str, env: dict[str, str], *, factory: bool = False, pids: list[int] | None = None
) -> Iterator[str]:
    """One uvicorn worker on a loopback port; yields its base URL (its process id is appended
    to `pids` when given, for a profiler to attach to)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if factory:
        cmd.append("--factory")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    if pids is not None:
        pids.append(proc.pid)
    try:
        deadline = time.monotonic() + 90  # a loaded machine imports slowly
        while True:
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server for {app} did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def serve(
    stack: contextlib.ExitStack, app: str, env: dict[str, str], *, factory: bool = False
) -> tuple[str, int]:
    """`uvicorn_server` entered on `stack`: its base URL and its process id."""
    pids: list[int] = []
    base = stack.enter_context(uvicorn_server(app, env, factory=factory, pids=pids))
    return base, pids[0]


@dataclass
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int = 0  # connect, read, write and timeouts as wrk counts them
    # The server's own CPU per request (when its pid was given): steadier than requests/s
    # while other processes' load swings the wall clock, and for one worker that is CPU-bound
    # its inverse is the rate it could reach.
    cpu_ms_per_request: float | None = None


def median_result(results: list[LoadResult]) -> LoadResult:
    """Each figure's median over rounds; errors summed."""
    cpus = [r.cpu_ms_per_request for r in results if r.cpu_ms_per_request is not None]
    return LoadResult(
        requests_per_second=statistics.median(r.requests_per_second for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        cpu_ms_per_request=statistics.median(cpus) if cpus else None,
    )


def cpu_text(result: LoadResult) -> str:
    """The CPU figure for a result row ("" when it was not measured)."""
    cpu = result.cpu_ms_per_request
    return f"   CPU {cpu:.3f} ms/req" if cpu is not None else ""


def cpu_ratio(ours: LoadResult, ceiling: LoadResult, requests: int = 1) -> str:
    """The ceiling's server CPU per request over ours (per `requests` of ours): the ratio of
    the rates both would reach CPU-bound, steadier than requests/s on a shared machine."""
    if not ours.cpu_ms_per_request or not ceiling.cpu_ms_per_request:
        return "n/a"
    return f"{ceiling.cpu_ms_per_request / (ours.cpu_ms_per_request * requests):.2f}"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def py_spy(pid: int, output: str | None) -> Iterator[None]:
    """py-spy recording `pid` for the block (nothing when no output is asked for)."""
    if output is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    fmt = "flamegraph" if output.endswith(".svg") else "raw"
    cmd = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--output",
        output,
        "--format",
        fmt,
        "--nonblocking",
        "--rate",
        "500",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached before the load starts
    try:
        yield
    finally:
        proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
        proc.wait(timeout=30)


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise RuntimeError(f"unexpected wrk latency {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str,
    headers: dict[str, str],
    *,
    seconds: int,
    connections: int,
    script: Path | None = None,
    threads: int = 1,
    server_pid: int | None = None,
) -> LoadResult:
    """Bounded load (fixed duration) from wrk on loopback (one thread unless told);
    `script`: a wrk Lua script (request bodies, methods); `server_pid`: the server whose CPU
    per request to measure."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (Debian) and rerun")
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        cmd += ["-s", str(script)]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cpu_before = process_cpu_seconds(server_pid) if server_pid is not None else 0.0
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    cpu = process_cpu_seconds(server_pid) - cpu_before if server_pid is not None else None
    if "Requests/sec" not in out or "50%" not in out:
        raise RuntimeError(f"wrk gave no figures:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    non_2xx_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return LoadResult(
        rps,
        p50,
        p99,
        int(non_2xx_match.group(1)) if non_2xx_match else 0,
        sum(int(n) for n in socket.groups()) if socket else 0,
        cpu * 1000 / int(total.group(1)) if cpu is not None and total else None,
    )
