"""Endpoint secrets and Standard Webhooks signatures.

A secret is `whsec_` + base64 of 32 bytes derived as HMAC-SHA256(key, nonce), where the key
comes from ORGBILL_API_KEY_SECRET and the nonce (random, per endpoint) is what the database
holds: a dump alone cannot sign, and the secret is never stored or logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
_NONCE_BYTES = 24
_KEY_CONTEXT = b"orgbill.webhooks_out.endpoint_secret.v1"


def new_nonce() -> str:
    return secrets.token_urlsafe(_NONCE_BYTES)


def endpoint_secret(server_secret: str, nonce: str) -> str:
    key = hmac.new(server_secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()
    raw = hmac.new(key, nonce.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def signed_headers(secret: str, message_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers (the `standardwebhooks` library signs)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body),
        "content-type": "application/json",
    }
