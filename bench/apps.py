"""The two reference apps the profile read is measured against (uvicorn factories)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from orgbill.db import normalize_database_url
from orgbill.models import Organization


def bare_json() -> FastAPI:
    """No database, no auth: the same JSON body the profile route returns."""
    body: dict[str, Any] = json.loads(Path(os.environ["BENCH_JSON_FILE"]).read_text())
    app = FastAPI()

    @app.get("/profile/{org_id}")
    async def profile(org_id: str) -> dict[str, Any]:
        return body

    return app


def one_select() -> FastAPI:
    """One primary-key SELECT per request through SQLAlchemy as its documentation shows it
    (default engine, pool and session), on the same database."""
    url = normalize_database_url(os.environ["BENCH_DATABASE_URL"])
    schema = os.environ.get("BENCH_DATABASE_SCHEMA")
    connect_args = {"server_settings": {"search_path": schema}} if schema else {}
    engine = create_async_engine(url, connect_args=connect_args)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    app = FastAPI()

    @app.get("/profile/{org_id}")
    async def profile(org_id: uuid.UUID) -> Response:
        async with sessions() as session:
            org = await session.scalar(select(Organization).where(Organization.id == org_id))
        assert org is not None
        return Response(
            json.dumps({"id": str(org.id), "name": org.name, "slug": org.slug}),
            media_type="application/json",
        )

    return app


def webhook_receiver() -> FastAPI:
    """A fast webhook receiver: answers 204 at once and counts what it got (GET /count)."""
    app = FastAPI()
    received = {"count": 0}

    @app.post("/hook")
    async def hook() -> Response:
        received["count"] += 1
        return Response(status_code=204)

    @app.get("/count")
    async def count() -> dict[str, int]:
        return received

    return app
