"""`/readyz`: may this instance take traffic? Every check lives in `check_readiness`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from orgbill.db import Database
from orgbill.operations import repository

logger = logging.getLogger("orgbill.readiness")
READY_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str | None = None
    schema_revision: str | None = None


async def check_readiness(database: Database, expected_revision: str | None) -> Readiness:
    """Database reachable, schema at the shipped head, a plan catalog loaded."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), database.read_engine.connect() as conn:
            await repository.ping(conn)
            try:
                revision = await repository.schema_revision(conn)
            except DBAPIError:
                return Readiness(False, "Database schema is not migrated: run `orgbill migrate`")
            if revision != expected_revision:
                return Readiness(
                    False,
                    f"Database schema is at {revision or 'no revision'}, expected "
                    f"{expected_revision}: run `orgbill migrate`",
                    revision,
                )
            if not await repository.catalog_loaded(conn):
                return Readiness(
                    False, "No plan catalog loaded: run `orgbill plans sync`", revision
                )
    except (DBAPIError, OSError, TimeoutError) as exc:
        logger.warning("database unreachable", extra={"cause": type(exc).__name__})
        return Readiness(False, "Database unreachable")
    return Readiness(True, schema_revision=revision)
