"""Typed plan limits: every limit is a count, unlimited, a flag or money — or, read from a
stored catalog written by a newer version, a value this version does not know (kept and
shown as stored, never fatal).

The one place that knows how a limit looks in the plans file, in JSON, and what a caller
may read from it (`as_count`, `as_flag`, `as_money`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

UNLIMITED = "unlimited"

LimitKind = Literal["count", "unlimited", "flag", "money", "unknown"]


@dataclass(frozen=True, slots=True)
class Limit:
    kind: LimitKind
    # int for count, bool for flag, Decimal for money, None for unlimited, the stored value
    # for unknown.
    value: Any = None

    @classmethod
    def count(cls, value: int) -> Limit:
        return cls("count", value)

    @classmethod
    def unlimited(cls) -> Limit:
        return cls("unlimited", None)

    @classmethod
    def flag(cls, value: bool) -> Limit:
        return cls("flag", value)

    @classmethod
    def money(cls, value: Decimal) -> Limit:
        return cls("money", value)

    @classmethod
    def unknown(cls, raw: Any) -> Limit:
        return cls("unknown", raw)

    @property
    def is_unlimited(self) -> bool:
        return self.kind == "unlimited"

    def as_count(self) -> int | None:
        """The ceiling a count sets; None when there is none (unlimited, or not a count)."""
        return self.value if self.kind == "count" else None

    def as_flag(self) -> bool:
        return self.value if self.kind == "flag" else False

    def as_money(self) -> Decimal:
        return self.value if self.kind == "money" else Decimal(0)

    def to_json(self) -> Any:
        """As the API shows it: money as a number, unlimited as null."""
        if self.kind == "money":
            value: Decimal = self.value
            return int(value) if value == value.to_integral_value() else float(value)
        return self.value

    def to_document(self) -> Any:
        """In the plans file's syntax (money as an exact string, "unlimited")."""
        if self.kind == "unlimited":
            return UNLIMITED
        if self.kind == "money":
            return str(self.value)
        return self.value


# What a lookup of a limit the catalog does not define returns: no ceiling, no flag, no price.
ABSENT = Limit.unknown(None)


class Limits(Mapping[str, Limit]):
    """Named limits, read through the typed accessors."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Limit] | None = None) -> None:
        self._items: dict[str, Limit] = dict(items or {})

    def __getitem__(self, name: str) -> Limit:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Limits({self._items!r})"

    def get_limit(self, name: str) -> Limit:
        return self._items.get(name, ABSENT)

    def count(self, name: str) -> int | None:
        return self.get_limit(name).as_count()

    def flag(self, name: str) -> bool:
        return self.get_limit(name).as_flag()

    def money(self, name: str) -> Decimal:
        return self.get_limit(name).as_money()

    def to_json(self) -> dict[str, Any]:
        return {name: limit.to_json() for name, limit in self._items.items()}

    def to_document(self) -> dict[str, Any]:
        return {name: limit.to_document() for name, limit in self._items.items()}


# The shares of a count limit the contract reports: a usage warning at 80%, critical at 100%;
# `GET /usage` warnings and `usage.threshold_crossed` events both decide with `reaches_share`.
WARNING_PERCENT = 80
CRITICAL_PERCENT = 100
USAGE_THRESHOLDS = (WARNING_PERCENT, CRITICAL_PERCENT)


def reaches_share(used: int, limit: int, percent: int) -> bool:
    """Whether `used` is at least `percent`% of `limit`, compared exactly in integers: a
    rounded percentage would call 9,999 of 10,000 "100%". Against a zero limit any use
    reaches every share, and none reaches none."""
    if limit <= 0:
        return used > 0
    return used * 100 >= limit * percent
