"""The built wheel is the whole product: installed on its own and run from an unrelated
directory, it migrates, loads its bundled plans, seeds the demo and serves with several
workers: JSON log lines from uvicorn too, /metrics summed over the workers, offline docs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.tcpproxy import free_port

REPO = Path(__file__).resolve().parents[2]
_START_TIMEOUT_SECONDS = 180.0


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel` of the repo, installed alone into a fresh directory (no source tree)."""
    build = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(REPO), "-w", str(build)],
        check=True,
        capture_output=True,
    )
    (wheel,) = build.glob("orgbill-*.whl")
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel],
        check=True,
        capture_output=True,
    )
    return site


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORGBILL_", "PROMETHEUS_"))}
    # The dependencies come from the test environment; orgbill itself only from the wheel.
    env["PYTHONPATH"] = str(site)
    env["ORGBILL_LOG_LEVEL"] = "INFO"
    return env


def orgbill(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orgbill.cli", *args],
        cwd=cwd,
        env=_env(site),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


@pytest.fixture
def server(installed_wheel: Path, workdir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    for step in (("migrate",), ("plans", "sync")):
        done = orgbill(installed_wheel, workdir, *step)
        assert done.returncode == 0, done.stderr
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "orgbill.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=workdir,
        env=_env(installed_wheel),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    try:
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.terminate()
                _, stderr = process.communicate(timeout=30)
                raise RuntimeError(f"orgbill serve did not become ready: {stderr[-3000:]}")
            time.sleep(0.2)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=30)


def test_the_wheel_carries_migrations_plans_and_docs_assets(installed_wheel: Path) -> None:
    package = installed_wheel / "orgbill"
    assert list((package / "migrations" / "versions").glob("*.py"))
    assert (package / "plans" / "catalog.toml").is_file()
    assert (package / "openapi_examples.json").is_file()


def test_installed_orgbill_runs_from_any_directory(
    installed_wheel: Path, workdir: Path, server: tuple[str, subprocess.Popen[str]]
) -> None:
    base, process = server
    located = subprocess.run(
        [sys.executable, "-c", "import orgbill; print(orgbill.__file__)"],
        cwd=workdir,
        env=_env(installed_wheel),
        capture_output=True,
        text=True,
        check=True,
    )
    assert located.stdout.strip().startswith(str(installed_wheel))
    assert (workdir / "orgbill.db").is_file()

    first = orgbill(installed_wheel, workdir, "demo", "--base-url", base)
    assert first.returncode == 0, first.stderr
    demo = json.loads(first.stdout)
    assert base in demo["try"] and demo["docs"] == f"{base}/docs"
    profile = f"{base}/api/v1/organizations/profile/{demo['organization']['id']}"
    assert httpx.get(profile, headers={"X-Api-Key": demo["api_key"]}).status_code == 200

    # A second run reuses the org and revokes the key the first one made.
    second = json.loads(orgbill(installed_wheel, workdir, "demo", "--base-url", base).stdout)
    assert second["organization"] == demo["organization"]
    assert second["revoked_previous_demo_keys"] == 1
    assert httpx.get(profile, headers={"X-Api-Key": demo["api_key"]}).status_code == 401
    assert httpx.get(profile, headers={"X-Api-Key": second["api_key"]}).status_code == 200

    # /metrics sums every worker: the count covers all requests whichever worker answered.
    plans = f"{base}/api/v1/plans"
    for _ in range(20):
        assert httpx.get(plans).status_code == 200
    for _ in range(4):
        text = httpx.get(f"{base}/metrics").text
        total = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "orgbill_http_requests_total"
            and sample.labels.get("route") == "/api/v1/plans"
            and sample.labels.get("status") == "200"
        )
        assert total == 20

    docs = httpx.get(f"{base}/docs").text
    assert "/docs/assets/swagger-ui-bundle.js" in docs
    assert httpx.get(f"{base}/docs/assets/swagger-ui-bundle.js").status_code == 200

    process.terminate()
    _, stderr = process.communicate(timeout=30)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's included
    assert any(line["logger"].startswith("uvicorn") for line in parsed)
    access = [line for line in parsed if line["logger"] == "orgbill.access"]
    assert any(line["path"] == "/api/v1/plans" for line in access)
    assert not any(line["path"] in ("/readyz", "/metrics") for line in access)
