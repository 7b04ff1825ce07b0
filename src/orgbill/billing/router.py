from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from orgbill.auth.dependencies import SessionDep, current_org_access
from orgbill.auth.permissions import Perm
from orgbill.auth.principal import OrgAccess
from orgbill.billing import schemas, service
from orgbill.kit.pagination import Page, PageParams, page_params
from orgbill.kit.routing import TransactionalRoute
from orgbill.plans.dependencies import CatalogStoreDep
from orgbill.stripe_sync.dependencies import StripeGatewayDep

router = APIRouter(prefix="/billing", route_class=TransactionalRoute, tags=["billing"])

# A suspended org may still read its billing and pay its way back (contract: "Who is calling").
BillingRead = Annotated[
    OrgAccess, Depends(current_org_access(Perm.BILLING_READ, allow_suspended=True))
]
BillingAction = Annotated[
    OrgAccess, Depends(current_org_access(Perm.BILLING_WRITE, allow_suspended=True))
]
Paging = Annotated[PageParams, Depends(page_params)]


@router.get("/subscription")
async def get_subscription(
    access: BillingRead, session: SessionDep, store: CatalogStoreDep, response: Response
) -> schemas.BillingSubscription:
    subscription, quota = await service.subscription_read(session, access, store)
    response.headers.update(quota)
    return subscription


@router.get("/invoices")
async def list_invoices(
    access: BillingRead, session: SessionDep, paging: Paging
) -> Page[schemas.BillingInvoice]:
    data, cursor = await service.list_invoices(session, access, paging)
    return Page(data=data, next_cursor=cursor)


@router.post("/checkout")
async def start_checkout(
    body: schemas.CheckoutRequest,
    access: BillingAction,
    session: SessionDep,
    gateway: StripeGatewayDep,
    store: CatalogStoreDep,
) -> schemas.CheckoutSession:
    return await service.start_checkout(session, access, body, gateway, store)


@router.post("/portal")
async def open_portal(
    body: schemas.PortalRequest,
    access: BillingAction,
    session: SessionDep,
    gateway: StripeGatewayDep,
) -> schemas.PortalSession:
    return await service.open_portal(session, access, body, gateway)


# Buying credits is a billing action under /credits; a suspended org cannot buy credits.
credits_router = APIRouter(prefix="/credits", route_class=TransactionalRoute, tags=["credits"])
BuyCredits = Annotated[OrgAccess, Depends(current_org_access(Perm.BILLING_WRITE))]


@credits_router.post("/checkout")
async def start_credit_checkout(
    body: schemas.CreditCheckoutRequest,
    access: BuyCredits,
    session: SessionDep,
    gateway: StripeGatewayDep,
    store: CatalogStoreDep,
) -> schemas.CheckoutSession:
    return await service.start_credit_checkout(session, access, body, gateway, store)
