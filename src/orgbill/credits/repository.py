"""SQL for credits: the balance row (the org's credit lock), grants and the ledger. Every
statement is scoped to one org."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.credits.ledger import GrantState
from orgbill.entitlements.repository import BalanceState
from orgbill.kit.pagination import Keyset, PageParams, paginate_statement
from orgbill.kit.sql import CompiledOnce, bound_columns
from orgbill.kit.tenancy import org_select, org_update
from orgbill.models import CreditBalance, CreditEntryKind, CreditGrant, CreditLedgerEntry

__all__ = ["BalanceState", "GrantState"]

_BALANCE_COLUMNS = (
    CreditBalance.balance,
    CreditBalance.monthly_granted_for,
    CreditBalance.next_expiry_at,
)
_GRANT_COLUMNS = (
    CreditGrant.id,
    CreditGrant.kind,
    CreditGrant.amount,
    CreditGrant.remaining,
    CreditGrant.expires_at,
    CreditGrant.created_at,
)


def _balance_state(row: Any) -> BalanceState:
    return BalanceState(
        balance=row.balance,
        monthly_granted_for=row.monthly_granted_for,
        next_expiry_at=row.next_expiry_at,
    )


LEDGER_KEYSET = Keyset(CreditLedgerEntry.created_at, CreditLedgerEntry.id)


async def get_balance(session: AsyncSession, org_id: uuid.UUID) -> BalanceState | None:
    stmt = org_select(CreditBalance, org_id, *_BALANCE_COLUMNS)
    row = (await session.execute(stmt)).first()
    return _balance_state(row) if row else None


_BALANCES = CreditBalance.__table__
_CREATE_BALANCE = CompiledOnce(
    lambda insert: (
        insert(_BALANCES)
        .values(**bound_columns(_BALANCES, ["organization_id", "balance", "updated_at"]))
        .on_conflict_do_nothing(index_elements=["organization_id"])
    )
)


async def lock_balance(session: AsyncSession, org_id: uuid.UUID, now: datetime) -> BalanceState:
    """The one lock on an org's credits: creates the balance row if missing, then locks it (a
    row lock on PostgreSQL; SQLite's writers are already serialised by BEGIN IMMEDIATE).
    Every credit write takes it first, so grants, ledger and balance move together."""
    await session.execute(
        _CREATE_BALANCE(session),
        {"organization_id": org_id, "balance": Decimal(0), "updated_at": now},
    )
    stmt = org_select(CreditBalance, org_id, *_BALANCE_COLUMNS).with_for_update()
    return _balance_state((await session.execute(stmt)).one())


async def apply_balance(
    session: AsyncSession,
    org_id: uuid.UUID,
    delta: Decimal,
    now: datetime,
    *,
    monthly_granted_for: datetime | None,
    next_expiry_at: datetime | None,
    ceiling: Decimal | None = None,
) -> Decimal | None:
    """Moves the balance by a unit of work's net `delta` in one conditional statement: only if
    it stays at or above zero (and within `ceiling`). Returns the new balance, or None when
    refused."""
    new_balance = CreditBalance.balance + delta
    conditions = [new_balance >= 0]
    if ceiling is not None:
        conditions.append(new_balance <= ceiling)
    stmt = (
        org_update(CreditBalance, org_id)
        .where(*conditions)
        .values(
            balance=new_balance,
            monthly_granted_for=monthly_granted_for,
            next_expiry_at=next_expiry_at,
            updated_at=now,
        )
        .returning(CreditBalance.balance)
    )
    return await session.scalar(stmt)


# Grants


async def live_grants(session: AsyncSession, org_id: uuid.UUID) -> list[GrantState]:
    """Grants with credits left, expired or not (the caller decides at its `now`)."""
    stmt = org_select(CreditGrant, org_id, *_GRANT_COLUMNS).where(CreditGrant.remaining > 0)
    return [
        GrantState(
            id=row.id,
            kind=row.kind,
            amount=row.amount,
            remaining=row.remaining,
            expires_at=row.expires_at,
            created_at=row.created_at,
        )
        for row in await session.execute(stmt)
    ]


_GRANTS = CreditGrant.__table__
_INSERTED_GRANT_COLUMNS = [c.name for c in _GRANTS.columns if c.name != "expired_at"]  # at expiry
_INSERT_GRANT = CompiledOnce(
    lambda insert: (
        insert(_GRANTS)
        .values(**bound_columns(_GRANTS, _INSERTED_GRANT_COLUMNS))
        .on_conflict_do_nothing()
        .returning(_GRANTS.c.id)
    )
)


async def insert_grant(
    session: AsyncSession,
    org_id: uuid.UUID,
    grant: GrantState,
    *,
    allowance_month: datetime | None = None,
    stripe_checkout_session_id: str | None = None,
) -> bool:
    """False when the grant's month or checkout session already has one (the unique
    constraints decide, in the same statement)."""
    values = {
        "id": grant.id,
        "organization_id": org_id,
        "kind": grant.kind,
        "amount": grant.amount,
        "remaining": grant.remaining,
        "expires_at": grant.expires_at,
        "allowance_month": allowance_month,
        "stripe_checkout_session_id": stripe_checkout_session_id,
        "created_at": grant.created_at,
    }
    return await session.scalar(_INSERT_GRANT(session), values) is not None


async def draw_from_grant(
    session: AsyncSession, org_id: uuid.UUID, grant_id: uuid.UUID, amount: Decimal
) -> bool:
    """Takes `amount` only where the grant still holds it; False when it does not."""
    result = await session.execute(
        org_update(CreditGrant, org_id)
        .where(CreditGrant.id == grant_id, CreditGrant.remaining >= amount)
        .values(remaining=CreditGrant.remaining - amount)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def expire_grant(
    session: AsyncSession, org_id: uuid.UUID, grant_id: uuid.UUID, remaining: Decimal, now: datetime
) -> bool:
    """Writes off an expired grant's remainder exactly once: only while it still holds the
    `remaining` the caller is about to enter in the ledger, and is not yet written off."""
    result = await session.execute(
        org_update(CreditGrant, org_id)
        .where(
            CreditGrant.id == grant_id,
            CreditGrant.expired_at.is_(None),
            CreditGrant.expires_at <= now,
            CreditGrant.remaining == remaining,
        )
        .values(remaining=Decimal(0), expired_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def grant_for_checkout_session(
    session: AsyncSession, org_id: uuid.UUID, stripe_checkout_session_id: str
) -> uuid.UUID | None:
    return await session.scalar(
        org_select(CreditGrant, org_id, CreditGrant.id).where(
            CreditGrant.stripe_checkout_session_id == stripe_checkout_session_id
        )
    )


# Ledger


_ENTRIES = CreditLedgerEntry.__table__
_INSERT_ENTRY = CompiledOnce(
    lambda insert: (
        insert(_ENTRIES)
        .values(**bound_columns(_ENTRIES))
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
        .returning(_ENTRIES.c.id)
    )
)


async def insert_entry(
    session: AsyncSession,
    org_id: uuid.UUID,
    kind: CreditEntryKind | str,
    amount: Decimal,
    now: datetime,
    *,
    entry_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    reason: str | None = None,
    actor_user_id: uuid.UUID | None = None,
    grant_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Appends an entry; None when its idempotency key was already used (the unique
    constraint decides, in the same statement)."""
    values = {
        "id": entry_id or uuid.uuid4(),
        "organization_id": org_id,
        "kind": kind,
        "amount": amount,
        "idempotency_key": idempotency_key,
        "reason": reason,
        "actor_user_id": actor_user_id,
        "grant_id": grant_id,
        "created_at": now,
    }
    return await session.scalar(_INSERT_ENTRY(session), values)


async def get_entry_by_key(
    session: AsyncSession, org_id: uuid.UUID, idempotency_key: str
) -> CreditLedgerEntry | None:
    stmt = org_select(CreditLedgerEntry, org_id).where(
        CreditLedgerEntry.idempotency_key == idempotency_key
    )
    return await session.scalar(stmt)


async def list_entries(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams
) -> list[CreditLedgerEntry]:
    stmt = org_select(CreditLedgerEntry, org_id)
    stmt = paginate_statement(stmt, params, LEDGER_KEYSET)
    return list((await session.scalars(stmt)).all())
