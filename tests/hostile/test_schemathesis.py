"""A bounded schemathesis run over the whole `/openapi.json` (fixed seed, every phase incl.
stateful): as an org API key and as a user naming the org, against a real server (uvicorn on
loopback) whose Stripe answers errors for Checkout and the Portal. Checks: no 5xx, and every
response matches the schema. Marker `fuzz` (runs by default; `-m "not fuzz"` skips it).

It runs on PostgreSQL when configured (the stricter database: NUL bytes, JSONB), else SQLite.
`ORGBILL_FUZZ_EXAMPLES` raises the per-operation budget for a longer local run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.databases import POSTGRES_ENV, migrated_settings
from tests.fixtures.factories import create_org
from tests.fixtures.server import serve
from tests.fixtures.stripe import (
    CALLER_URL_REFUSED,
    PORTAL_URL_REFUSED,
    fake_stripe,
)

pytestmark = pytest.mark.fuzz

SEED = 20261201
EXAMPLES_PER_OPERATION = int(os.environ.get("ORGBILL_FUZZ_EXAMPLES", "80"))
MIN_CASES = 5000
CHECKS = "not_a_server_error,response_schema_conformance"
# Regenerating would revoke the very key the run authenticates with; its race and effects
# have their own tests (test_races.py, tests/organizations/test_api_keys.py).
KEY_RUN_EXCLUDES = ("/api/v1/organization/regenerate-key",)


def _run_schemathesis(
    base_url: str, headers: dict[str, str], report: Path, exclude: tuple[str, ...] = ()
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        # No coverage phase: on CPython 3.11.7 its source-introspecting filters hit the
        # interpreter's "AST constructor recursion depth mismatch" SystemError (a CPython
        # bug, not a finding), which fails the run nondeterministically.
        "examples,fuzzing,stateful",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    for path in exclude:
        command += ["--exclude-path", path]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-4000:]
    return json.loads(report.read_text())


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    tmp_path: Path,
) -> None:
    backend = "postgres" if os.environ.get(POSTGRES_ENV) else "sqlite"
    with (
        migrated_settings(backend, tmp_path) as settings,
        fake_stripe() as stripe_api,
    ):
        # Stripe refusing the caller's URLs: errors the caller caused, so 400s. (Stripe failing
        # is a 503 by design, which `not_a_server_error` would count; tests/hostile/
        # test_stripe_errors.py covers those.) The SDK does not retry these, so the run spends
        # its time in orgbill, not in backoff.
        stripe_api.failures = {
            "/v1/checkout/sessions": CALLER_URL_REFUSED,
            "/v1/billing_portal/sessions": PORTAL_URL_REFUSED,
        }
        with serve(settings.model_copy(update={"stripe_api_base": stripe_api.url})) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                org = await create_org(http)
            as_user = {**org.owner.headers, "X-Organization-Id": org.id}
            reports = [
                _run_schemathesis(
                    base_url, org.key_headers, tmp_path / "key.json", KEY_RUN_EXCLUDES
                ),
                _run_schemathesis(base_url, as_user, tmp_path / "user.json"),
            ]
        assert stripe_api.session_calls() > 0  # checkout/portal did reach the erroring Stripe
    for report in reports:
        assert report["complete"] and report["failures"] == [] and report["errors"] == []
        assert report["test_cases"]["with_failures"] == 0
        assert report["operations"]["tested"] >= 39
    generated = [report["test_cases"]["generated"] for report in reports]
    seconds = [round(report["running_time"]) for report in reports]
    print(f"schemathesis: {generated} cases generated in {seconds} s (key, user)")
    assert sum(generated) >= MIN_CASES, generated
