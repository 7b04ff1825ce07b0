from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from orgbill.kit.schemas import DecimalNumber, RequestSchema, Schema, UTCDatetime
from orgbill.kit.types import IdempotencyKey, Timestamp, text
from orgbill.models.types import CREDIT_SCALE

# Credits are kept to 1/10,000; a single movement above a billion is a client bug.
CreditAmountIn = Annotated[
    Decimal,
    Field(gt=0, le=Decimal(1_000_000_000), decimal_places=CREDIT_SCALE, allow_inf_nan=False),
]

Reason = text(max_length=500)
GrantReason = text(min_length=1, max_length=500)


class CreditConsume(RequestSchema):
    amount: CreditAmountIn
    idempotency_key: IdempotencyKey
    reason: Reason | None = None


class CreditGrant(RequestSchema):
    amount: CreditAmountIn
    reason: GrantReason
    kind: Literal["grant", "promotional"] = "grant"
    # Null: never expires. Must lie in the future (checked against the server's clock).
    expires_at: Timestamp | None = None


class CreditEntry(Schema):
    id: uuid.UUID
    kind: str
    amount: DecimalNumber
    idempotency_key: str | None
    reason: str | None
    actor_user_id: uuid.UUID | None
    grant_id: uuid.UUID | None = None
    created_at: UTCDatetime
    # True for an entry that is due (a monthly allowance, an expired remainder) and is
    # written, with this id and time, by the org's next credit movement.
    pending: bool = False


class CreditGrantOut(Schema):
    id: uuid.UUID
    kind: Literal["monthly", "purchase", "grant", "promotional"]
    amount: DecimalNumber
    remaining: DecimalNumber
    expires_at: UTCDatetime | None
    created_at: UTCDatetime


class CreditBalanceOut(Schema):
    total_credits: DecimalNumber


class CreditGranted(Schema):
    entry: CreditEntry
    grant: CreditGrantOut
    total_credits: DecimalNumber


class Credits(Schema):
    total_credits: DecimalNumber
    max_credits: int | None
    extra_credit_price: DecimalNumber
    # This month's allowance, included in total_credits (and shown in grants and ledger)
    # before the next credit movement writes it (reads never write).
    pending_monthly_grant: DecimalNumber
    # Unexpired grants with credits left, in the order consumption draws from them.
    grants: list[CreditGrantOut]
    ledger: list[CreditEntry]
    next_cursor: str | None
