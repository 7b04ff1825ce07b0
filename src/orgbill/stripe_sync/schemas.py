from __future__ import annotations

import uuid

from orgbill.kit.schemas import Schema, UTCDatetime


class WebhookAck(Schema):
    received: bool = True
    event_id: str
    status: str
    duplicate: bool


class StripeEventSummary(Schema):
    """An inbox row as admins see it (the payload stays in the database)."""

    id: uuid.UUID
    stripe_event_id: str
    type: str
    api_version: str | None
    object_id: str | None
    organization_id: uuid.UUID | None
    status: str
    outcome: str | None
    error: str | None
    attempts: int
    event_created_at: UTCDatetime
    created_at: UTCDatetime
    processed_at: UTCDatetime | None
