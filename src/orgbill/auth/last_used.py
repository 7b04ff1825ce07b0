"""Records API key ``last_used_at`` at most once a minute per key, off the request path."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timedelta

from orgbill.auth import repository
from orgbill.db import Database
from orgbill.kit.time import utcnow

INTERVAL = timedelta(minutes=1)
logger = logging.getLogger("orgbill.auth")


class ApiKeyUsageRecorder:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._scheduled: dict[uuid.UUID, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, key_id: uuid.UUID, last_used_at: datetime | None) -> None:
        now = utcnow()
        if last_used_at is not None and now - last_used_at < INTERVAL:
            return
        mono = time.monotonic()
        if mono - self._scheduled.get(key_id, -1e9) < INTERVAL.total_seconds():
            return
        self._scheduled[key_id] = mono
        task = asyncio.create_task(self._write(key_id, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, key_id: uuid.UUID, now: datetime) -> None:
        try:
            async with self._database.session(writes=True) as session:
                await repository.touch_api_key(session, key_id, now, INTERVAL)
                await session.commit()
        except Exception:  # a lost timestamp must never fail or slow a request
            logger.warning("could not record api key use", exc_info=True)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
