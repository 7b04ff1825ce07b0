"""Base schema: UTC timestamps rendered with ``Z``; decimals as JSON numbers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema, field_validator

from orgbill.kit.time import isoformat_z
from orgbill.kit.types import clean_text_within

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
    # Strings are kept exactly as sent (no whitespace stripping): the contract returns a stored
    # string as it was sent. Blank required text is refused by `kit.types.text`.
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_unstorable_text(cls, value: Any) -> Any:
        # Every field, whatever its declared type: a string with NUL or a lone surrogate in
        # any request body is a 422 here, never a driver's or an encoder's 500 later.
        return clean_text_within(value)
