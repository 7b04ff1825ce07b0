"""Superadmins manage webhook endpoints and read and retry their deliveries."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.audit import repository as audit
from orgbill.auth.principal import UserPrincipal
from orgbill.errors import BadRequest, Conflict, NotFound
from orgbill.kit.changes import assign_changes
from orgbill.kit.pagination import PageParams, build_page
from orgbill.kit.time import utcnow
from orgbill.models import (
    Organization,
    OrganizationStatus,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from orgbill.webhooks_out import outbox, repository, schemas
from orgbill.webhooks_out.events import webhook_id
from orgbill.webhooks_out.signing import endpoint_secret, new_nonce


def endpoint_schema(endpoint: WebhookEndpoint) -> schemas.WebhookEndpoint:
    return schemas.WebhookEndpoint.model_validate(endpoint)


def delivery_schema(delivery: WebhookDelivery) -> schemas.WebhookDelivery:
    pending = delivery.status == WebhookDeliveryStatus.PENDING
    return schemas.WebhookDelivery(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        webhook_id=webhook_id(delivery.event_id),
        event_type=delivery.event_type,
        organization_id=delivery.organization_id,
        status=delivery.status,  # type: ignore[arg-type]
        attempts=delivery.attempts,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_latency_ms=delivery.last_latency_ms,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at if pending else None,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )


async def _endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = await repository.get_endpoint(session, endpoint_id)
    if endpoint is None:
        raise NotFound("Webhook endpoint not found")
    return endpoint


async def create_endpoint(
    session: AsyncSession,
    admin: UserPrincipal,
    data: schemas.WebhookEndpointCreate,
    server_secret: str,
) -> schemas.WebhookEndpointCreated:
    if data.organization_id is not None:
        org = await session.get(Organization, data.organization_id)
        if org is None or org.status == OrganizationStatus.DELETED:
            raise BadRequest("organization_id names no organization")
    now = utcnow()
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        url=data.url,
        description=data.description,
        events=list(data.events),
        organization_id=data.organization_id,
        enabled=True,
        secret_nonce=new_nonce(),
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    await session.flush()
    await audit.record(
        session,
        actor_user_id=admin.user.id,
        action="webhook_endpoint.create",
        organization_id=data.organization_id,
        details={"endpoint_id": str(endpoint.id), "url": endpoint.url, "events": endpoint.events},
    )
    return schemas.WebhookEndpointCreated(
        **endpoint_schema(endpoint).model_dump(),
        secret=endpoint_secret(server_secret, endpoint.secret_nonce),
    )


async def list_endpoints(
    session: AsyncSession, params: PageParams
) -> tuple[list[schemas.WebhookEndpoint], str | None]:
    rows = await repository.list_endpoints(session, params)
    page, cursor = build_page(rows, params, repository.ENDPOINT_KEYSET)
    return [endpoint_schema(e) for e in page], cursor


async def get_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> schemas.WebhookEndpoint:
    return endpoint_schema(await _endpoint(session, endpoint_id))


async def update_endpoint(
    session: AsyncSession,
    admin: UserPrincipal,
    endpoint_id: uuid.UUID,
    data: schemas.WebhookEndpointUpdate,
) -> schemas.WebhookEndpoint:
    endpoint = await _endpoint(session, endpoint_id)
    requested = data.model_dump(exclude_unset=True)
    for field in ("url", "events", "enabled"):
        if field in requested and requested[field] is None:
            raise BadRequest(f"{field} cannot be null")
    changes = assign_changes(endpoint, requested)
    if changes.get("enabled") is not None and endpoint.enabled:
        # Re-enabled: its failing run starts over.
        endpoint.failing_since = None
        endpoint.disabled_reason = None
    if changes:
        endpoint.updated_at = utcnow()
        await session.flush()
        await audit.record(
            session,
            actor_user_id=admin.user.id,
            action="webhook_endpoint.update",
            organization_id=endpoint.organization_id,
            details={"endpoint_id": str(endpoint.id), "changes": changes},
        )
    return endpoint_schema(endpoint)


async def delete_endpoint(
    session: AsyncSession, admin: UserPrincipal, endpoint_id: uuid.UUID
) -> None:
    endpoint = await _endpoint(session, endpoint_id)
    if await repository.delete_endpoint(session, endpoint_id) != 1:
        raise NotFound("Webhook endpoint not found")
    await audit.record(
        session,
        actor_user_id=admin.user.id,
        action="webhook_endpoint.delete",
        organization_id=endpoint.organization_id,
        details={"endpoint_id": str(endpoint_id), "url": endpoint.url},
    )


async def list_deliveries(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    params: PageParams,
    status: WebhookDeliveryStatus | None,
) -> tuple[list[schemas.WebhookDelivery], str | None]:
    await _endpoint(session, endpoint_id)
    rows = await repository.list_deliveries(
        session, endpoint_id, params, status.value if status else None
    )
    page, cursor = build_page(rows, params, repository.DELIVERY_KEYSET)
    return [delivery_schema(d) for d in page], cursor


async def retry_delivery(
    session: AsyncSession, admin: UserPrincipal, delivery_id: uuid.UUID
) -> schemas.WebhookDelivery:
    """Re-queues a delivery (failed, delivered or pending): due now, with a fresh retry
    window, same webhook-id. It keeps its place in its (endpoint, organization) order."""
    delivery = await repository.get_delivery(session, delivery_id)
    if delivery is None:
        raise NotFound("Webhook delivery not found")
    now = utcnow()
    if await repository.requeue_delivery(session, delivery_id, now) != 1:
        raise Conflict("This delivery is being sent right now; retry once the attempt ends")
    await session.refresh(delivery)
    await audit.record(
        session,
        actor_user_id=admin.user.id,
        action="webhook_delivery.retry",
        organization_id=delivery.organization_id,
        details={"delivery_id": str(delivery_id), "endpoint_id": str(delivery.endpoint_id)},
    )
    outbox.wake_after_commit(session)
    return delivery_schema(delivery)
