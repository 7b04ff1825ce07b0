"""Superadmin routes for outbound webhooks (CONTRACT.md → "Events to your product")."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from orgbill.auth.dependencies import SessionDep, SettingsDep, SuperadminDep
from orgbill.kit.pagination import Page, PageParams, page_params
from orgbill.kit.routing import TransactionalRoute
from orgbill.models import WebhookDeliveryStatus
from orgbill.webhooks_out import schemas, service

router = APIRouter(prefix="/admin", route_class=TransactionalRoute, tags=["webhooks"])
Paging = Annotated[PageParams, Depends(page_params)]


@router.post("/webhook-endpoints", status_code=status.HTTP_201_CREATED)
async def create_webhook_endpoint(
    body: schemas.WebhookEndpointCreate,
    admin: SuperadminDep,
    session: SessionDep,
    settings: SettingsDep,
) -> schemas.WebhookEndpointCreated:
    return await service.create_endpoint(session, admin, body, settings.api_key_secret)


@router.get("/webhook-endpoints")
async def list_webhook_endpoints(
    _: SuperadminDep, session: SessionDep, paging: Paging
) -> Page[schemas.WebhookEndpoint]:
    data, cursor = await service.list_endpoints(session, paging)
    return Page(data=data, next_cursor=cursor)


@router.get("/webhook-endpoints/{endpoint_id}")
async def get_webhook_endpoint(
    endpoint_id: uuid.UUID, _: SuperadminDep, session: SessionDep
) -> schemas.WebhookEndpoint:
    return await service.get_endpoint(session, endpoint_id)


@router.patch("/webhook-endpoints/{endpoint_id}")
async def update_webhook_endpoint(
    endpoint_id: uuid.UUID,
    body: schemas.WebhookEndpointUpdate,
    admin: SuperadminDep,
    session: SessionDep,
) -> schemas.WebhookEndpoint:
    return await service.update_endpoint(session, admin, endpoint_id, body)


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook_endpoint(
    endpoint_id: uuid.UUID, admin: SuperadminDep, session: SessionDep
) -> Response:
    await service.delete_endpoint(session, admin, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries")
async def list_webhook_deliveries(
    endpoint_id: uuid.UUID,
    _: SuperadminDep,
    session: SessionDep,
    paging: Paging,
    status: Annotated[WebhookDeliveryStatus | None, Query()] = None,
) -> Page[schemas.WebhookDelivery]:
    data, cursor = await service.list_deliveries(session, endpoint_id, paging, status)
    return Page(data=data, next_cursor=cursor)


@router.post("/webhook-deliveries/{delivery_id}/retry")
async def retry_webhook_delivery(
    delivery_id: uuid.UUID, admin: SuperadminDep, session: SessionDep
) -> schemas.WebhookDelivery:
    return await service.retry_delivery(session, admin, delivery_id)
