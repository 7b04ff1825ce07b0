"""ULIDs (request ids)."""

from __future__ import annotations

import base64
import os
import time

# RFC 4648 base32 alphabet -> Crockford's, so the C encoder does the per-request work.
_TO_CROCKFORD = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def new_ulid() -> str:
    """26-character Crockford base32 ULID: 48-bit ms timestamp + 80 random bits."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    # 130 bits of output (26 x 5) from a 128-bit value: left-align it in 17 bytes so the
    # encoder's first 26 groups of five bits are exactly the ULID's.
    encoded = base64.b32encode((value << 6).to_bytes(17, "big"))[:26]
    return encoded.decode("ascii").translate(_TO_CROCKFORD)
