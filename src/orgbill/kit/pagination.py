"""Keyset pagination: ``?limit=&cursor=`` → ``{data, next_cursor}``.

A cursor is opaque and signed: base64url of the sort-key values of the page's last row
(the columns the query sorts by: ``created_at`` and a unique tie-breaker) plus an HMAC of
them under a server secret. An edited, truncated or foreign cursor fails the signature and is
400 ``bad_request``; nothing a client sends is ever compared with a column unverified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from orgbill.errors import BadRequest
from orgbill.kit.time import as_utc
from orgbill.kit.types import check_timestamp

T = TypeVar("T")
_MAC_BYTES = 16  # 128-bit tag: forging one is out of reach
_MAX_CURSOR_CHARS = 200
_KEY_CONTEXT = b"orgbill.pagination.cursor.v1"

CursorKey = tuple[datetime, uuid.UUID]


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


class InvalidCursor(BadRequest):
    message = "Invalid cursor"


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class CursorCodec:
    """Encodes and verifies cursors of (created_at, id) sort keys."""

    key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> CursorCodec:
        # A key of its own, derived from the server secret: a cursor's tag is never also
        # valid as anything else the secret signs (API key hashes).
        return cls(hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest())

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self.key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, created_at: datetime, row_id: uuid.UUID) -> str:
        payload = json.dumps([as_utc(created_at).isoformat(), str(row_id)], separators=(",", ":"))
        payload = payload.encode()
        return f"{_b64encode(payload)}.{_b64encode(self._tag(payload))}"

    def decode(self, cursor: str) -> CursorKey:
        try:
            payload_text, tag_text = cursor.split(".")
            payload, tag = _b64decode(payload_text), _b64decode(tag_text)
        except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
            raise InvalidCursor() from exc
        if not hmac.compare_digest(tag, self._tag(payload)):
            raise InvalidCursor("Invalid cursor: it was not issued by this server or was altered")
        try:
            created_text, id_text = json.loads(payload)
            created_at = check_timestamp(datetime.fromisoformat(created_text))
            return created_at, uuid.UUID(id_text)
        except (ValueError, TypeError) as exc:
            # Signed by us yet unreadable: only an older cursor format gets here.
            raise InvalidCursor() from exc


@dataclass(frozen=True, slots=True)
class Keyset:
    """The columns a list sorts by, newest first: a timestamp and a unique tie-breaker. The
    repository's query and the cursor after its last row both come from this one pair."""

    created: InstrumentedAttribute[Any]
    tiebreak: InstrumentedAttribute[Any]

    def key_of(self, row: Any) -> CursorKey:
        return getattr(row, self.created.key), getattr(row, self.tiebreak.key)


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    cursor: CursorKey | None
    codec: CursorCodec


def cursor_codec_for(request: Request) -> CursorCodec:
    codec: CursorCodec | None = getattr(request.app.state, "cursor_codec", None)
    if codec is None:
        settings = request.app.state.settings
        codec = CursorCodec.from_secret(settings.cursor_secret or settings.api_key_secret)
        request.app.state.cursor_codec = codec
    return codec


async def page_params(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=_MAX_CURSOR_CHARS)] = None,
) -> PageParams:
    codec = cursor_codec_for(request)
    return PageParams(limit=limit, cursor=codec.decode(cursor) if cursor else None, codec=codec)


def paginate_statement(stmt: Select[Any], params: PageParams, keyset: Keyset) -> Select[Any]:
    """Newest first; fetch one extra row to know whether another page exists."""
    created_col, id_col = keyset.created, keyset.tiebreak
    if params.cursor is not None:
        created_at, row_id = params.cursor
        stmt = stmt.where(
            or_(created_col < created_at, and_(created_col == created_at, id_col < row_id))
        )
    return stmt.order_by(created_col.desc(), id_col.desc()).limit(params.limit + 1)


def build_page(rows: list[Any], params: PageParams, keyset: Keyset) -> tuple[list[Any], str | None]:
    """The page and the cursor after it, read from the same columns the query sorted by."""
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        return rows, params.codec.encode(*keyset.key_of(rows[-1]))
    return rows, None
