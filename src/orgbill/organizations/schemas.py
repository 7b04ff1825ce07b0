from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field, model_validator

from orgbill.kit.schemas import DecimalNumber, RequestSchema, Schema, UTCDatetime
from orgbill.kit.types import FreeJson, Timestamp, http_url, text
from orgbill.models import Role

Slug = text(min_length=2, max_length=100, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
Name = text(min_length=1, max_length=200)
JsonObject = dict[str, Any]
# Column widths: what is accepted is stored and returned exactly as sent.
WebsiteUrl = http_url(max_length=500)
ImageUrl = http_url(max_length=1000)
EmailLookup = text(min_length=1, max_length=320, strip=True)  # a lookup, normalised


class OrganizationCreate(RequestSchema):
    name: Name
    slug: Slug | None = None
    website: WebsiteUrl | None = None


class OrganizationUpdate(RequestSchema):
    name: Name | None = None
    website: WebsiteUrl | None = None
    image_url: ImageUrl | None = None
    preferences: FreeJson | None = None
    partner_configuration: FreeJson | None = None


class Organization(Schema):
    id: uuid.UUID
    name: str
    slug: str
    website: str | None
    image_url: str | None
    status: str
    region_id: str
    org_type: str
    kyc_level: int
    placement_group: str
    is_suspended: bool
    is_deleted: bool
    is_stripe_overdue: bool
    is_active: bool
    plan: str
    rate_limit: int | None
    entitlements: list[str]
    preferences: JsonObject
    partner_configuration: JsonObject
    registerable: bool
    api_key_prefix: str | None
    created_at: UTCDatetime
    updated_at: UTCDatetime


class PlanSummary(Schema):
    """The organization's effective plan, with its effective limits."""

    # The plan part of seed 003's composite read.

    code: str
    name: str
    amount: int
    currency: str
    interval: str
    stripe_id: str | None
    plan_source: str
    chunk_count: int | None
    dataset_count: int | None
    file_storage: int | None
    message_count: int | None
    user_count: int | None
    limits: JsonObject
    features: list[str]
    # The current billing period (the one `/usage` and the quota headers count in).
    period_start: UTCDatetime
    period_end: UTCDatetime


class SubscriptionSummary(Schema):
    """The organization's subscription, or null when it has none."""

    # Seed 003's subscription part, read straight from the mirror row.

    id: uuid.UUID
    organization_id: uuid.UUID
    stripe_id: str = Field(validation_alias="stripe_subscription_id")
    # The plan the subscription's price means in the live catalog (decided when read).
    plan: str | None = None
    status: str
    current_period_start: UTCDatetime | None
    current_period_end: UTCDatetime | None
    cancel_at_period_end: bool
    created_at: UTCDatetime
    updated_at: UTCDatetime


class OrganizationComposite(Schema):
    organization: Organization
    plan: PlanSummary
    subscription: SubscriptionSummary | None


class OrganizationProfile(Schema):
    id: uuid.UUID
    name: str
    slug: str
    website: str | None
    status: str
    total_credits: DecimalNumber
    region_id: str
    plan_name: str
    plan_source: Literal["enterprise", "stripe", "free"]
    sub_status: str | None
    period_end: UTCDatetime | None
    max_concurrency: int | None
    max_members: int | None
    max_agents: int | None
    max_credits: int | None
    api_rate_limit: int | None
    can_record_calls: bool
    can_use_api: bool
    extra_credit_price: DecimalNumber
    limits: JsonObject


class Member(Schema):
    user_id: uuid.UUID
    email: str
    name: str
    role: Role
    created_at: UTCDatetime


class MemberCreate(RequestSchema):
    user_id: uuid.UUID | None = None
    email: EmailLookup | None = None
    role: Role = Role.MEMBER

    @model_validator(mode="after")
    def _one_identifier(self) -> MemberCreate:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give exactly one of user_id or email")
        return self


class MemberUpdate(RequestSchema):
    role: Role


class ApiKeyCreate(RequestSchema):
    name: Name
    expires_at: Timestamp | None = None


class ApiKey(Schema):
    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    prefix: str
    created_at: UTCDatetime
    expires_at: UTCDatetime | None
    revoked_at: UTCDatetime | None
    last_used_at: UTCDatetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The plaintext key. Shown once; store it now.")


class RegeneratedKey(Schema):
    """The organization's id and name with its new API key (shown once)."""

    # Seed 001's shape.

    id: uuid.UUID
    name: str
    api_key: str
    api_key_prefix: str
    key_id: uuid.UUID
    created_at: UTCDatetime
