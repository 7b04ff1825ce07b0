"""Keyset pagination: ``?limit=&cursor=`` → ``{data, next_cursor}``."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from orgbill.errors import BadRequest

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    cursor: tuple[datetime, uuid.UUID] | None


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"==="))
        return datetime.fromisoformat(raw[0]), uuid.UUID(raw[1])
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise BadRequest("Invalid cursor") from exc


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def page_params(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=_decode_cursor(cursor) if cursor else None)


def paginate_statement(
    stmt: Select[Any],
    params: PageParams,
    created_col: InstrumentedAttribute[Any],
    id_col: InstrumentedAttribute[Any],
) -> Select[Any]:
    """Newest first; fetch one extra row to know whether another page exists."""
    if params.cursor is not None:
        created_at, row_id = params.cursor
        stmt = stmt.where(
            or_(created_col < created_at, and_(created_col == created_at, id_col < row_id))
        )
    return stmt.order_by(created_col.desc(), id_col.desc()).limit(params.limit + 1)


def build_page(rows: list[Any], params: PageParams) -> tuple[list[Any], str | None]:
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        last = rows[-1]
        return rows, encode_cursor(last.created_at, last.id)
    return rows, None
