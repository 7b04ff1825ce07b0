"""The event types orgbill sends (CONTRACT.md → "Events to your product")."""

from __future__ import annotations

import uuid
from enum import StrEnum


class EventType(StrEnum):
    ORGANIZATION_CREATED = "organization.created"
    ORGANIZATION_UPDATED = "organization.updated"
    ORGANIZATION_DELETED = "organization.deleted"
    ORGANIZATION_SUSPENDED = "organization.suspended"
    ORGANIZATION_REACTIVATED = "organization.reactivated"
    ORGANIZATION_PLAN_CHANGED = "organization.plan_changed"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    INVOICE_PAID = "invoice.paid"
    INVOICE_PAYMENT_FAILED = "invoice.payment_failed"
    USAGE_THRESHOLD_CROSSED = "usage.threshold_crossed"
    CREDITS_LOW = "credits.low"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"


ALL_EVENTS = "*"
EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)


def webhook_id(event_id: uuid.UUID) -> str:
    """The `webhook-id` an event is sent with: one per event, the same on every attempt."""
    return f"evt_{event_id.hex}"
