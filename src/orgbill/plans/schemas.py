from __future__ import annotations

import uuid
from typing import Any, Literal

from orgbill.kit.schemas import Schema, UTCDatetime


class PlanOut(Schema):
    """A catalog plan. `price` is the display price in major units, `amount` the same in
    minor units of `currency`."""

    # price as seed 001 shows it, amount as seed 003.

    code: str
    name: str
    description: str
    price: int | float
    amount: int
    currency: str
    interval: str
    stripe_price_id: str | None
    stripe_lookup_key: str | None
    limits: dict[str, Any]
    features: list[str]


class PlanList(Schema):
    data: list[PlanOut]
    version: int


class PlanDetails(Schema):
    name: str
    price: int | float
    currency: str
    interval: str
    limits: dict[str, Any]
    description: str


class CurrentPlan(Schema):
    current_plan: str
    plan_source: Literal["enterprise", "stripe", "free"]
    plan_details: PlanDetails
    usage: dict[str, Any]
    all_plans: dict[str, PlanOut]


class LayerOut(Schema):
    layer: Literal["enterprise", "stripe", "free"]
    applied: bool
    reason: str


class LimitOut(Schema):
    value: Any
    source: str


class PlanExplanation(Schema):
    organization_id: uuid.UUID
    evaluated_at: UTCDatetime
    plan: str
    plan_name: str
    plan_source: Literal["enterprise", "stripe", "free"]
    layers: list[LayerOut]
    limits: dict[str, LimitOut]
    features: list[str]
    is_stripe_overdue: bool
    period_start: UTCDatetime | None
    period_end: UTCDatetime | None
