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

from orgbill.config import Settings
from orgbill.db import Database
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
    """One primary-key SELECT through SQLAlchemy on the same database, per request."""
    settings = Settings(
        database_url=os.environ["BENCH_DATABASE_URL"],
        database_schema=os.environ.get("BENCH_DATABASE_SCHEMA") or None,
    )
    database = Database.from_settings(settings)
    app = FastAPI()

    @app.get("/profile/{org_id}")
    async def profile(org_id: uuid.UUID) -> Response:
        async with database.reader() as session:
            org = await session.scalar(select(Organization).where(Organization.id == org_id))
        assert org is not None
        return Response(
            json.dumps({"id": str(org.id), "name": org.name, "slug": org.slug}),
            media_type="application/json",
        )

    return app
