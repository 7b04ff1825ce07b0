"""SQL for the credit ledger and its balance row. Every statement is scoped to one org."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.entitlements.repository import BalanceState
from orgbill.kit.pagination import Keyset, PageParams, paginate_statement
from orgbill.kit.sql import upsert_insert
from orgbill.models import CreditBalance, CreditEntryKind, CreditLedgerEntry

LEDGER_KEYSET = Keyset(CreditLedgerEntry.created_at, CreditLedgerEntry.id)


async def get_balance(session: AsyncSession, org_id: uuid.UUID) -> BalanceState | None:
    stmt = select(CreditBalance.balance, CreditBalance.monthly_granted_for).where(
        CreditBalance.organization_id == org_id
    )
    row = (await session.execute(stmt)).first()
    return BalanceState(row[0], row[1]) if row else None


async def lock_balance(session: AsyncSession, org_id: uuid.UUID, now: datetime) -> BalanceState:
    """Creates the balance row if missing, then locks it (a row lock on PostgreSQL; SQLite's
    writers are already serialised by BEGIN IMMEDIATE)."""
    await session.execute(
        upsert_insert(session, CreditBalance)
        .values(organization_id=org_id, balance=Decimal(0), updated_at=now)
        .on_conflict_do_nothing(index_elements=["organization_id"])
    )
    stmt = (
        select(CreditBalance.balance, CreditBalance.monthly_granted_for)
        .where(CreditBalance.organization_id == org_id)
        .with_for_update()
    )
    row = (await session.execute(stmt)).one()
    return BalanceState(row[0], row[1])


async def insert_entry(
    session: AsyncSession,
    org_id: uuid.UUID,
    kind: CreditEntryKind,
    amount: Decimal,
    now: datetime,
    *,
    idempotency_key: str | None = None,
    reason: str | None = None,
    actor_user_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Appends an entry; None when its idempotency key was already used (the unique
    constraint decides, in the same statement)."""
    stmt = (
        upsert_insert(session, CreditLedgerEntry)
        .values(
            id=uuid.uuid4(),
            organization_id=org_id,
            kind=kind,
            amount=amount,
            idempotency_key=idempotency_key,
            reason=reason,
            actor_user_id=actor_user_id,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
        .returning(CreditLedgerEntry.id)
    )
    return await session.scalar(stmt)


async def get_entry_by_key(
    session: AsyncSession, org_id: uuid.UUID, idempotency_key: str
) -> CreditLedgerEntry | None:
    stmt = select(CreditLedgerEntry).where(
        CreditLedgerEntry.organization_id == org_id,
        CreditLedgerEntry.idempotency_key == idempotency_key,
    )
    return await session.scalar(stmt)


async def credit_balance(
    session: AsyncSession,
    org_id: uuid.UUID,
    amount: Decimal,
    now: datetime,
    *,
    ceiling: Decimal | None,
) -> Decimal | None:
    """Adds `amount` in one atomic upsert, only if the balance stays within `ceiling`.
    Returns the new balance, or None when the ceiling refused it."""
    if ceiling is not None and amount > ceiling:
        return None
    insert = upsert_insert(session, CreditBalance).values(
        organization_id=org_id, balance=amount, updated_at=now
    )
    new_balance = CreditBalance.balance + insert.excluded.balance
    stmt = insert.on_conflict_do_update(
        index_elements=["organization_id"],
        set_={"balance": new_balance, "updated_at": insert.excluded.updated_at},
        where=(new_balance <= ceiling) if ceiling is not None else None,
    ).returning(CreditBalance.balance)
    return await session.scalar(stmt)


async def debit_balance(
    session: AsyncSession, org_id: uuid.UUID, amount: Decimal, now: datetime
) -> Decimal | None:
    """The one statement that keeps the balance from going below zero: it subtracts only
    where the balance covers the amount, atomically under the row lock the UPDATE takes.
    Returns the new balance, or None when it does not cover it."""
    stmt = (
        update(CreditBalance)
        .where(CreditBalance.organization_id == org_id, CreditBalance.balance >= amount)
        .values(balance=CreditBalance.balance - amount, updated_at=now)
        .returning(CreditBalance.balance)
    )
    return await session.scalar(stmt)


async def mark_monthly_granted(
    session: AsyncSession, org_id: uuid.UUID, period_start: datetime, now: datetime
) -> None:
    await session.execute(
        update(CreditBalance)
        .where(CreditBalance.organization_id == org_id)
        .values(monthly_granted_for=period_start, updated_at=now)
    )


async def list_entries(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams
) -> list[CreditLedgerEntry]:
    stmt = select(CreditLedgerEntry).where(CreditLedgerEntry.organization_id == org_id)
    stmt = paginate_statement(stmt, params, LEDGER_KEYSET)
    return list((await session.scalars(stmt)).all())
