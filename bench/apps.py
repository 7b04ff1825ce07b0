"""The reference apps orgbill is measured against (uvicorn factories)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stripe
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from orgbill.db import normalize_database_url
from orgbill.models import Organization, StripeEvent


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


def stripe_floor() -> FastAPI:
    """The Stripe webhook floor: verify the signature with the stripe SDK on the raw body, then
    insert the event into a `stripe_event` inbox table (the same migrated table orgbill uses)
    in one transaction, committed before the 200. No ordering, no apply, no middleware: what
    any correct receiver must at least spend. Its pool holds the 32 requests in flight."""
    url = normalize_database_url(os.environ["BENCH_DATABASE_URL"])
    schema = os.environ.get("BENCH_DATABASE_SCHEMA")
    secret = os.environ["BENCH_STRIPE_SECRET"]
    connect_args = {"server_settings": {"search_path": schema}} if schema else {}
    engine = create_async_engine(url, connect_args=connect_args, pool_size=32, max_overflow=0)
    inbox = StripeEvent.__table__
    app = FastAPI()

    @app.post("/api/v1/webhooks/stripe")
    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            stripe.WebhookSignature.verify_header(
                body, request.headers.get("stripe-signature", ""), secret, tolerance=300
            )
        except stripe.SignatureVerificationError:
            return Response(status_code=400)
        event = json.loads(body)
        async with engine.begin() as conn:
            await conn.execute(
                insert(inbox).values(
                    id=uuid.uuid4(),
                    stripe_event_id=event["id"],
                    type=event["type"],
                    api_version=event.get("api_version"),
                    object_id=event["data"]["object"].get("id"),
                    stripe_customer_id=event["data"]["object"].get("customer"),
                    event_created_at=datetime.fromtimestamp(event["created"], UTC),
                    payload=event,
                    status="processed",
                    attempts=1,
                    created_at=datetime.now(UTC),
                )
            )
        return Response(b'{"received":true}', media_type="application/json")

    return app
