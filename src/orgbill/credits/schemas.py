from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import Field

from orgbill.kit.schemas import DecimalNumber, RequestSchema, Schema, UTCDatetime
from orgbill.kit.types import text
from orgbill.models.types import CREDIT_SCALE

# Credits are kept to 1/10,000; a single movement above a billion is a client bug.
CreditAmountIn = Annotated[
    Decimal,
    Field(gt=0, le=Decimal(1_000_000_000), decimal_places=CREDIT_SCALE, allow_inf_nan=False),
]

IdempotencyKey = text(min_length=1, max_length=255)
Reason = text(max_length=500)
GrantReason = text(min_length=1, max_length=500)


class CreditConsume(RequestSchema):
    amount: CreditAmountIn
    idempotency_key: IdempotencyKey
    reason: Reason | None = None


class CreditGrant(RequestSchema):
    amount: CreditAmountIn
    reason: GrantReason


class CreditEntry(Schema):
    id: uuid.UUID
    kind: str
    amount: DecimalNumber
    idempotency_key: str | None
    reason: str | None
    actor_user_id: uuid.UUID | None
    created_at: UTCDatetime


class CreditBalanceOut(Schema):
    total_credits: DecimalNumber


class CreditGranted(Schema):
    entry: CreditEntry
    total_credits: DecimalNumber


class Credits(Schema):
    total_credits: DecimalNumber
    max_credits: int | None
    extra_credit_price: DecimalNumber
    # This period's monthly credits, included in total_credits, that are written to the
    # ledger by the next credit movement (reads never write).
    pending_monthly_grant: DecimalNumber
    ledger: list[CreditEntry]
    next_cursor: str | None
