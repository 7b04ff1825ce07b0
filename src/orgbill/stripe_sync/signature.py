"""Stripe-Signature verification on the raw request bytes.

Stripe signs `f"{t}.{raw body}"` with HMAC-SHA256 under the endpoint secret and sends
`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` (several v1 during a secret roll).
Verified here on bytes, so no re-serialisation can change what was signed.
"""

from __future__ import annotations

import hashlib
import hmac
import time

DEFAULT_TOLERANCE_SECONDS = 300
_SCHEME = "v1"
_MAX_TIMESTAMP_DIGITS = 12


class InvalidSignature(ValueError):
    """Missing, malformed, wrong or stale: the message says which, never the secret."""


def compute_signature(secret: str, timestamp: int, payload: bytes) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    """What Stripe would send for `payload` (tests and the bench sign with this)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},{_SCHEME}={compute_signature(secret, timestamp, payload)}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            # ASCII digits of a plausible length only: int() also takes other scripts' digits,
            # and a huge value overflows the float comparison with the clock below.
            if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
                raise InvalidSignature("Stripe-Signature has a malformed timestamp")
            timestamp = int(value)
        elif key == _SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidSignature("Stripe-Signature lacks a timestamp or a v1 signature")
    return timestamp, signatures


def verify(
    payload: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    if not header:
        raise InvalidSignature("Missing Stripe-Signature header")
    timestamp, signatures = _parse(header)
    expected = compute_signature(secret, timestamp, payload)
    # Compare against every candidate so timing does not reveal which one (if any) matched.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise InvalidSignature("Stripe-Signature does not match the body")
    current = time.time() if now is None else now
    # Stripe checks only the past; a far-future timestamp is as suspicious as a stale one.
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature("Stripe-Signature timestamp is outside the tolerance")
