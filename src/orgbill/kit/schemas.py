"""Base schema: UTC timestamps rendered with ``Z``; decimals as JSON numbers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema

from orgbill.kit.time import isoformat_z

# WithJsonSchema: the serializer's `str` would otherwise hide `format: date-time` from clients.
UTCDatetime = Annotated[
    datetime,
    PlainSerializer(isoformat_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def decimal_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


# Credits are exact decimals in the database and plain JSON numbers on the wire.
DecimalNumber = Annotated[
    Decimal, PlainSerializer(decimal_number, return_type=int | float, when_used="json")
]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class RequestSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
