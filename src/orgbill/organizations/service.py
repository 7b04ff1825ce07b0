"""Rules for organizations, members and API keys."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth.permissions import Perm, allows
from orgbill.auth.principal import (
    ApiKeyPrincipal,
    ApiKeyRef,
    OrgAccess,
    Principal,
    UserPrincipal,
)
from orgbill.config import Settings
from orgbill.credits import service as credits
from orgbill.entitlements import service as entitlements
from orgbill.entitlements.repository import PlanInputs
from orgbill.entitlements.resolver import EffectivePlan, subscription_plan
from orgbill.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    Unauthorized,
)
from orgbill.kit.changes import assign_changes
from orgbill.kit.crypto import generate_api_key
from orgbill.kit.pagination import PageParams, build_page
from orgbill.kit.time import utcnow
from orgbill.models import (
    ApiKey,
    Membership,
    Organization,
    OrganizationStatus,
    Role,
    Subscription,
    User,
)
from orgbill.organizations import repository, schemas
from orgbill.organizations.repository import RevokedKey
from orgbill.plans.catalog import PlanDef
from orgbill.plans.store import CatalogStore
from orgbill.webhooks_out import outbox
from orgbill.webhooks_out.events import EventType

_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


def _slugify(name: str) -> str:
    slug = _SLUG_STRIP.sub("-", name.lower()).strip("-")[:80]
    return slug if len(slug) >= 2 else f"org-{slug}".strip("-")


def organization_schema(
    org: Organization, plan: EffectivePlan, api_key_prefix: str | None
) -> schemas.Organization:
    return schemas.Organization(
        id=org.id,
        name=org.name,
        slug=org.slug,
        website=org.website,
        image_url=org.image_url,
        status=org.status,
        region_id=org.region_id,
        org_type=org.org_type,
        kyc_level=org.kyc_level,
        placement_group=org.placement_group,
        is_suspended=org.is_suspended,
        is_deleted=org.is_deleted,
        is_stripe_overdue=plan.is_stripe_overdue,
        is_active=org.status == OrganizationStatus.ACTIVE,
        plan=plan.plan.code,
        rate_limit=plan.limits.get_limit("api_rate_limit").to_json(),
        entitlements=list(org.entitlements or []),
        preferences=dict(org.preferences or {}),
        partner_configuration=dict(org.partner_configuration or {}),
        registerable=org.registerable,
        api_key_prefix=api_key_prefix,
        created_at=org.created_at,
        updated_at=org.updated_at,
    )


async def _key_prefix_for(session: AsyncSession, access: OrgAccess) -> str | None:
    key = access.api_key
    if key is not None:
        return key.prefix
    return await repository.newest_active_key_prefix(session, access.organization.id)


def organization_event_data(described: schemas.Organization) -> dict[str, object]:
    """An organization.* event's data: the organization object as the API returns it."""
    data: dict[str, object] = described.model_dump(mode="json")
    data["organization_id"] = data["id"]
    return data


async def emit_organization_event(
    session: AsyncSession, event_type: EventType, described: schemas.Organization
) -> None:
    await outbox.emit(session, event_type, described.id, organization_event_data(described))


def _api_key_event_data(key: ApiKey | ApiKeyRef | RevokedKey) -> dict[str, object]:
    # The key's id and prefix, never the key.
    return {
        "organization_id": str(key.organization_id),
        "id": str(key.id),
        "prefix": key.prefix,
        "name": key.name,
    }


async def revoke_keys(
    session: AsyncSession,
    org_id: uuid.UUID,
    now: datetime,
    *,
    key_id: uuid.UUID | None = None,
    name: str | None = None,
) -> int:
    """Every way a key stops working (its revocation, a regeneration, the org's deletion, a
    demo re-run) goes through here, so each revoked key that still worked is announced:
    api_key.revoked (an expired one had already stopped, and was announced by nothing)."""
    revoked = await repository.revoke_api_keys(session, org_id, now, key_id=key_id, name=name)
    for key in revoked:
        if not key.worked_until(now):
            continue
        await outbox.emit(
            session, EventType.API_KEY_REVOKED, key.organization_id, _api_key_event_data(key)
        )
    return len(revoked)


async def _emit_key_created(session: AsyncSession, key: ApiKey) -> None:
    await outbox.emit(
        session, EventType.API_KEY_CREATED, key.organization_id, _api_key_event_data(key)
    )


