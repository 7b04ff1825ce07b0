"""Stripe-Signature verification on the raw request bytes, by the SDK's own
`WebhookSignature.verify_header` (HMAC-SHA256 of `f"{t}.{body}"`, every `v1` candidate compared
in constant time, Stripe's 300 s tolerance). Verified on the bytes received, so no
re-serialisation can change what was signed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from typing import Any

import stripe

DEFAULT_TOLERANCE_SECONDS = 300
_VERIFIED_SCOPE_KEY = "orgbill.stripe_verified_body"


class InvalidSignature(ValueError):
    """Missing, malformed, wrong or stale: the message says which, never the secret."""


def signature_header(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    """What Stripe would send for `payload` (tests and the bench sign with this)."""
    return stripe.WebhookSignature.generate_signature_header(
        payload.decode("utf-8"), secret, timestamp
    )


def _signed_at(header: str) -> int | None:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    return None


def verify(
    payload: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    if not header:
        raise InvalidSignature("Missing Stripe-Signature header")
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(f"Stripe-Signature does not verify: {exc.user_message}") from exc
    except UnicodeDecodeError as exc:  # the SDK signs text: a body that is not UTF-8 never is
        raise InvalidSignature("Stripe-Signature does not verify: body is not UTF-8") from exc
    # The SDK checks only the past; a far-future timestamp (a skewed or forged clock) would
    # stretch the replay window, so it is refused as well.
    signed_at = _signed_at(header)
    if signed_at is not None and signed_at > time.time() + tolerance:
        raise InvalidSignature("Stripe-Signature does not verify: timestamp is in the future")


def mark_verified(scope: MutableMapping[str, Any], payload: bytes) -> None:
    """Records on the ASGI scope that `payload` is this request's body and verified (by the
    caller middleware, against the configured secret), so the route does not verify again."""
    scope[_VERIFIED_SCOPE_KEY] = payload


def verified_body(scope: Mapping[str, Any]) -> bytes | None:
    """The request's body if mark_verified recorded it, else None (verify it yourself)."""
    body: bytes | None = scope.get(_VERIFIED_SCOPE_KEY)
    return body
