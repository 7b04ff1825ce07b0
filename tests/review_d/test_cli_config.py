"""Review D: every bad ORGBILL_* value is refused at start with one line naming it, and CLI
failures are one line on stderr with a non-zero exit, never a traceback (CONTRACT
"Configuration and CLI")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.databases import TEST_API_KEY_SECRET, TEST_JWT_SECRET
from tests.fixtures.tcpproxy import free_port
from tests.operations.test_cli import Invoke, assert_one_line_failure, run  # noqa: F401
from tests.operations.test_cli_failures import _invoke

ORGBILL = str(Path(sys.executable).with_name("orgbill"))
# Long enough for a server to start; one that refuses its configuration exits well before.
SERVE_TIMEOUT_SECONDS = 20


def _serve(tmp_path: Path, **env: str) -> tuple[int | None, str]:
    """`orgbill serve` as an operator runs it: (exit code or None if still serving, stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORGBILL_")} | {
        "ORGBILL_JWT_SECRET": TEST_JWT_SECRET,
        "ORGBILL_API_KEY_SECRET": TEST_API_KEY_SECRET,
        "ORGBILL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/orgbill.db",
        "ORGBILL_WEBHOOK_DISPATCH": "false",
    }
    process = subprocess.Popen(
        [ORGBILL, "serve", "--port", str(free_port())],
        env=base | {f"ORGBILL_{k.upper()}": v for k, v in env.items()},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = process.communicate(timeout=SERVE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.terminate()
        _, err = process.communicate(timeout=10)
        return None, err
    return process.returncode, err


def _assert_refused_in_one_line(result: tuple[int | None, str], variable: str) -> None:
    code, err = result
    assert code is not None, f"orgbill serve started with a bad {variable}:\n{err[-2000:]}"
    assert code != 0
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert variable in lines[0], lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("redis_url", "localhost:6379"),  # scheme forgotten: a common slip
        ("log_level", "verbose"),
        ("database_url", "not a url"),
        ("database_url", "nosuchdb://x/y"),
    ],
)
def test_serve_refuses_a_bad_setting_in_one_line(tmp_path: Path, variable: str, value: str) -> None:
    """Observed: `orgbill serve` lets uvicorn import the app with these, and the user gets a
    Python traceback (ValueError from redis' URL parser, from logging.dictConfig, or from
    SQLAlchemy's make_url in the lifespan) and exit 1 or 3. `orgbill migrate` already turns a
    bad ORGBILL_DATABASE_URL into one line; `serve` does not."""
    _assert_refused_in_one_line(
        _serve(tmp_path, **{variable: value}), f"ORGBILL_{variable.upper()}"
    )


@pytest.mark.parametrize(
    "variable", ["public_rate_limit", "user_rate_limit", "rate_limit_burst_seconds"]
)
def test_an_infinite_rate_setting_is_refused_at_start(run: Invoke, variable: str) -> None:  # noqa: F811
    """`inf` passes the settings' `gt=0` check, so the server starts; then every request
    charged to that bucket is a 500 (OverflowError turning inf into X-RateLimit-Remaining /
    -Limit, raised again while writing the 500, so even that is Starlette's plain-text
    "Internal Server Error", not the envelope). A bad value must be refused at start."""
    result = _invoke(run, "serve", "--check", "--port", "0", **{variable: "inf"})
    assert_one_line_failure(result, f"ORGBILL_{variable.upper()}")


def test_a_plans_file_that_is_not_utf8_is_one_line(run: Invoke, tmp_path: Path) -> None:  # noqa: F811
    """`read_plans_file`/`load_catalog` catch OSError and TOMLDecodeError but not the
    UnicodeDecodeError of a file that is not UTF-8 (a UTF-16 file saved by an editor, a
    binary picked by mistake): `plans sync` and `serve` print a traceback."""
    plans = tmp_path / "plans.toml"
    plans.write_text('version = 1\n[plans.free]\nname = "Free"\n', encoding="utf-16")
    assert run("migrate")[0] == 0
    assert_one_line_failure(_invoke(run, "plans", "sync", "--file", str(plans)), "plans.toml")
    assert_one_line_failure(
        _invoke(run, "serve", "--check", "--port", "0", plans_file=str(plans)), "plans.toml"
    )
