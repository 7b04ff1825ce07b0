"""Alembic environment: async engine from orgbill's settings, batch mode on SQLite."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import DateTime
from sqlalchemy.engine import Connection

from orgbill.config import Settings, get_settings
from orgbill.db import create_engine
from orgbill.models import Base
from orgbill.models.base import UTCDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations stay static: our UTC decorator is rendered as the plain column type.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _compare_type(
    _ctx: Any, _col: Any, metadata_col: Any, inspected: Any, metadata_type: Any
) -> bool | None:
    if isinstance(metadata_type, UTCDateTime):
        return not isinstance(inspected, DateTime)
    return None


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
        compare_type=_compare_type,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        # Also when a migration fails: a pooled connection left for the garbage collector
        # outlives this event loop (aiosqlite's thread then answers a closed loop).
        await engine.dispose()


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    settings = config.attributes.get("settings") or get_settings()
    asyncio.run(_run_async(settings))


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `orgbill migrate`")
run()
