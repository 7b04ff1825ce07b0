from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, StrictBool, StrictInt, Tag

from orgbill.entitlements.resolver import PlanSource
from orgbill.kit.schemas import DecimalNumber, RequestSchema, Schema, UTCDatetime
from orgbill.kit.types import IdempotencyKey, text
from orgbill.models.types import CREDIT_SCALE

MAX_TTL_SECONDS = 86_400
DEFAULT_TTL_SECONDS = 300
MAX_NAME_LENGTH = 64
# A meter, `credits` or a feature, as a request names it.
Name = text(min_length=1, max_length=MAX_NAME_LENGTH)

# Whole units for a meter, up to 1/10,000 for credits (checked per metric by the service).
Quantity = Annotated[
    Decimal,
    Field(gt=0, le=Decimal(1_000_000_000), decimal_places=CREDIT_SCALE, allow_inf_nan=False),
]
DecisionCode = Literal[
    "quota_exceeded", "insufficient_credits", "feature_not_in_plan", "org_suspended"
]
ReservationState = Literal["held", "committed", "released", "expired"]


class MetricCheck(RequestSchema):
    """May the org use `quantity` more of a meter (or of `credits`)? Optionally hold it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"metric": "agents", "quantity": 1, "reserve": True, "ttl_seconds": 600},
                {
                    "metric": "credits",
                    "quantity": 2.5,
                    "reserve": True,
                    "idempotency_key": "job-42",
                },
                {"metric": "turns"},
            ]
        }
    )

    metric: Annotated[Name, Field(description="A meter or `credits`")]
    quantity: Quantity = Decimal(1)
    reserve: StrictBool = False
    ttl_seconds: Annotated[StrictInt, Field(ge=1, le=MAX_TTL_SECONDS)] = DEFAULT_TTL_SECONDS
    idempotency_key: Annotated[
        IdempotencyKey | None,
        Field(description="With `reserve`: a repeat returns the first decision unchanged"),
    ] = None


class FeatureCheck(RequestSchema):
    """Is a feature on: in the plan's features, a boolean limit that is true, or one of the
    org's entitlements? Nothing is held."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"feature": "sso"}, {"feature": "can_record_calls"}]}
    )

    feature: Name
    quantity: Quantity = Decimal(1)
    reserve: Literal[False] = False
    idempotency_key: IdempotencyKey | None = None


def _check_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kinds = [kind for kind in ("metric", "feature") if kind in value]
        return kinds[0] if len(kinds) == 1 else None
    return "feature" if isinstance(value, FeatureCheck) else "metric"


CheckRequest = Annotated[
    Annotated[MetricCheck, Tag("metric")] | Annotated[FeatureCheck, Tag("feature")],
    Discriminator(
        _check_kind,
        custom_error_type="metric_or_feature",
        custom_error_message="Send exactly one of 'metric' or 'feature'",
    ),
]


class ReservationHold(Schema):
    id: uuid.UUID
    quantity: DecimalNumber
    expires_at: UTCDatetime


class _Decision(Schema):
    allowed: bool
    code: DecisionCode | None = Field(description="null when allowed")
    quantity: DecimalNumber
    plan: str
    plan_source: PlanSource
    source: str | None = Field(
        description="Provenance of the limit or feature, as plan/explain shows it "
        "(`plan:<code>`, `contract`, `override`); null when none applies"
    )
    reservation: ReservationHold | None


class MetricDecision(_Decision):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "allowed": True,
                    "code": None,
                    "metric": "agents",
                    "quantity": 1,
                    "limit": 10,
                    "used": 7,
                    "reserved": 1,
                    "remaining": 2,
                    "reset_at": None,
                    "plan": "pro",
                    "plan_source": "stripe",
                    "source": "plan:pro",
                    "reservation": {
                        "id": "0b6f3c0e-3a55-4c38-9a57-7c1f0f3f9a10",
                        "quantity": 1,
                        "expires_at": "2026-12-01T20:05:00Z",
                    },
                }
            ]
        }
    )

    metric: str
    limit: DecimalNumber | None = Field(description="null: unlimited; for credits, total_credits")
    used: DecimalNumber
    reserved: DecimalNumber = Field(description="Held by other live reservations")
    remaining: DecimalNumber | None = Field(description="limit - used - reserved, at least 0")
    reset_at: UTCDatetime | None = Field(
        description="When a counter's period ends and it starts again from zero"
    )


class FeatureDecision(_Decision):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "allowed": False,
                    "code": "feature_not_in_plan",
                    "feature": "sso",
                    "quantity": 1,
                    "limit": None,
                    "used": None,
                    "reserved": None,
                    "remaining": None,
                    "reset_at": None,
                    "plan": "pro",
                    "plan_source": "stripe",
                    "source": None,
                    "reservation": None,
                }
            ]
        }
    )

    feature: str
    limit: None = None
    used: None = None
    reserved: None = None
    remaining: None = None
    reset_at: None = None


Decision = MetricDecision | FeatureDecision


class ReservationCommit(RequestSchema):
    quantity: Annotated[
        Quantity | None, Field(description="At most the reserved quantity; default all of it")
    ] = None


class ReservationOut(Schema):
    id: uuid.UUID
    metric: str
    quantity: DecimalNumber
    state: ReservationState
    committed_quantity: DecimalNumber | None
    expires_at: UTCDatetime
    created_at: UTCDatetime
    settled_at: UTCDatetime | None
