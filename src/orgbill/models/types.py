"""Column types shared by several tables."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

CREDIT_SCALE = 4  # credits are kept to 1/10,000
_SQLITE_FACTOR = Decimal(10) ** CREDIT_SCALE


class CreditAmount(TypeDecorator[Decimal]):
    """Exact credits: NUMERIC(18, 4) on PostgreSQL. SQLite has no exact decimal storage (its
    NUMERIC affinity turns 0.5 into a float), so there the column holds integer
    ten-thousandths; SQL arithmetic and comparisons on it stay exact integers."""

    impl = Numeric(18, CREDIT_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, CREDIT_SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = Decimal(value).quantize(Decimal(1).scaleb(-CREDIT_SCALE))
        return int(exact * _SQLITE_FACTOR) if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / _SQLITE_FACTOR).quantize(Decimal(1).scaleb(-CREDIT_SCALE))
        return Decimal(value)
