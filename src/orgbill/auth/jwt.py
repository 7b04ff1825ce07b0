"""JWT issue and verify (python-jose). HS256 by default; RS256 with a public key as an option."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from jose import JWTError, jwt

from orgbill.config import Settings
from orgbill.errors import Unauthorized
from orgbill.kit.time import utcnow

_REQUIRED = {"require_sub": True, "require_exp": True, "require_iat": True, "verify_aud": False}


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    impersonated_org_id: uuid.UUID | None


def issue_token(
    settings: Settings,
    user_id: uuid.UUID,
    *,
    ttl_seconds: int | None = None,
    impersonated_org_id: uuid.UUID | None = None,
) -> tuple[str, int]:
    ttl = ttl_seconds or settings.jwt_ttl_seconds
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
    }
    if impersonated_org_id is not None:
        claims["imp_org"] = str(impersonated_org_id)
    key = settings.jwt_private_key if settings.jwt_algorithm == "RS256" else settings.jwt_secret
    if key is None:
        raise RuntimeError("ORGBILL_JWT_PRIVATE_KEY is required to issue RS256 tokens")
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm), ttl


def decode_token(settings: Settings, token: str) -> TokenClaims:
    key = settings.jwt_public_key if settings.jwt_algorithm == "RS256" else settings.jwt_secret
    try:
        # Only the configured algorithm is accepted: "none" and algorithm confusion fail here.
        claims = jwt.decode(token, key, algorithms=[settings.jwt_algorithm], options=_REQUIRED)
        user_id = uuid.UUID(claims["sub"])
        imp = claims.get("imp_org")
        impersonated = uuid.UUID(imp) if imp is not None else None
    except (JWTError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise Unauthorized("Invalid or expired token") from exc
    return TokenClaims(user_id=user_id, impersonated_org_id=impersonated)
