"""The CLI: one-line errors and a non-zero exit for every failure a user can cause, the port
checked before anything is written, migrate says from -> to, --version, clean --help, and a
demo that reuses its org and revokes the key it made last time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orgbill import cli, migrate
from orgbill.config import get_settings
from tests.fixtures.databases import (
    TEST_API_KEY_SECRET,
    TEST_JWT_SECRET,
    migrated_settings,
    off_loop,
    postgres_url_or_skip,
)

Invoke = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Invoke]:
    """`orgbill ARGS` in this process, from an empty directory, with ORGBILL_* as given."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORGBILL_JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("ORGBILL_API_KEY_SECRET", TEST_API_KEY_SECRET)

    def invoke(*args: str, **env: str) -> tuple[int, str, str]:
        for name, value in env.items():
            monkeypatch.setenv(f"ORGBILL_{name.upper()}", value)
        get_settings.cache_clear()
        try:
            code = off_loop(cli.main, list(args))
        except SystemExit as exc:  # argparse: --help, --version
            code = int(exc.code or 0)
        finally:
            get_settings.cache_clear()
        out, err = capsys.readouterr()
        return code, out, err

    yield invoke
    get_settings.cache_clear()


def assert_one_line_failure(result: tuple[int, str, str], *needles: str) -> str:
    code, _, err = result
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("orgbill: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_version_and_clean_help_for_every_command(run: Invoke) -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("orgbill 0.")
    for command in (
        [],
        ["migrate"],
        ["serve"],
        ["demo"],
        ["create-superadmin"],
        ["plans"],
        ["plans", "sync"],
        ["stripe", "sync"],
    ):
        code, out, _ = run(*command, "--help")
        assert code == 0 and out.startswith("usage: orgbill")
        assert "`" not in out and "::" not in out, out


def test_migrate_says_where_the_database_was_and_is(run: Invoke, tmp_path: Path) -> None:
    head = migrate.head_revision()
    code, out, _ = run("migrate")
    assert code == 0 and out.strip() == f"migrated an empty database to {head} (latest)"
    code, out, _ = run("migrate")
    assert code == 0 and "already at the latest migration" in out and head in out


def test_migrate_from_an_older_revision_names_both(tmp_path: Path, run: Invoke) -> None:
    from alembic.script import ScriptDirectory

    with migrated_settings("sqlite", tmp_path) as settings:
        script = ScriptDirectory.from_config(migrate.alembic_config(settings))
        head = script.get_revision(migrate.head_revision())
        assert head is not None and isinstance(head.down_revision, str)
        off_loop(migrate.downgrade, settings, head.down_revision)
        code, out, _ = run("migrate", database_url=settings.database_url)
    assert code == 0
    assert out.strip() == f"migrated from {head.down_revision} to {head.revision} (latest)"


def test_bad_unknown_and_unreachable_database_urls_are_one_line(run: Invoke) -> None:
    assert_one_line_failure(run("migrate", database_url="not a url"), "ORGBILL_DATABASE_URL")
    assert_one_line_failure(run("migrate", database_url="nosuchdb://x/y"), "ORGBILL_DATABASE_URL")
    refused = assert_one_line_failure(
        run("migrate", database_url="postgresql://orgbill:s3cret@127.0.0.1:9/orgbill"),
        "cannot use the database",
    )
    assert "s3cret" not in refused
    assert_one_line_failure(
        run("migrate", database_url="sqlite+aiosqlite:////nonexistent-dir/x/orgbill.db"),
        "cannot use the database",
    )


def test_unknown_postgres_database_is_one_line(run: Invoke) -> None:
    url = postgres_url_or_skip().rsplit("/", 1)[0] + "/orgbill_no_such_database"
    assert_one_line_failure(run("migrate", database_url=url), "does not exist")


def test_commands_on_an_unmigrated_database_say_so_and_create_nothing(
    run: Invoke, tmp_path: Path
) -> None:
    for command in (["plans", "sync"], ["demo"]):
        assert_one_line_failure(run(*command), "orgbill migrate")
    assert not (tmp_path / "orgbill.db").exists()


def test_missing_plans_file_is_one_line(run: Invoke, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    assert run("migrate")[0] == 0
    assert_one_line_failure(run("plans", "sync", "--file", missing), "missing.toml")
    assert_one_line_failure(
        run("serve", "--check", "--port", "0", plans_file=missing), "missing.toml"
    )


def test_busy_port_fails_before_anything_is_written(run: Invoke, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_line_failure(run("serve", "--port", str(port)), str(port), "in use")
        assert_one_line_failure(run("serve", "--check", "--port", str(port)), "in use")
    assert not (tmp_path / "orgbill.db").exists()
    free_code, _, _ = run("serve", "--check", "--port", str(port))
    assert free_code == 0


def test_demo_reuses_its_org_and_revokes_its_previous_key(tmp_path: Path) -> None:
    with migrated_settings("sqlite", tmp_path) as settings:
        first = off_loop(asyncio.run, cli.seed_demo(settings, "http://127.0.0.1:8123"))
        second = off_loop(asyncio.run, cli.seed_demo(settings, "http://127.0.0.1:8123"))
    assert second["organization"] == first["organization"]
    assert first["revoked_previous_demo_keys"] == 0
    assert second["revoked_previous_demo_keys"] == 1
    assert second["api_key"] != first["api_key"]
    assert "http://127.0.0.1:8123/api/v1/organizations/profile/" in second["try"]
