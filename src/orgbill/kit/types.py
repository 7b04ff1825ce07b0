"""The input types every request schema uses, so a hostile value is refused (422) in one place
instead of reaching a database driver or a serialiser that fails on it (a 5xx).

- `Text` / `text(...)`: no NUL bytes (PostgreSQL refuses them in text and JSONB) and no lone
  surrogates (`json.loads` accepts `"\\udfff"`, which no UTF-8 encoder can write). Every
  request schema also applies this to every string in every field (`clean_text_within`), so
  a field typed plainly `str` cannot let one through.
- `FreeJson`: a free-form JSON object (`preferences`, `partner_configuration`, `metadata`):
  at most 32 levels deep, at most 16 KiB serialised, every string `Text`, every number finite
  and every integer within 64 bits.
- `IdempotencyKey`: a client's key (1-255 characters); the forms orgbill's own keys take
  (`system_key`) are refused.
- `Timestamp`: timezone-aware, years 1970-9999 once converted to UTC (returned in UTC).
- `Int64`: a strict integer that fits a signed 64-bit column.
- `HttpUrlText` / `http_url(...)`: a validated http(s) URL, kept exactly as sent (no trailing slash added).
- `OutboundHttpUrlText`: an `HttpUrlText` orgbill's own server will call (webhook endpoints),
  which may not name a link-local address.
"""

from __future__ import annotations

import ipaddress
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, AnyHttpUrl, Field, StringConstraints, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from orgbill.kit.client_ip import unmapped

MAX_JSON_DEPTH = 32
MAX_FREE_JSON_BYTES = 16 * 1024
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MIN_YEAR = 1970
MAX_YEAR = 9999
MAX_URL_LENGTH = 2048


def clean_text(value: str) -> str:
    """Refuse what no database column or UTF-8 writer can hold; the value is kept as sent."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must not contain lone surrogate code points") from None
    return value


Text = Annotated[str, AfterValidator(clean_text)]


def clean_text_within(value: Any) -> Any:
    """`clean_text` on every string in a parsed value, at any depth of lists and dicts (keys
    too): what request schemas apply to every field (kit/schemas.py), whatever its type."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            clean_text(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def text(
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    strip: bool = False,
) -> Any:
    """`Text` with length (and optionally pattern) constraints, kept exactly as sent (the
    contract: a stored string comes back as sent). With a `min_length`, a value of only
    whitespace is refused too. `strip`: for what is never shown back (a password)."""
    return Annotated[
        str,
        StringConstraints(
            min_length=min_length, max_length=max_length, pattern=pattern, strip_whitespace=strip
        ),
        AfterValidator(clean_text),
        *((AfterValidator(_not_blank),) if min_length else ()),
    ]


# The idempotency keys orgbill writes itself are "<kind>:<ref>", in the same unique (org, key)
# as the keys clients send: a client key of that form could take one first and silently
# suppress the entry orgbill meant to write (an expiry, a month's grant, a purchase, a commit).
SYSTEM_KEY_KINDS = frozenset({"monthly-credits", "expiry", "checkout", "reservation"})


def system_key(kind: str, ref: object) -> str:
    """The idempotency key of an entry orgbill writes itself (no client can send one)."""
    if kind not in SYSTEM_KEY_KINDS:
        raise ValueError(f"{kind!r} is not a system key kind")
    return f"{kind}:{ref}"


def check_client_key(value: str) -> str:
    kind, colon, _ = value.partition(":")
    if colon and kind in SYSTEM_KEY_KINDS:
        raise ValueError(f"idempotency keys starting with {kind + ':'!r} are reserved")
    return value


IdempotencyKey = Annotated[text(min_length=1, max_length=255), AfterValidator(check_client_key)]


