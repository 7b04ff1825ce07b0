"""The plans file is validated strictly: every malformed shape is a CatalogError naming
where, never another exception; unknown fields are refused everywhere, not only in plans."""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orgbill.config import Settings
from orgbill.plans.catalog import DEFAULT_PLANS_FILE, CatalogError, parse_catalog
from tests.plans.test_catalog import cli_plans_sync

BASE = tomllib.loads(DEFAULT_PLANS_FILE.read_text())


def _doc() -> dict[str, Any]:
    return copy.deepcopy(BASE)


@pytest.mark.parametrize("bad_limit", [["max_logs_per_month"], {"name": "max_logs_per_month"}])
def test_meter_whose_limit_is_not_a_string_is_a_catalog_error(bad_limit: Any) -> None:
    doc = _doc()
    doc["meters"]["logs"]["limit"] = bad_limit
    with pytest.raises(CatalogError, match="meter 'logs', field 'limit'"):
        parse_catalog(doc)


def test_meter_with_an_unknown_field_is_refused() -> None:
    doc = _doc()
    doc["meters"]["logs"]["colour"] = "red"
    with pytest.raises(CatalogError, match="meter 'logs'"):
        parse_catalog(doc)


def test_meter_with_a_datetime_field_is_refused_strictly() -> None:
    # A TOML datetime would pass validation and then fail to store as JSON.
    doc = _doc()
    doc["meters"]["logs"]["since"] = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(CatalogError):
        parse_catalog(doc)


def test_misspelt_top_level_table_is_refused() -> None:
    # `[meter.logs]` for `[meters.logs]`: silently ignored, the meter would not exist.
    doc = _doc()
    doc["meter"] = {"extra": {"limit": "max_agents", "kind": "gauge", "enforcement": "hard"}}
    with pytest.raises(CatalogError, match="meter"):
        parse_catalog(doc)


def test_cli_plans_sync_with_a_list_meter_limit_is_one_line_not_a_traceback(
    settings: Settings, tmp_path: Path
) -> None:
    text = DEFAULT_PLANS_FILE.read_text().replace(
        'limit = "max_logs_per_month"', 'limit = ["max_logs_per_month"]', 1
    )
    assert text != DEFAULT_PLANS_FILE.read_text()
    bad = tmp_path / "plans.toml"
    bad.write_text(text)
    result = cli_plans_sync(settings, bad)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-600:]
    assert "meter 'logs'" in result.stderr
