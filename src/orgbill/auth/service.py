"""Registration and login."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth import repository, schemas
from orgbill.auth.passwords import hash_password, verify_password
from orgbill.auth.principal import UserPrincipal
from orgbill.errors import Conflict, RateLimited, Unauthorized
from orgbill.kit.time import utcnow
from orgbill.models import User
from orgbill.ratelimit.signin import SignInGuard


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def create_user(
    session: AsyncSession, email: str, password: str, name: str, *, is_superadmin: bool = False
) -> User:
    now = utcnow()
    user = User(
        id=uuid.uuid4(),
        email=normalize_email(email),
        name=name,
        password_hash=await hash_password(password),
        is_superadmin=is_superadmin,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise Conflict("A user with this email already exists") from exc
    return user


async def authenticate(
    session: AsyncSession, email: str, password: str, guard: SignInGuard
) -> User:
    """Too many failures for one email lock it (from any IP) until the oldest ages out. The
    attempt counts as a failure from before the password is checked until it succeeds."""
    email = normalize_email(email)
    retry_after = await guard.claim_attempt(email)
    if retry_after is not None:
        raise RateLimited(
            "Too many failed sign-ins for this email; try again later",
            headers={"Retry-After": str(retry_after)},
        )
    user = await repository.get_user_by_email(session, email)
    if not await verify_password(password, user.password_hash if user else None) or user is None:
        raise Unauthorized("Invalid email or password")
    await guard.clear(email)
    return user


async def me(session: AsyncSession, principal: UserPrincipal) -> schemas.Me:
    memberships = await repository.live_memberships(session, principal.user.id)
    return schemas.Me(
        **schemas.User.model_validate(principal.user).model_dump(),
        memberships=[schemas.MembershipRef.model_validate(m) for m in memberships],
        impersonating=principal.impersonated_org_id,
    )
