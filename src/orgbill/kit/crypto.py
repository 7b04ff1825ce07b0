"""API key material and keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

API_KEY_PREFIX = "ob_"
_KEY_RANDOM_BYTES = 32  # 256 bits of randomness; the contract asks for at least 160
_VISIBLE_CHARS = 8


@dataclass(frozen=True, slots=True)
class NewApiKey:
    plaintext: str
    prefix: str
    key_hash: str


def hash_api_key(plaintext: str, secret: str) -> str:
    """HMAC-SHA256: a stolen database alone cannot confirm a guessed key."""
    return hmac.new(secret.encode(), plaintext.encode(), hashlib.sha256).hexdigest()


def generate_api_key(secret: str) -> NewApiKey:
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(_KEY_RANDOM_BYTES)
    return NewApiKey(
        plaintext=plaintext,
        prefix=plaintext[: len(API_KEY_PREFIX) + _VISIBLE_CHARS],
        key_hash=hash_api_key(plaintext, secret),
    )


def looks_like_api_key(value: str) -> bool:
    return value.startswith(API_KEY_PREFIX) and 20 <= len(value) <= 128


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
