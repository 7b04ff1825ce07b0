"""Migrations are the schema's source of truth: they match the models and reverse cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from orgbill import migrate
from orgbill.config import Settings
from orgbill.db import create_engine
from orgbill.models import Base
from tests.fixtures.databases import migrated_settings, off_loop

pytestmark = pytest.mark.parametrize("db", ["sqlite", "postgres"])


def _diff_and_tables(settings: Settings) -> tuple[list[Any], set[str]]:
    async def run() -> tuple[list[Any], set[str]]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:

                def compare(sync_conn: Any) -> tuple[list[Any], set[str]]:
                    context = MigrationContext.configure(
                        sync_conn, opts={"compare_type": True, "render_as_batch": True}
                    )
                    tables = set(inspect(sync_conn).get_table_names()) - {"alembic_version"}
                    return compare_metadata(context, Base.metadata), tables

                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_models_and_migrations_agree(db: str, tmp_path: Path) -> None:
    with migrated_settings(db, tmp_path) as settings:
        diff, tables = off_loop(_diff_and_tables, settings)
    assert diff == [], f"models and migrations disagree; write a migration: {diff}"
    assert tables == set(Base.metadata.tables)


def test_upgrade_downgrade_upgrade(db: str, tmp_path: Path) -> None:
    with migrated_settings(db, tmp_path) as settings:
        off_loop(migrate.downgrade, settings, "base")
        _, tables = off_loop(_diff_and_tables, settings)
        assert tables == set()
        off_loop(migrate.upgrade, settings, "head")
        diff, tables = off_loop(_diff_and_tables, settings)
        assert diff == [] and tables == set(Base.metadata.tables)
