"""Dialect-aware pieces both databases support with the same meaning."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, TextClause, bindparam, text
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


def insert_ignoring_conflict(table: Table, conflict_column: str, returning: str) -> TextClause:
    """`INSERT INTO table (every column) VALUES (:column, …) ON CONFLICT (conflict_column) DO
    NOTHING RETURNING returning`, as SQL text both dialects speak, built once by the caller.
    SQLAlchemy 2.0 does not cache its dialect-specific INSERT … ON CONFLICT constructs (they
    recompile on every execution); a text() statement compiles once. Every column is a bound
    parameter of its own name and type."""
    names = [c.name for c in table.columns]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) "  # noqa: S608 (schema names only)
        f"VALUES ({', '.join(f':{name}' for name in names)}) "
        f"ON CONFLICT ({table.c[conflict_column].name}) DO NOTHING "
        f"RETURNING {table.c[returning].name}"
    )
    return (
        text(sql)
        .bindparams(*(bindparam(c.name, type_=c.type) for c in table.columns))
        .columns(table.c[returning])
    )
