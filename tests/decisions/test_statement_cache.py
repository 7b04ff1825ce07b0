"""Hot writes send only statements SQLAlchemy compiled once: its dialect INSERT … ON CONFLICT
constructs have no cache key and compile again on every execution (about a millisecond of
CPU each), and finding any other statement in its cache walks the whole statement, so the
hot paths send them as `kit.sql.CompiledOnce` text instead."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import TextClause, bindparam, event, select, update
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.sql.selectable import TextualSelect

from orgbill.kit.sql import CompiledOnce
from orgbill.models import Organization, OrganizationStatus
from tests.fixtures.factories import API, create_org
from tests.fixtures.stripe import deliver, new_id, subscription_event


@dataclass(frozen=True, slots=True)
class Sent:
    sql: str
    text: bool  # SQL text (what `CompiledOnce` sends), not a Core or ORM construct
    cache_key: bool  # SQLAlchemy could find it in its compiled cache


@contextmanager
def sent_statements(app: FastAPI) -> Iterator[list[Sent]]:
    """Each compiled statement the app sends (not BEGIN, COMMIT and the like)."""
    sent: list[Sent] = []

    def record(_c: Any, _cur: Any, sql: str, _p: Any, context: Any, _many: bool) -> None:
        if context.compiled is None:
            return
        sent.append(
            Sent(
                sql=sql.split(" (")[0],
                text=isinstance(context.compiled.statement, TextClause | TextualSelect),
                cache_key=context.cache_hit is not CacheStats.NO_CACHE_KEY,
            )
        )

    database = app.state.database
    engines = (database.engine.sync_engine, database.read_engine.sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def _post(client: httpx.AsyncClient, path: str, headers: dict[str, str], **body: Any) -> Any:
    response = await client.post(f"{API}{path}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_reserve_commit_and_a_usage_event_send_only_cached_statements(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    headers = org.key_headers
    with sent_statements(app) as sent:
        for _ in range(2):
            held = await _post(client, "/check", headers, metric="turns", quantity=2, reserve=True)
            reservation = held["reservation"]["id"]
            await _post(client, f"/reservations/{reservation}/commit", headers, quantity=1)
            await _post(
                client, "/usage/events", headers, events=[{"metric": "turns", "quantity": 1}]
            )
    assert [statement.sql for statement in sent if not statement.cache_key] == []
    usage = (await client.get(f"{API}/usage", headers=headers)).json()
    assert usage["turns"]["current"] == 4  # two commits of 1 and two events of 1


async def test_a_stripe_subscription_change_and_a_settlement_send_only_sql_text(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    sub, customer, created = new_id("sub"), new_id("cus"), 1_800_000_000
    first = subscription_event(
        "customer.subscription.created",
        sub_id=sub,
        customer=customer,
        status="active",
        created=created,
        org_id=org.id,
    )
    assert (await deliver(client, first)).status_code == 200
    with sent_statements(app) as sent:
        # Pro → free (unpaid does not entitle) → pro: each change moves the announcement.
        for step, status in enumerate(("unpaid", "active"), start=1):
            changed = subscription_event(
                "customer.subscription.updated",
                sub_id=sub,
                customer=customer,
                status=status,
                created=created + step,
                org_id=org.id,
            )
            response = await deliver(client, changed)
            assert response.status_code == 200, response.text
        held = await _post(client, "/check", org.key_headers, metric="turns", reserve=True)
        reservation = held["reservation"]["id"]
        await _post(client, f"/reservations/{reservation}/release", org.key_headers)
    core = [statement.sql for statement in sent if not statement.text]
    # The two requests' caller lookups (it loads the organization entity) stay Core, and so
    # may the key's last-used stamp (written at most once a minute); nothing else.
    lookups = [sql for sql in core if sql.startswith("SELECT organization.name, ")]
    stamps = [sql for sql in core if sql.startswith("UPDATE api_key SET last_used_at")]
    assert len(lookups) == 2 and len(lookups) + len(stamps) == len(core), core
    moves = [s.sql for s in sent if s.sql.startswith("UPDATE webhook_plan_announcement")]
    assert len(moves) == 2
    status = await client.get(f"{API}/billing/subscription", headers=org.key_headers)
    assert status.json()["status"] == "active"


async def test_compiled_once_keeps_literals_and_row_counts_and_refuses_what_text_cannot_keep(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    table = Organization.__table__
    renamed = CompiledOnce.of(
        update(table)
        .where(
            table.c.id == _bind("org_id", table.c.id.type),
            table.c.status == OrganizationStatus.ACTIVE.value,
        )
        .values(
            name=_bind("name", table.c.name.type), updated_at=_bind("now", table.c.updated_at.type)
        )
    )
    named = CompiledOnce.of(
        select(table.c.name.label("org_name")).where(table.c.id == _bind("org_id", table.c.id.type))
    )
    async with app.state.database.session(writes=True) as session:
        result = await session.execute(
            renamed(session),
            {"org_id": uuid.UUID(org.id), "name": "renamed", "now": datetime.now(UTC)},
        )
        assert result.rowcount == 1
        row = (await session.execute(named(session), {"org_id": uuid.UUID(org.id)})).one()
        assert row.org_name == "renamed"
        listed = CompiledOnce.of(
            select(table.c.id).where(table.c.id.in_(_bind("ids", table.c.id.type, expanding=True)))
        )
        with pytest.raises(ValueError, match="IN list"):
            listed(session)
        defaulted = CompiledOnce.of(update(table).values(name=_bind("name", table.c.name.type)))
        with pytest.raises(ValueError, match="every column with a default"):
            defaulted(session)
        twice = CompiledOnce.of(select(table.c.name, table.c.name.label("name")))
        with pytest.raises(ValueError, match="distinct result column names"):
            twice(session)
        retyped = CompiledOnce.of(
            select(table.c.id).where(
                table.c.name == _bind("value", table.c.name.type),
                table.c.created_at == _bind("value", table.c.created_at.type),
            )
        )
        with pytest.raises(ValueError, match="bound with two types"):
            retyped(session)
        await session.rollback()


def _bind(name: str, type_: Any, *, expanding: bool = False) -> Any:
    return bindparam(name, type_=type_, expanding=expanding)
