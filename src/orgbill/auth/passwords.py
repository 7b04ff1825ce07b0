"""Password hashing (argon2id via passlib), off the event loop."""

from __future__ import annotations

import asyncio

from passlib.context import CryptContext

# OWASP's argon2id baseline (19 MiB, t=2, p=1): strong, and cheap enough for a login route.
_context = CryptContext(
    schemes=["argon2"],
    argon2__memory_cost=19456,
    argon2__time_cost=2,
    argon2__parallelism=1,
    argon2__type="ID",
)
# Verified when the email is unknown so both paths cost the same.
_DUMMY_HASH = _context.hash("orgbill-timing-equaliser")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_context.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    matched = await asyncio.to_thread(_context.verify, password, password_hash or _DUMMY_HASH)
    return matched and password_hash is not None
