"""`POST /webhooks/stripe`: no auth; the signature over the raw body is the credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from orgbill.auth.dependencies import SessionDep, get_settings_dep
from orgbill.errors import error_response
from orgbill.kit.metrics import STRIPE_EVENTS
from orgbill.kit.routing import TransactionalRoute
from orgbill.plans.dependencies import get_catalog_store
from orgbill.stripe_sync import schemas, signature, webhooks

router = APIRouter(route_class=TransactionalRoute, tags=["stripe"])


@router.post("/webhooks/stripe", response_model=schemas.WebhookAck)
async def receive_stripe_webhook(
    request: Request,
    session: SessionDep,
    stripe_signature: Annotated[str | None, Header(include_in_schema=True)] = None,
) -> Response:
    # The raw bytes, exactly as signed: never a re-serialised body. The caller middleware
    # read and verified them already unless the signature failed (then verified here: a 400).
    verified = signature.verified_body(request.scope)
    raw_body = verified if verified is not None else await request.body()
    # Settings and catalog read directly, not as dependencies: Stripe delivers in bulk, and
    # each dependency FastAPI resolves costs about as much as a line of this handler.
    delivery = await webhooks.receive(
        session,
        raw_body,
        stripe_signature,
        await get_settings_dep(request),
        await get_catalog_store(request),
        signature_verified=verified is not None,
    )
    STRIPE_EVENTS.labels(delivery.type, delivery.status).inc()
    if delivery.failed:
        # Returned, not raised: the route class then commits the `failed` stamp (the event's
        # own changes were rolled back to their savepoint) and Stripe retries on the 500.
        return error_response(500, "internal_error", "The event could not be applied; retry")
    ack = schemas.WebhookAck(
        event_id=delivery.stripe_event_id, status=delivery.status, duplicate=delivery.duplicate
    )
    # Serialised once here: returned as the model, FastAPI would validate it again first.
    return Response(ack.model_dump_json(), media_type="application/json")
