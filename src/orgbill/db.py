"""Async engine, session factories and the per-request session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from orgbill.config import ASYNC_DATABASE_DRIVERS, Settings
from orgbill.kit.metrics import DB_POOL_IN_USE

# Execution option naming how a SQLite transaction begins (see _begin_sqlite).
SQLITE_BEGIN = "orgbill_sqlite_begin"


def normalize_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``sqlite://`` URLs and pick the async driver."""
    parsed = make_url(url)
    driver = ASYNC_DATABASE_DRIVERS.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _connect_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the driver so _begin_sqlite decides how BEGIN reads.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # busy_timeout first: switching to WAL needs a lock, and a connection opened while
    # another one writes must wait for it rather than fail with "database is locked".
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_sqlite(conn: Connection) -> None:
    # A unit of work that writes takes the write lock up front (BEGIN IMMEDIATE): a deferred
    # transaction that read first and writes later fails outright if another writer
    # committed in between, whereas IMMEDIATE simply waits its turn.
    mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _read_only_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _count_checkout(*_: Any) -> None:
    DB_POOL_IN_USE.inc()


def _count_checkin(*_: Any) -> None:
    DB_POOL_IN_USE.dec()


def create_engine(settings: Settings, *, read_only: bool = False) -> AsyncEngine:
    """The writer engine, or (read_only) the one safe-method requests use: autocommit, so a
    read costs one round trip instead of BEGIN + query + COMMIT, and refused by the database
    if anything tries to write through it."""
    url = normalize_database_url(settings.database_url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Each aiosqlite connection is a thread; readers proceed in parallel under WAL. A few
        # suffice: more threads only contend with the event loop for the GIL (one same-run
        # measurement: 4 + 4 served the profile read 1.2x faster than 16 + 16 under 32
        # connections; other runs on this busy VM were within noise).
        # SQLite has one writer at a time: writers queue for the one connection in order,
        # instead of many connections polling the lock with busy_timeout's growing sleeps,
        # which under load starves some waiters past the timeout (a 503 for no reason).
        kwargs.update(pool_size=4 if read_only else 1, max_overflow=4 if read_only else 0)
    else:
        # Sized so a busy worker reuses connections instead of churning overflow ones (an
        # overflow connection is closed when it comes back; the next one connects anew). The
        # writer keeps its ceiling of 26, all of them kept once opened.
        kwargs.update(
            pool_size=32 if read_only else 26,
            max_overflow=16 if read_only else 0,
            pool_recycle=1800,
        )
        server_settings: dict[str, str] = {}
        if settings.database_schema:
            server_settings["search_path"] = settings.database_schema
        if read_only:
            server_settings["default_transaction_read_only"] = "on"
        kwargs["connect_args"] = {
            "timeout": 5,
            "command_timeout": 30,
            "server_settings": server_settings,
        }
    if read_only:
        kwargs["isolation_level"] = "AUTOCOMMIT"
        # Nothing to roll back on an autocommit, read-only connection: skip the reset, and
        # the ROLLBACK a session sends when it closes (on SQLite a hop to the driver's thread
        # per request; only this engine: the writer's connections also report autocommit,
        # because _begin_sqlite issues BEGIN itself, yet do need their rollbacks).
        kwargs["pool_reset_on_return"] = None
        kwargs["skip_autocommit_rollback"] = True
    # hide_parameters: bound values (key hashes, emails) never reach logs or error text.
    engine = create_async_engine(url, hide_parameters=True, **kwargs)
    event.listen(engine.sync_engine, "checkout", _count_checkout)
    event.listen(engine.sync_engine, "checkin", _count_checkin)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _connect_sqlite)
        if read_only:
            event.listen(engine.sync_engine, "connect", _read_only_sqlite)
        else:
            event.listen(engine.sync_engine, "begin", _begin_sqlite)
    return engine


async def end_transaction_before_network_call(session: AsyncSession) -> None:
    """Ends the request's transaction so far (its reads, or one complete brief write) so that
    nothing is held while we wait on the network: on SQLite no write lock (BEGIN IMMEDIATE
    takes it at the first statement), on PostgreSQL no row lock and no pinned connection. The
    session stays usable (objects are not expired); its next statement begins a new
    transaction, which the route class commits as usual."""
    if session.in_transaction():
        await session.commit()


@dataclass(slots=True)
class Database:
    engine: AsyncEngine
    read_engine: AsyncEngine
    reader: async_sessionmaker[AsyncSession]
    writer: async_sessionmaker[AsyncSession]

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = create_engine(settings)
        read_engine = create_engine(settings, read_only=True)
        writer_engine = engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        return cls(
            engine=engine,
            read_engine=read_engine,
            reader=async_sessionmaker(read_engine, expire_on_commit=False, autoflush=False),
            writer=async_sessionmaker(writer_engine, expire_on_commit=False, autoflush=False),
        )

    def session(self, *, writes: bool) -> AsyncSession:
        return (self.writer if writes else self.reader)()

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self.read_engine.dispose()
