from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import EmailStr, StringConstraints

from orgbill.kit.schemas import RequestSchema, Schema, UTCDatetime
from orgbill.models import Role

Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]


class UserCreate(RequestSchema):
    email: EmailStr
    password: Password
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TokenRequest(RequestSchema):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Token(Schema):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class User(Schema):
    id: uuid.UUID
    email: str
    name: str
    is_superadmin: bool
    created_at: UTCDatetime


class MembershipRef(Schema):
    organization_id: uuid.UUID
    role: Role


class Me(User):
    memberships: list[MembershipRef]
    impersonating: uuid.UUID | None = None