async def create_organization(
    session: AsyncSession, user: User, data: schemas.OrganizationCreate, store: CatalogStore
) -> tuple[Organization, schemas.Organization]:
    """The new organization and its API shape (also the organization.created event's data)."""
    now = utcnow()
    base_slug = data.slug or _slugify(data.name)
    # A requested slug must be free; a derived one gets a short suffix until it is.
    for attempt in range(5):
        slug = base_slug if attempt == 0 else f"{base_slug[:90]}-{secrets.token_hex(3)}"
        org = Organization(
            id=uuid.uuid4(),
            name=data.name,
            slug=slug,
            website=data.website,
            status=OrganizationStatus.ACTIVE,
            entitlements=[],
            preferences={},
            partner_configuration={},
            created_at=now,
            updated_at=now,
        )
        if await repository.insert_organization(session, org):
            break
        if data.slug:
            raise Conflict(f"Slug '{data.slug}' is already taken")
    else:
        raise Conflict("Could not find a free slug; pass one explicitly")
    session.add(
        Membership(organization_id=org.id, user_id=user.id, role=Role.OWNER, created_at=now)
    )
    await session.flush()
    described = await describe_organization(session, org, store)
    await emit_organization_event(session, EventType.ORGANIZATION_CREATED, described)
    return org, described


async def list_organizations(
    session: AsyncSession, principal: UserPrincipal, params: PageParams, store: CatalogStore
) -> tuple[list[schemas.Organization], str | None]:
    # A superadmin lists every organization; impersonating one, only that one (the token
    # acts for its organization alone).
    user_id = None if principal.user.is_superadmin else principal.user.id
    listed = await repository.list_user_organizations(
        session, user_id, params, only=principal.impersonated_org_id
    )
    page, cursor = build_page(
        [item.organization for item in listed], params, repository.ORGANIZATION_KEYSET
    )
    now = utcnow()
    data = []
    for item in listed[: len(page)]:
        catalog = await store.current(session, item.plan_inputs.catalog_revision)
        plan = entitlements.resolve_with(item.organization, item.plan_inputs, catalog, now)
        data.append(organization_schema(item.organization, plan, item.api_key_prefix))
    return data, cursor


async def get_organization(
    session: AsyncSession, access: OrgAccess, store: CatalogStore
) -> schemas.Organization:
    plan = await entitlements.plan_for_access(session, access, store)
    return organization_schema(access.organization, plan, await _key_prefix_for(session, access))


async def describe_organization(
    session: AsyncSession, org: Organization, store: CatalogStore
) -> schemas.Organization:
    """An organization as a user (not its own API key) sees it."""
    plan = await entitlements.effective_plan(session, org, store, utcnow())
    prefix = await repository.newest_active_key_prefix(session, org.id)
    return organization_schema(org, plan, prefix)


def plan_summary(plan: EffectivePlan) -> schemas.PlanSummary:
    count = plan.limits.count
    return schemas.PlanSummary(
        code=plan.plan.code,
        name=plan.plan.name,
        amount=plan.plan.amount,
        currency=plan.plan.currency,
        interval=plan.plan.interval,
        stripe_id=plan.plan.stripe_price_id,
        plan_source=plan.source,
        chunk_count=count("chunk_count"),
        dataset_count=count("dataset_count"),
        file_storage=count("file_storage"),
        message_count=count("message_count"),
        user_count=count("max_members"),
        limits=plan.limits.to_json(),
        features=list(plan.features),
        period_start=plan.period.start,
        period_end=plan.period.end,
    )


def subscription_summary(
    subscription: Subscription | None, plan: EffectivePlan, subscribed: PlanDef | None
) -> schemas.SubscriptionSummary | None:
    if subscription is None:
        return None
    summary = schemas.SubscriptionSummary.model_validate(subscription)
    summary = summary.model_copy(update={"plan": subscribed.code if subscribed else None})
    return with_plan_period(summary, plan)


ShownSubscription = TypeVar("ShownSubscription", bound=BaseModel)


def with_plan_period(shown: ShownSubscription, plan: EffectivePlan) -> ShownSubscription:
    """The subscription plan resolution used, as any response shows it (`current_period_*`):
    when the plan comes from it, in the period entitlements derived (a late renewal webhook
    has not moved the stored one on yet), so every response shows one period."""
    if plan.source != "stripe":
        return shown
    return shown.model_copy(
        update={"current_period_start": plan.period.start, "current_period_end": plan.period.end}
    )


async def current_subscription(
    session: AsyncSession, org_id: uuid.UUID, inputs: PlanInputs
) -> Subscription | None:
    """The full row of the subscription plan resolution used (inputs carry only its id)."""
    if inputs.subscription is None:
        return None
    return await repository.get_subscription(
        session, org_id, inputs.subscription.stripe_subscription_id
    )


