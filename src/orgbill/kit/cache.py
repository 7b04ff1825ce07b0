"""An async result reused for a while (e.g. /readyz asks the database at most once a second)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Memo(Generic[T]):
    def __init__(
        self,
        compute: Callable[[], Awaitable[T]],
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._seconds = seconds
        self.clock = clock  # public: a test drives time through it
        self._value: T | None = None
        self._at = float("-inf")

    async def get(self) -> T:
        if self.clock() - self._at >= self._seconds or self._value is None:
            self._value = await self._compute()
            self._at = self.clock()
        return self._value
