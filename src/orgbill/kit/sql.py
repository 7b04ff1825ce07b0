"""Dialect-aware pieces both databases support with the same meaning."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import BindParameter, Executable, Table, bindparam, column, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.sqltypes import NullType


def dialect_insert(session: AsyncSession) -> Callable[[Any], Any]:
    """The session's dialect's `insert`, whose INSERT can take ON CONFLICT DO NOTHING / DO
    UPDATE ... WHERE (PostgreSQL and SQLite spell these the same way), so uniqueness is
    decided by the database in one statement instead of a read followed by a write."""
    return _DIALECTS[session.get_bind().dialect.name][0]


def upsert_insert(session: AsyncSession, model: Any) -> Any:
    """`dialect_insert(session)(model)`. Executed as it is, it compiles on every execution;
    a statement on a hot path is a `CompiledOnce`."""
    return dialect_insert(session)(model)


# Dialect name → its `insert` and its dialect class (for compiling SQL text once).
_DIALECTS: dict[str, tuple[Callable[[Any], Any], Callable[..., Dialect]]] = {
    "postgresql": (postgresql.insert, postgresql.dialect),
    "sqlite": (sqlite.insert, sqlite.dialect),
}


def insert_ignoring_conflict(table: Table, conflict_column: str, returning: str) -> CompiledOnce:
    """`INSERT INTO table (every column) … ON CONFLICT (conflict_column) DO NOTHING RETURNING
    returning`, compiled once; every column is a bound parameter of its own name."""
    return CompiledOnce(
        lambda insert: (
            insert(table)
            .values(**bound_columns(table))
            .on_conflict_do_nothing(index_elements=[conflict_column])
            .returning(table.c[returning])
        )
    )


def bound_columns(
    table: Table, names: Iterable[str] | None = None
) -> dict[str, BindParameter[Any]]:
    """`{column: :column}` for `.values(**…)`: every value a typed bound parameter of the
    column's name, as a statement compiled once must have (a literal would be frozen in)."""
    columns = [table.c[name] for name in names] if names is not None else list(table.columns)
    return {c.name: bindparam(c.name, type_=c.type) for c in columns}


class CompiledOnce:
    """A statement compiled once per dialect into SQL text.

    SQLAlchemy 2.0's dialect INSERTs (the ones that spell ON CONFLICT) have no cache key, so
    each execution compiles them again: about a millisecond of CPU, more than the round trip.
    Every other statement is cached, but finding it in the cache walks the whole statement
    to make its key, and an ORM-annotated one also takes the ORM's execution path: for a hot
    SELECT or UPDATE of a dozen joins and parameters, a few hundred microseconds per
    execution (SQL text's key is its string). `build(insert)` makes the statement with
    `insert` (the dialect's `insert` function); `CompiledOnce.of(stmt)` takes one already
    built. Values must be bound parameters (`bound_columns`; a literal is kept as it is).
    It is compiled with that dialect's SQL and named parameters into a text() statement with
    the same typed parameters and result columns, which SQLAlchemy caches like any other."""

    __slots__ = ("_build", "_texts")

    def __init__(self, build: Callable[[Callable[[Any], Any]], Any]) -> None:
        self._build = build
        self._texts: dict[str, Executable] = {}

    @classmethod
    def of(cls, stmt: Any) -> CompiledOnce:
        """A statement already built that both dialects spell alike (a Core SELECT, UPDATE,
        DELETE, or INSERT … FROM SELECT)."""
        return cls(lambda _insert: stmt)

    def __call__(self, session: AsyncSession) -> Executable:
        name = session.get_bind().dialect.name
        compiled_text = self._texts.get(name)
        if compiled_text is None:
            compiled_text = self._texts[name] = self._compile(name)
        return compiled_text

    def _compile(self, name: str) -> Executable:
        insert, dialect_class = _DIALECTS[name]
        stmt = self._build(insert)
        dialect = dialect_class(paramstyle="named")
        compiled = stmt.compile(dialect=dialect)
        # A literal in the statement keeps its value; the others are the caller's to give.
        # SQL text has one parameter per name, so a name bound in several places must be
        # bound with one type there (an untyped one takes the typed one's).
        params: dict[str, BindParameter[Any]] = {}
        for bind, bind_name in compiled.bind_names.items():
            seen = params.get(bind_name)
            if seen is not None and not isinstance(bind.type, NullType):
                if not isinstance(seen.type, NullType) and repr(seen.type) != repr(bind.type):
                    raise ValueError(f"parameter {bind_name!r} is bound with two types")
                seen = None
            if seen is None:
                params[bind_name] = bindparam(bind_name, bind.value, type_=bind.type)
        # PostgreSQL casts (`:id::UUID`) escaped, or text() would not see `:id` as a parameter.
        sql = str(compiled).replace("::", "\\:\\:")
        if compiled.insert_prefetch or compiled.update_prefetch:
            # A column's Python-side default (an `onupdate`, say) is computed per execution
            # of the compiled statement; SQL text would send NULL in its place.
            raise ValueError("a statement compiled once must set every column with a default")
        if "POSTCOMPILE" in sql:  # an expanding IN list is rendered per execution
            raise ValueError("a statement compiled once cannot expand an IN list")
        clause = text(sql).bindparams(*params.values())
        # Result columns by name and type only (an expression's own parameters stay out),
        # matched by position; a statement returning nothing keeps its row count.
        results = [column(c.key, c.type) for c in stmt.exported_columns]
        if len({c.key for c in results}) != len(results):
            raise ValueError("a statement compiled once needs distinct result column names")
        return clause.columns(*results) if results else clause
