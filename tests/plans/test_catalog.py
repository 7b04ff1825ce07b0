"""The plans file: strict validation naming plan and field; idempotent sync; no partial loads."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from orgbill.cli import sync_plans
from orgbill.config import Settings
from orgbill.db import Database
from orgbill.models import PlanCatalog
from orgbill.plans.catalog import DEFAULT_PLANS_FILE, CatalogError, parse_catalog

BASE = tomllib.loads(DEFAULT_PLANS_FILE.read_text())


def mutated(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = doc
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    return doc


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"plans__pro__limits__max_agents": -1}, "plan 'pro', limit 'max_agents'"),
        ({"plans__pro__limits__max_agents": "lots"}, "plan 'pro', limit 'max_agents'"),
        ({"plans__pro__limits__can_use_api": "yes"}, "plan 'pro', limit 'can_use_api'"),
        ({"plans__business__limits__api_rate_limit": 0}, "plan 'business', limit 'api_rate_limit'"),
        (
            {"plans__free__limits__max_members": KeyError},
            "plan 'free', limit 'max_members': missing",
        ),
        ({"plans__pro__limits__warp_drive": 1}, "plan 'pro', limit 'warp_drive': unknown"),
        ({"plans__pro__amount": 29.5}, "plan 'pro', field 'amount'"),
        ({"plans__pro__interval": "weekly"}, "plan 'pro', field 'interval'"),
        ({"plans__pro__currency": "US$"}, "plan 'pro', field 'currency'"),
        ({"plans__pro__currency": "dollars"}, "plan 'pro', field 'currency'"),
        ({"plans__pro__colour": "red"}, "plan 'pro', field 'colour'"),
        (
            {"plans__pro__limits__extra_credit_price": "abc"},
            "plan 'pro', limit 'extra_credit_price'",
        ),
        ({"plans__free": KeyError}, "plan 'free': missing"),
        ({"plans__business__stripe_price_id": "price_orgbill_pro_monthly"}, "used twice"),
        ({"meters__logs__kind": "sometimes"}, "meter 'logs', field 'kind'"),
        ({"version": 0}, "field 'version'"),
    ],
)
def test_malformed_catalog_names_plan_and_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError) as excinfo:
        parse_catalog(mutated(**changes))
    assert message in str(excinfo.value)


def test_shipped_catalog_has_every_seed_limit_and_meters() -> None:
    catalog = parse_catalog(BASE)
    assert {"free", "pro", "business", "enterprise"} <= set(catalog.plans)
    assert catalog.plans["pro"].price == 29 and catalog.plans["pro"].amount == 2900
    assert catalog.free.stripe_price_id is None
    assert catalog.plan_for_price(None, "orgbill_pro_monthly", None).code == "pro"  # type: ignore[union-attr]
    assert {m.kind for m in catalog.meters.values()} == {"counter", "gauge"}
    assert all(catalog.meter_for_limit(m.limit) for m in catalog.meters.values())


async def _catalog_rows(settings: Settings) -> tuple[PlanCatalog | None, dict[str, Any]]:
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=False) as session:
            row = await session.get(PlanCatalog, 1)
            return row, (row.document["plans"] if row is not None else {})
    finally:
        await database.dispose()


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    lines: list[str] = []

    def emit(prefix: str, table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {json.dumps(value)}")
        for key, value in table.items():
            if isinstance(value, dict):
                emit(f"{prefix}.{key}" if prefix else key, value)

    emit("", doc)
    path = tmp_path / "plans.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_sync_is_idempotent_and_bad_files_change_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    again = await sync_plans(settings)  # the fixture already loaded the shipped file
    assert again.changed is False
    before, _ = await _catalog_rows(settings)
    assert before is not None

    same_version = _write(tmp_path, mutated(plans__pro__name="Pro Plus"))
    with pytest.raises(CatalogError, match="bump it"):
        await sync_plans(settings, same_version)
    broken = _write(
        tmp_path, mutated(version=before.version + 1, plans__pro__limits__max_agents=-5)
    )
    with pytest.raises(CatalogError, match="plan 'pro', limit 'max_agents'"):
        await sync_plans(settings, broken)
    after, plans = await _catalog_rows(settings)
    assert after is not None and after.content_hash == before.content_hash
    assert plans["pro"]["name"] == "Pro"


def cli_plans_sync(settings: Settings, plans_file: Path) -> subprocess.CompletedProcess[str]:
    """`orgbill plans sync` in a subprocess against the test database, reading `plans_file`
    from ORGBILL_PLANS_FILE."""
    env = {
        "ORGBILL_ENV": "test",
        "ORGBILL_DATABASE_URL": settings.database_url,
        "ORGBILL_JWT_SECRET": settings.jwt_secret,
        "ORGBILL_API_KEY_SECRET": settings.api_key_secret,
        "ORGBILL_PLANS_FILE": str(plans_file),
        "PATH": "/usr/bin:/bin",
    }
    if settings.database_schema:
        env["ORGBILL_DATABASE_SCHEMA"] = settings.database_schema
    return subprocess.run(
        [sys.executable, "-m", "orgbill.cli", "plans", "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_sync_reports_rejection_and_reads_plans_file_env(
    settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n[plans.free]\nname = 3\n")
    result = cli_plans_sync(settings, bad)
    assert result.returncode == 1
    assert "nothing changed" in result.stderr and "plan 'free'" in result.stderr
