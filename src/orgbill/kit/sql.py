"""Dialect-aware pieces both databases support with the same meaning."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def upsert_insert(session: AsyncSession, model: Any) -> Any:
    """An INSERT that can take ON CONFLICT DO NOTHING / DO UPDATE ... WHERE (PostgreSQL and
    SQLite spell these the same way), so uniqueness is decided by the database in one
    statement instead of a read followed by a write."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"upserts are not implemented for {dialect}")