def _check_json_value(value: Any) -> None:
    """Walks without recursion, so depth is checked before anything deep is serialised."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise ValueError("JSON object keys must be strings")
                    clean_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            clean_text(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise ValueError("JSON integers must fit in 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("JSON numbers must be finite")
        else:
            raise ValueError(f"unsupported JSON value of type {type(item).__name__}")


def check_free_json(value: dict[str, Any]) -> dict[str, Any]:
    _check_json_value(value)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_FREE_JSON_BYTES:
        raise ValueError(f"JSON object is {size} bytes; at most {MAX_FREE_JSON_BYTES} are kept")
    return value


FreeJson = Annotated[dict[str, Any], AfterValidator(check_free_json)]


def check_timestamp(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps need a timezone (use Z for UTC)")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp must fall within years {MIN_YEAR}-{MAX_YEAR} UTC") from None
    if not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"timestamp must fall within years {MIN_YEAR}-{MAX_YEAR} UTC")
    return utc


Timestamp = Annotated[datetime, AfterValidator(check_timestamp)]

Int64 = Annotated[int, Field(strict=True, ge=INT64_MIN, le=INT64_MAX)]

_http_url = TypeAdapter(AnyHttpUrl)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def check_http_url(value: str) -> str:
    # The URL parser silently drops tabs and newlines and fixes up other oddities; what is
    # stored must be what was sent, so such characters are refused rather than repaired.
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("URL must not contain whitespace or control characters")
    try:
        checked = _http_url.validate_python(value)
    except PydanticValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid URL") if exc.errors() else "invalid URL"
        raise ValueError(f"not a valid http(s) URL: {reason}") from None
    # The check above repairs what it reads (`http:/host`, a backslash read as a slash); the
    # URL is stored and used as sent, so it must name the same origin to the client that
    # will call it (httpx), or `https://a.example\@b.example/` passes as a.example and is
    # sent to b.example.
    ambiguous = "URL is ambiguous: write it with its host after '//' and no backslash"
    if "\\" in value:
        raise ValueError(ambiguous)
    try:
        sent = httpx.URL(value)
    except httpx.InvalidURL:
        raise ValueError("not a valid http(s) URL") from None
    sent_origin = (
        sent.scheme,
        sent.raw_host.decode("ascii"),
        sent.port or _DEFAULT_PORTS.get(sent.scheme),
    )
    checked_origin = (checked.scheme, (checked.host or "").strip("[]"), checked.port)
    if not sent.raw_host or sent_origin != checked_origin:
        raise ValueError(ambiguous)
    try:
        # httpx.URL() keeps an ACE host as given, but building a request decodes it: a label
        # valid only under IDNA 2003 (`xn--ls8h.la`) fails there with idna's ValueError, and
        # a URL no request can be built for would never be delivered.
        httpx.Request("POST", sent)
    except (httpx.InvalidURL, ValueError):
        raise ValueError("not a valid http(s) URL: its host cannot be encoded") from None
    return value


def http_url(max_length: int = MAX_URL_LENGTH) -> Any:
    """A validated http(s) URL of at most `max_length` characters, kept as sent."""
    return Annotated[
        str,
        StringConstraints(min_length=1, max_length=max_length),
        AfterValidator(clean_text),
        AfterValidator(check_http_url),
        Field(json_schema_extra={"format": "uri"}),
    ]


HttpUrlText = http_url()


def check_outbound_host(value: str) -> str:
    """Refuses a link-local IP literal (IPv4 169.254.0.0/16, IPv6 fe80::/10, either written
    IPv4-mapped) in a URL orgbill's server itself calls: 169.254.169.254 is every major
    cloud's instance metadata service, never a legitimate receiver. Loopback and private
    ranges stay allowed (local receivers, a receiver inside the same network). A host name
    is not resolved here: one resolving to link-local is not caught (README, "URLs")."""
    host = httpx.URL(value).raw_host.decode("ascii")  # check_http_url accepted it already
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return value  # a name, not an IP literal
    if unmapped(address).is_link_local:
        raise ValueError("URL must not name a link-local address (169.254.0.0/16, fe80::/10)")
    return value


# After `check_http_url` (the annotations of HttpUrlText run first).
OutboundHttpUrlText = Annotated[HttpUrlText, AfterValidator(check_outbound_host)]
