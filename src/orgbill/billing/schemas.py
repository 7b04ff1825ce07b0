from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field

from orgbill.kit.schemas import RequestSchema, Schema, UTCDatetime
from orgbill.kit.types import HttpUrlText, text

PlanCode = Annotated[text(min_length=1, max_length=64), Field(examples=["pro"])]


class BillingSubscription(Schema):
    """The organization's subscription as Stripe last reported it."""

    # Seed 001's shape, read straight from the mirror row.

    id: uuid.UUID
    stripe_subscription_id: str
    stripe_customer_id: str | None
    # The plan the subscription's price means in the live catalog (decided when read).
    plan: str | None = None
    status: str
    current_period_start: UTCDatetime | None
    current_period_end: UTCDatetime | None
    cancel_at_period_end: bool
    canceled_at: UTCDatetime | None
    ended_at: UTCDatetime | None
    created_at: UTCDatetime
    updated_at: UTCDatetime


class BillingInvoice(Schema):
    """`amount` is the invoice total; all amounts are integer minor units of `currency`."""

    id: uuid.UUID
    stripe_invoice_id: str
    stripe_subscription_id: str | None
    amount: int = Field(validation_alias="total")
    amount_due: int
    amount_paid: int
    currency: str
    status: str | None
    invoice_pdf: str | None
    hosted_invoice_url: str | None
    period_start: UTCDatetime | None
    period_end: UTCDatetime | None
    created_at: UTCDatetime


class CheckoutRequest(RequestSchema):
    plan: PlanCode
    success_url: HttpUrlText
    cancel_url: HttpUrlText


class CreditCheckoutRequest(RequestSchema):
    """Whole credits; at most the plan's max_credits (checked against the plan: 422)."""

    quantity: Annotated[int, Field(ge=1, le=1_000_000_000, strict=True)]
    success_url: HttpUrlText
    cancel_url: HttpUrlText


class CheckoutSession(Schema):
    session_id: str
    url: str | None


class PortalRequest(RequestSchema):
    return_url: HttpUrlText


class PortalSession(Schema):
    url: str
