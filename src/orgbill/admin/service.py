"""Superadmin actions. Every change is written to the audit log in the same transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.admin import repository, schemas
from orgbill.audit import repository as audit
from orgbill.auth.jwt import issue_token
from orgbill.auth.principal import UserPrincipal
from orgbill.config import Settings
from orgbill.entitlements import service as entitlements
from orgbill.entitlements.resolver import ContractInput, PlanIdentity, contract_active
from orgbill.errors import BadRequest, NotFound
from orgbill.kit.changes import assign_changes
from orgbill.kit.time import utcnow
from orgbill.models import EnterpriseContract, Organization, OrganizationStatus
from orgbill.organizations import schemas as org_schemas
from orgbill.organizations import service as org_service
from orgbill.plans.store import CatalogStore
from orgbill.webhooks_out import outbox
from orgbill.webhooks_out.events import EventType


async def get_live_org(
    session: AsyncSession, org_id: uuid.UUID, *, lock: bool = False
) -> Organization:
    """`lock`: for a change, which holds the org's row until the transaction ends."""
    find = repository.lock_organization if lock else repository.get_organization
    org = await find(session, org_id)
    if org is None or org.status == OrganizationStatus.DELETED:
        raise NotFound("Organization not found")
    return org


async def impersonate(
    session: AsyncSession, admin: UserPrincipal, org_id: uuid.UUID, settings: Settings
) -> schemas.ImpersonationToken:
    await get_live_org(session, org_id)
    token, ttl = issue_token(
        settings,
        admin.user.id,
        ttl_seconds=settings.impersonation_ttl_seconds,
        impersonated_org_id=org_id,
    )
    await audit.record(
        session,
        actor_user_id=admin.user.id,
        action="organization.impersonate",
        organization_id=org_id,
        details={"expires_in": ttl},
    )
    return schemas.ImpersonationToken(access_token=token, expires_in=ttl, org_id=org_id)


async def _plan_now(session: AsyncSession, org: Organization, store: CatalogStore) -> PlanIdentity:
    """The org's plan as a plan_changed announcement compares it."""
    return (await entitlements.effective_plan(session, org, store, utcnow())).identity


async def update_organization(
    session: AsyncSession,
    admin: UserPrincipal,
    org_id: uuid.UUID,
    data: schemas.AdminOrganizationUpdate,
    store: CatalogStore,
) -> org_schemas.Organization:
    """Applies the change and emits its events: organization.suspended / reactivated for a
    status change, organization.updated for any other, plan_changed if the plan moved."""
    org = await get_live_org(session, org_id, lock=True)
    before = await _plan_now(session, org, store)
    requested = data.model_dump(exclude_unset=True)
    if "status" in requested and "is_suspended" in requested:
        wanted = OrganizationStatus.SUSPENDED if data.is_suspended else OrganizationStatus.ACTIVE
        if data.status != wanted:
            raise BadRequest("status and is_suspended disagree")
    if "is_suspended" in requested and data.is_suspended is not None:
        requested["status"] = "SUSPENDED" if data.is_suspended else "ACTIVE"
    requested.pop("is_suspended", None)
    nullable = {"rate_limit", "limit_overrides"}
    if "limit_overrides" in requested and requested["limit_overrides"] is None:
        requested["limit_overrides"] = {}
    for field, value in requested.items():
        if value is None and field not in nullable:
            raise BadRequest(f"{field} cannot be null")
    changes = assign_changes(org, requested)
    if changes:
        org.updated_at = utcnow()
        await session.flush()
        await audit.record(
            session,
            actor_user_id=admin.user.id,
            action="organization.update",
            organization_id=org.id,
            details={"changes": changes},
        )
    described = await org_service.describe_organization(session, org, store)
    if "status" in changes:
        suspended = changes["status"]["to"] == OrganizationStatus.SUSPENDED
        await org_service.emit_organization_event(
            session,
            EventType.ORGANIZATION_SUSPENDED if suspended else EventType.ORGANIZATION_REACTIVATED,
            described,
        )
    if set(changes) - {"status"}:
        await org_service.emit_organization_event(
            session, EventType.ORGANIZATION_UPDATED, described
        )
    if changes:
        await outbox.announce_plan(session, org.id, await _plan_now(session, org, store), before)
    return described


# Enterprise contracts


def contract_schema(contract: EnterpriseContract) -> schemas.EnterpriseContract:
    return schemas.EnterpriseContract(
        id=contract.id,
        organization_id=contract.organization_id,
        plan_code=contract.plan_code,
        starts_at=contract.starts_at,
        ends_at=contract.ends_at,
        overrides=dict(contract.overrides or {}),
        active=contract_active(
            ContractInput(starts_at=contract.starts_at, ends_at=contract.ends_at), utcnow()
        ),
        created_at=contract.created_at,
        updated_at=contract.updated_at,
    )


def _contract_state(contract: EnterpriseContract | None) -> dict[str, Any] | None:
    if contract is None:
        return None
    return {
        "plan_code": contract.plan_code,
        "starts_at": contract.starts_at.isoformat(),
        "ends_at": contract.ends_at.isoformat() if contract.ends_at else None,
        "overrides": dict(contract.overrides or {}),
    }


async def put_contract(
    session: AsyncSession,
    admin: UserPrincipal,
    org_id: uuid.UUID,
    data: schemas.EnterpriseContractPut,
    store: CatalogStore,
) -> EnterpriseContract:
    org = await get_live_org(session, org_id, lock=True)
    # The catalog as stored now (a sync on another instance shows on the next request).
    if data.plan_code not in (await store.live(session)).plans:
        raise BadRequest(f"Unknown plan '{data.plan_code}'")
    contract = await repository.get_contract(session, org_id)
    before = _contract_state(contract)
    plan_before = await _plan_now(session, org, store)
    now = utcnow()
    if contract is None:
        contract = EnterpriseContract(
            id=uuid.uuid4(),
            organization_id=org_id,
            created_by_user_id=admin.user.id,
            created_at=now,
        )
        session.add(contract)
    contract.plan_code = data.plan_code
    contract.starts_at = data.starts_at
    contract.ends_at = data.ends_at
    contract.overrides = dict(data.overrides)
    contract.updated_at = now
    await session.flush()
    await audit.record(
        session,
        actor_user_id=admin.user.id,
        action="enterprise_contract.put",
        organization_id=org_id,
        details={"from": before, "to": _contract_state(contract)},
    )
    await outbox.announce_plan(session, org_id, await _plan_now(session, org, store), plan_before)
    return contract


async def delete_contract(
    session: AsyncSession, admin: UserPrincipal, org_id: uuid.UUID, store: CatalogStore
) -> None:
    org = await get_live_org(session, org_id, lock=True)
    contract = await repository.get_contract(session, org_id)
    if contract is None:
        raise NotFound("This organization has no enterprise contract")
    before = _contract_state(contract)
    plan_before = await _plan_now(session, org, store)
    await repository.delete_contract(session, org_id)
    await audit.record(
        session,
        actor_user_id=admin.user.id,
        action="enterprise_contract.delete",
        organization_id=org_id,
        details={"from": before},
    )
    await outbox.announce_plan(session, org_id, await _plan_now(session, org, store), plan_before)
