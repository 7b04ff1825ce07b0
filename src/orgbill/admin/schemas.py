from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from orgbill.kit.schemas import RequestSchema, Schema, UTCDatetime
from orgbill.kit.types import FreeJson, Timestamp, text
from orgbill.plans.catalog import CatalogError, parse_limit

Label = text(min_length=1, max_length=64)
OrgType = text(min_length=1, max_length=32)  # the column's width


class ImpersonateRequest(RequestSchema):
    org_id: uuid.UUID


class ImpersonationToken(Schema):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int
    org_id: uuid.UUID


class AdminOrganizationUpdate(RequestSchema):
    status: Literal["ACTIVE", "SUSPENDED"] | None = None
    # Strict, as every number and flag a client sends (tests/hostile walks them all): `true`
    # is no rate limit, `"1"` no suspension.
    is_suspended: StrictBool | None = None
    kyc_level: Annotated[int, Field(ge=0, le=10, strict=True)] | None = None
    placement_group: Label | None = None
    org_type: OrgType | None = None
    region_id: Label | None = None
    rate_limit: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] | None = None
    entitlements: list[Label] | None = None
    registerable: StrictBool | None = None
    # Replaces the org's limit overrides; values use the plans file syntax.
    limit_overrides: FreeJson | None = None

    @field_validator("limit_overrides")
    @classmethod
    def _valid_overrides(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return validate_overrides("limit_overrides", value)


class EnterpriseContractPut(RequestSchema):
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    plan_code: Label = "enterprise"
    overrides: FreeJson = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _valid_overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        return validate_overrides("overrides", value) or {}

    @model_validator(mode="after")
    def _ordered(self) -> EnterpriseContractPut:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class EnterpriseContract(Schema):
    id: uuid.UUID
    organization_id: uuid.UUID
    plan_code: str
    starts_at: UTCDatetime
    ends_at: UTCDatetime | None
    overrides: dict[str, Any]
    active: bool
    created_at: UTCDatetime
    updated_at: UTCDatetime


def validate_overrides(field: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Same value syntax and checks as the plans file; stored as given (JSON-safe)."""
    if value is None:
        return None
    for name, raw in value.items():
        try:
            parse_limit(field, name, raw)
        except CatalogError as exc:
            raise ValueError(str(exc)) from exc
    return value


class AuditEntry(Schema):
    id: uuid.UUID
    actor_user_id: uuid.UUID | None
    action: str
    organization_id: uuid.UUID | None
    details: dict[str, Any]
    request_id: str | None
    created_at: UTCDatetime
