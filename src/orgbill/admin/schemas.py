from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from orgbill.kit.schemas import RequestSchema, Schema, UTCDatetime

Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ImpersonateRequest(RequestSchema):
    org_id: uuid.UUID


class ImpersonationToken(Schema):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int
    org_id: uuid.UUID


class AdminOrganizationUpdate(RequestSchema):
    status: Literal["ACTIVE", "SUSPENDED"] | None = None
    is_suspended: bool | None = None
    kyc_level: Annotated[int, Field(ge=0, le=10)] | None = None
    placement_group: Label | None = None
    org_type: Label | None = None
    region_id: Label | None = None
    rate_limit: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    entitlements: list[Label] | None = None
    registerable: bool | None = None


class AuditEntry(Schema):
    id: uuid.UUID
    actor_user_id: uuid.UUID | None
    action: str
    organization_id: uuid.UUID | None
    details: dict[str, Any]
    request_id: str | None
    created_at: UTCDatetime
