"""The import-linter contract in pyproject.toml holds, and would fail on an upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(project / "pyproject.toml")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "src" / "orgbill",
        tmp_path / "src" / "orgbill",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def _inject(project: Path, module: str, line: str) -> None:
    path = project / "src" / Path(*module.split(".")).with_suffix(".py")
    text = path.read_text()
    # After the module docstring and `from __future__`, where imports go.
    anchor = "from __future__ import annotations\n"
    assert anchor in text
    path.write_text(text.replace(anchor, anchor + line + "\n", 1))


def test_contract_is_kept_by_the_code_as_it_is(project_copy: Path) -> None:
    result = _lint_imports(project_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_contract_fails_on_an_upward_import(project_copy: Path) -> None:
    # entitlements sits below organizations: this import points up, and closes a cycle.
    _inject(project_copy, "orgbill.entitlements.service", "import orgbill.organizations.service")
    result = _lint_imports(project_copy)
    assert result.returncode == 1, result.stdout
    assert "Imports only point down the layers BROKEN" in result.stdout
    assert "No import cycles between packages BROKEN" in result.stdout
    assert "orgbill.entitlements.service -> orgbill.organizations.service" in result.stdout


def test_contract_fails_when_the_resolver_does_io(project_copy: Path) -> None:
    _inject(project_copy, "orgbill.entitlements.resolver", "import sqlalchemy")
    result = _lint_imports(project_copy)
    assert result.returncode == 1, result.stdout
    assert "are pure: no database, web or clock BROKEN" in result.stdout


def test_contract_fails_when_a_repository_reaches_up_to_its_service(project_copy: Path) -> None:
    _inject(project_copy, "orgbill.usage.repository", "import orgbill.usage.service")
    result = _lint_imports(project_copy)
    assert result.returncode == 1, result.stdout
    assert "router above service above repository BROKEN" in result.stdout