async def get_composite(
    session: AsyncSession, access: OrgAccess, store: CatalogStore
) -> schemas.OrganizationComposite:
    # One set of inputs for plan and subscription, so the two parts always agree.
    plan = await entitlements.plan_for_access(session, access, store)
    inputs = access.plan_inputs
    assert inputs is not None  # plan_for_access loaded them
    organization = organization_schema(
        access.organization, plan, await _key_prefix_for(session, access)
    )
    subscription = await current_subscription(session, access.organization.id, inputs)
    subscribed = None
    if inputs.subscription is not None:
        catalog = await store.current(session, inputs.catalog_revision)
        subscribed = subscription_plan(inputs.subscription, catalog)
    return schemas.OrganizationComposite(
        organization=organization,
        plan=plan_summary(plan),
        subscription=subscription_summary(subscription, plan, subscribed),
    )


def profile_schema(
    org: Organization, plan: EffectivePlan, total_credits: Decimal
) -> schemas.OrganizationProfile:
    count = plan.limits.count
    return schemas.OrganizationProfile(
        id=org.id,
        name=org.name,
        slug=org.slug,
        website=org.website,
        status=org.status,
        total_credits=total_credits,
        region_id=org.region_id,
        plan_name=plan.plan.name,
        plan_source=plan.source,
        sub_status=plan.subscription_status,
        period_end=plan.period.end,
        max_concurrency=count("max_concurrency"),
        max_members=count("max_members"),
        max_agents=count("max_agents"),
        max_credits=count("max_credits"),
        api_rate_limit=count("api_rate_limit"),
        can_record_calls=plan.limits.flag("can_record_calls"),
        can_use_api=plan.limits.flag("can_use_api"),
        extra_credit_price=plan.limits.money("extra_credit_price"),
        limits={**plan.limits.to_json(), "features": list(plan.features)},
    )


async def get_profile(
    session: AsyncSession, access: OrgAccess, store: CatalogStore
) -> schemas.OrganizationProfile:
    now = utcnow()
    plan = await entitlements.plan_for_access(session, access, store, now)
    # The balance row came with the caller's identity (same round trip); reads never write,
    # so what is due (this month's credits, an expiry) shows before a credit write records it.
    total_credits = await credits.total_credits(session, access, plan, now)
    return profile_schema(access.organization, plan, total_credits)


async def update_organization(
    session: AsyncSession, access: OrgAccess, data: schemas.OrganizationUpdate, store: CatalogStore
) -> schemas.Organization:
    org = access.organization
    requested = data.model_dump(exclude_unset=True)
    if "name" in requested and data.name is None:
        raise BadRequest("name cannot be null")
    for mapping in ("preferences", "partner_configuration"):
        if mapping in requested:
            requested[mapping] = dict(requested[mapping] or {})
    # Only what differs is written and announced: a PATCH that changes nothing sends no
    # organization.updated and leaves updated_at as it was.
    changed = assign_changes(org, requested)
    if changed:
        org.updated_at = utcnow()
        await session.flush()
    described = await get_organization(session, access, store)
    if changed:
        await emit_organization_event(session, EventType.ORGANIZATION_UPDATED, described)
    return described


async def delete_organization(
    session: AsyncSession, access: OrgAccess, store: CatalogStore
) -> None:
    org = access.organization
    now = utcnow()
    org.status = OrganizationStatus.DELETED
    org.deleted_at = now
    org.updated_at = now
    await revoke_keys(session, org.id, now)
    await session.flush()
    described = await describe_organization(session, org, store)
    await emit_organization_event(session, EventType.ORGANIZATION_DELETED, described)


# Members


def member_schema(membership: Membership, user: User) -> schemas.Member:
    return schemas.Member(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=Role(membership.role),
        created_at=membership.created_at,
    )


async def list_members(
    session: AsyncSession, access: OrgAccess, params: PageParams
) -> tuple[list[schemas.Member], str | None]:
    rows = await repository.list_members(session, access.organization.id, params)
    page, cursor = build_page([m for m, _ in rows], params, repository.MEMBER_KEYSET)
    users = {m.user_id: u for m, u in rows}
    return [member_schema(m, users[m.user_id]) for m in page], cursor


def _require_owner_for(access: OrgAccess, *roles: str) -> None:
    # Only owners create, change or remove owners: an admin cannot promote past itself.
    if Role.OWNER in roles and not allows(access.role, Perm.OWNERS_WRITE):
        raise Forbidden("Only an owner can grant, change or remove the owner role")


async def add_member(
    session: AsyncSession, access: OrgAccess, data: schemas.MemberCreate, store: CatalogStore
) -> schemas.Member:
    org_id = access.organization.id
    _require_owner_for(access, data.role)
    user = await repository.find_user(session, user_id=data.user_id, email=data.email)
    if user is None:
        raise NotFound("User not found; they must register first")
    await repository.lock_organization(session, org_id)
    plan = await entitlements.plan_for_access(session, access, store)
    max_members = plan.limits.count("max_members")
    if max_members is not None and await repository.count_members(session, org_id) >= max_members:
        raise LimitExceeded(
            f"The {plan.plan.name} plan allows {max_members} members; upgrade to add more",
            details={"limit": "max_members", "value": max_members},
        )
    membership = Membership(
        organization_id=org_id, user_id=user.id, role=data.role, created_at=utcnow()
    )
    if not await repository.insert_membership(session, membership):
        raise Conflict("User is already a member of this organization")
    return member_schema(membership, user)


