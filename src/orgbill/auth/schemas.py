from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BeforeValidator, EmailStr

from orgbill.kit.schemas import RequestSchema, Schema, UTCDatetime
from orgbill.kit.types import clean_text, text
from orgbill.models import Role

# Passwords are never shown back: stripped, as they always were (so a password registered
# with surrounding spaces still signs in).
Password = text(min_length=8, max_length=256, strip=True)
UserName = text(min_length=1, max_length=200)
GivenPassword = text(min_length=1, max_length=256, strip=True)
# Checked as text before the address parser sees it; stored normalised (auth/service.py).
Email = Annotated[
    EmailStr, BeforeValidator(lambda v: clean_text(v).strip() if isinstance(v, str) else v)
]


class UserCreate(RequestSchema):
    email: Email
    password: Password
    name: UserName


class TokenRequest(RequestSchema):
    email: Email
    password: GivenPassword


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
