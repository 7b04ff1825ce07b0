from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field, StrictBool, field_validator

from orgbill.kit.schemas import RequestSchema, Schema, UTCDatetime
from orgbill.kit.types import OutboundHttpUrlText, text
from orgbill.webhooks_out.events import ALL_EVENTS, EventType

EventFilter = Literal[
    "*",
    "organization.created",
    "organization.updated",
    "organization.deleted",
    "organization.suspended",
    "organization.reactivated",
    "organization.plan_changed",
    "subscription.updated",
    "invoice.paid",
    "invoice.payment_failed",
    "usage.threshold_crossed",
    "credits.low",
    "api_key.created",
    "api_key.revoked",
]
EventList = Annotated[list[EventFilter], Field(min_length=1, max_length=len(EventType) + 1)]
Description = text(max_length=500)
DeliveryStatus = Literal["pending", "delivered", "failed"]


def _normalised(events: list[str]) -> list[str]:
    # ["*"] beside named types is just ["*"]; duplicates are dropped, order kept.
    if ALL_EVENTS in events:
        return [ALL_EVENTS]
    return list(dict.fromkeys(events))


class WebhookEndpointCreate(RequestSchema):
    # The dispatcher POSTs to it from inside the deployment: no link-local address.
    url: OutboundHttpUrlText
    events: EventList
    description: Description | None = None
    # Only this organization's events; omitted or null: every organization's.
    organization_id: uuid.UUID | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        return _normalised(value)


class WebhookEndpointUpdate(RequestSchema):
    url: OutboundHttpUrlText | None = None
    events: EventList | None = None
    description: Description | None = None
    enabled: StrictBool | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return _normalised(value) if value is not None else None


class WebhookEndpoint(Schema):
    id: uuid.UUID
    url: str
    events: list[EventFilter]
    description: str | None
    organization_id: uuid.UUID | None
    enabled: bool
    # Why orgbill disabled it (null while enabled, or when an admin disabled it).
    disabled_reason: str | None
    failing_since: UTCDatetime | None
    created_at: UTCDatetime
    updated_at: UTCDatetime


class WebhookEndpointCreated(WebhookEndpoint):
    # Shown once, here: orgbill cannot show it again.
    secret: str


class WebhookDelivery(Schema):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    # The `webhook-id` header it is sent with (the same on every attempt).
    webhook_id: str
    event_type: str
    organization_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    last_attempt_at: UTCDatetime | None
    last_status_code: int | None
    last_latency_ms: int | None
    last_error: str | None
    # When it is tried next (pending only).
    next_attempt_at: UTCDatetime | None
    delivered_at: UTCDatetime | None
    created_at: UTCDatetime