async def _last_owner_guard(
    session: AsyncSession, org_id: uuid.UUID, membership: Membership
) -> None:
    if membership.role == Role.OWNER and await repository.count_owners(session, org_id) <= 1:
        raise Conflict("An organization must keep at least one owner")


async def update_member(
    session: AsyncSession, access: OrgAccess, user_id: uuid.UUID, data: schemas.MemberUpdate
) -> schemas.Member:
    org_id = access.organization.id
    await repository.lock_organization(session, org_id)
    found = await repository.get_member(session, org_id, user_id)
    if found is None:
        raise NotFound("Member not found")
    membership, user = found
    _require_owner_for(access, membership.role, data.role)
    if membership.role != data.role:
        await _last_owner_guard(session, org_id, membership)
        membership.role = data.role
        await session.flush()
    return member_schema(membership, user)


async def remove_member(session: AsyncSession, access: OrgAccess, user_id: uuid.UUID) -> None:
    org_id = access.organization.id
    await repository.lock_organization(session, org_id)
    found = await repository.get_member(session, org_id, user_id)
    if found is None:
        raise NotFound("Member not found")
    membership, _ = found
    _require_owner_for(access, membership.role)
    await _last_owner_guard(session, org_id, membership)
    await repository.delete_membership(session, org_id, user_id)


# API keys


def api_key_schema(key: ApiKey) -> schemas.ApiKey:
    return schemas.ApiKey.model_validate(key)


async def list_api_keys(
    session: AsyncSession, access: OrgAccess, params: PageParams
) -> tuple[list[schemas.ApiKey], str | None]:
    rows = await repository.list_api_keys(session, access.organization.id, params)
    page, cursor = build_page(rows, params, repository.API_KEY_KEYSET)
    return [api_key_schema(k) for k in page], cursor


def _new_key(
    settings: Settings,
    org_id: uuid.UUID,
    name: str,
    actor: uuid.UUID | None,
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    material = generate_api_key(settings.api_key_secret)
    key = ApiKey(
        id=uuid.uuid4(),
        organization_id=org_id,
        name=name,
        prefix=material.prefix,
        key_hash=material.key_hash,
        created_by_user_id=actor,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    return key, material.plaintext


async def create_api_key(
    session: AsyncSession, access: OrgAccess, data: schemas.ApiKeyCreate, settings: Settings
) -> schemas.ApiKeyCreated:
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise BadRequest("expires_at must be in the future")
    key, plaintext = _new_key(
        settings, access.organization.id, data.name, access.actor_user_id, data.expires_at
    )
    session.add(key)
    await session.flush()
    await _emit_key_created(session, key)
    return schemas.ApiKeyCreated(**api_key_schema(key).model_dump(), key=plaintext)


async def create_initial_api_key(
    session: AsyncSession, org: Organization, settings: Settings, name: str = "default"
) -> tuple[ApiKey, str]:
    key, plaintext = _new_key(settings, org.id, name, None, None)
    session.add(key)
    await session.flush()
    await _emit_key_created(session, key)
    return key, plaintext


async def revoke_api_key(session: AsyncSession, access: OrgAccess, key_id: uuid.UUID) -> None:
    key = await repository.get_api_key(session, access.organization.id, key_id)
    if key is None:
        raise NotFound("API key not found")
    if key.revoked_at is None:
        await revoke_keys(session, access.organization.id, utcnow(), key_id=key_id)


async def regenerate_key(
    session: AsyncSession, principal: Principal, access: OrgAccess, settings: Settings
) -> schemas.RegeneratedKey:
    """Seed 001: the calling key is revoked in the same transaction that creates its successor,
    which commits before the response is sent."""
    if not isinstance(principal, ApiKeyPrincipal):
        raise Forbidden("Regenerate with the API key you want to replace")
    old = principal.key
    # Conditional on the key still being live: of concurrent regenerations with one key,
    # exactly one revokes it (PostgreSQL re-checks the row after the first commits) and makes
    # a successor; the others find it already revoked.
    if await revoke_keys(session, access.organization.id, utcnow(), key_id=old.id) != 1:
        raise Unauthorized("This API key was revoked")
    key, plaintext = _new_key(settings, access.organization.id, old.name, None, old.expires_at)
    session.add(key)
    await session.flush()
    await _emit_key_created(session, key)
    org = access.organization
    return schemas.RegeneratedKey(
        id=org.id,
        name=org.name,
        api_key=plaintext,
        api_key_prefix=key.prefix,
        key_id=key.id,
        created_at=org.created_at,
    )
