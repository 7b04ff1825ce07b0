"""/docs and /redoc render in a real headless Chromium with no internet: every asset is
served by orgbill itself (the browser's network is loopback-only by what it is asked)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.databases import migrated_settings
from tests.fixtures.server import serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)"
)


def rendered_dom(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_docs_and_redoc_render_offline_with_operations_and_authorize(tmp_path: Path) -> None:
    # The page is the same whatever the database: one backend is enough.
    with migrated_settings("sqlite", tmp_path) as settings, serve(settings) as base:
        docs = rendered_dom(f"{base}/docs", tmp_path / "docs-profile")
        redoc = rendered_dom(f"{base}/redoc", tmp_path / "redoc-profile")
    # Swagger UI drew the operations and the Authorize button from our own assets.
    assert 'class="btn authorize' in docs
    paths = set(re.findall(r'opblock-summary-path" data-path="([^"]+)"', docs))
    assert {"/api/v1/organizations/profile/{org_id}", "/api/v1/plans", "/readyz"} <= paths
    assert "#/organizations/getOrganizationProfile" in docs
    assert "cdn.jsdelivr" not in docs and "unpkg.com" not in docs
    # ReDoc drew the operations and the security schemes.
    assert "Get Organization Profile" in redoc
    assert "ApiKeyAuth" in redoc
