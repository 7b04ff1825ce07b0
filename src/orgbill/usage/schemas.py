from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from orgbill.kit.schemas import RequestSchema, Schema, UTCDatetime
from orgbill.kit.types import IdempotencyKey, Int64, Timestamp, text

# Bounds on one event. Anything outside is almost certainly a client bug (a byte count sent
# as a message count, a sign error), and accepting it would blow through a quota at once.
MAX_EVENT_QUANTITY = 1_000_000
MAX_EVENTS_PER_BATCH = 1000
Metric = text(min_length=1, max_length=64)


class UsageEventIn(RequestSchema):
    metric: Metric
    # Strict: 1.5, "3" and true are refused rather than coerced.
    quantity: Annotated[Int64, Field(ge=-MAX_EVENT_QUANTITY, le=MAX_EVENT_QUANTITY)]
    idempotency_key: IdempotencyKey | None = None
    timestamp: Timestamp | None = None


class UsageEventBatch(RequestSchema):
    # The 1000-event ceiling is checked by the service so that it answers 400, as documented.
    events: Annotated[list[UsageEventIn], Field(min_length=1)]


class UsageWarning(Schema):
    type: str
    message: str
    severity: Literal["warning", "critical"]


class UsageEventsRecorded(Schema):
    accepted: int
    duplicates: int
    warnings: list[UsageWarning] = []


class MetricUsage(Schema):
    current: int
    limit: int | None  # null: unlimited
    percentage: float | None  # null when unlimited


class Usage(Schema):
    """Usage this billing period: one key per metric ({current, limit, percentage}) beside
    these fields."""

    # Seed 001's shape.

    model_config = ConfigDict(extra="allow")

    plan: str
    period_start: UTCDatetime
    period_end: UTCDatetime
    warnings: list[UsageWarning]
