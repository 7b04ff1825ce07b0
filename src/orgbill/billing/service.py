"""Billing reads (our Stripe mirror) and actions (checkout, portal: calls to Stripe)."""

from __future__ import annotations

import math
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth.principal import OrgAccess
from orgbill.billing import schemas
from orgbill.credits import service as credits_service
from orgbill.db import end_transaction_before_network_call
from orgbill.entitlements.resolver import subscription_plan
from orgbill.entitlements.service import plan_for_access
from orgbill.errors import BadRequest, Conflict, NotFound, Unavailable, ValidationFailed
from orgbill.kit.context import current_request_id
from orgbill.kit.money import chargeable, from_minor_units, minimum_charge, to_minor_units
from orgbill.kit.pagination import PageParams, build_page
from orgbill.models import Invoice, Subscription
from orgbill.organizations import service as org_service
from orgbill.plans.catalog import PlanDef
from orgbill.plans.store import CatalogStore
from orgbill.stripe_sync import repository as stripe_repository
from orgbill.stripe_sync.client import StripeGateway, StripeUnavailable, idempotency_key
from orgbill.usage import service as usage_service


def subscription_schema(
    subscription: Subscription, plan: PlanDef | None
) -> schemas.BillingSubscription:
    schema = schemas.BillingSubscription.model_validate(subscription)
    return schema.model_copy(update={"plan": plan.code if plan else None})


def invoice_schema(invoice: Invoice) -> schemas.BillingInvoice:
    return schemas.BillingInvoice.model_validate(invoice)


async def get_subscription(
    session: AsyncSession, access: OrgAccess, store: CatalogStore
) -> schemas.BillingSubscription:
    """The subscription plan resolution uses (an entitling one first, else the newest)."""
    # Resolved first: it loads the plan inputs once and keeps them on `access` (the quota
    # headers of the same response reuse both).
    plan = await plan_for_access(session, access, store)
    inputs = access.plan_inputs
    assert inputs is not None
    subscription = await org_service.current_subscription(session, access.organization.id, inputs)
    if subscription is None or inputs.subscription is None:
        raise NotFound("This organization has no subscription")
    catalog = await store.current(session, inputs.catalog_revision)
    shown = subscription_schema(subscription, subscription_plan(inputs.subscription, catalog))
    return org_service.with_plan_period(shown, plan)


async def subscription_read(
    session: AsyncSession, access: OrgAccess, store: CatalogStore
) -> tuple[schemas.BillingSubscription, dict[str, str]]:
    """The subscription and the quota headers its response carries: a 404 (no subscription)
    carries them too, since the org's quotas are there either way."""
    headers = await quota_headers(session, access, store)
    try:
        return await get_subscription(session, access, store), headers
    except NotFound as exc:
        exc.headers.update(headers)
        raise


async def quota_headers(
    session: AsyncSession, access: OrgAccess, store: CatalogStore
) -> dict[str, str]:
    """Seed 004: the period's quota headers ride on the subscription read."""
    plan = await plan_for_access(session, access, store)
    report = await usage_service.usage_report(session, access, plan, store)
    return usage_service.quota_headers(report)


async def list_invoices(
    session: AsyncSession, access: OrgAccess, params: PageParams
) -> tuple[list[schemas.BillingInvoice], str | None]:
    rows = await stripe_repository.list_invoices(session, access.organization.id, params)
    page, cursor = build_page(rows, params, stripe_repository.INVOICE_KEYSET)
    return [invoice_schema(invoice) for invoice in page], cursor


# Statuses of a Stripe subscription that will bill again (or resume billing) unless changed.
_STILL_BILLED = frozenset({"active", "trialing", "past_due", "unpaid", "paused"})


def _require_gateway(gateway: StripeGateway | None) -> StripeGateway:
    if gateway is None:
        raise Unavailable("Billing is not configured on this server (no Stripe API key)")
    return gateway


def _request_key() -> str:
    # One key per API request: the SDK's own retries of it reuse the key, a new click does not.
    return current_request_id() or idempotency_key()


async def ensure_customer(session: AsyncSession, access: OrgAccess, gateway: StripeGateway) -> str:
    """The org's Stripe customer, created once, with no transaction held across the Stripe
    call. Two concurrent first checkouts send the same org-keyed idempotency key, so Stripe
    answers both with one customer (it also covers a crash between Stripe creating it and our
    write); the conditional link keeps the first id written, and a loser uses that one."""
    org = access.organization
    customer_id = await stripe_repository.customer_of(session, org.id)
    if customer_id is not None:
        return customer_id
    replacing = await stripe_repository.last_deleted_customer(session, org.id)
    await end_transaction_before_network_call(session)
    try:
        created = await gateway.create_customer(
            organization_id=org.id, name=org.name, replacing=replacing
        )
    except StripeUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    if not await stripe_repository.link_customer(session, org.id, created):
        customer_id = await stripe_repository.customer_of(session, org.id)
        if customer_id is None:  # the customer is linked to another org: never share it
            raise Unavailable("The Stripe customer could not be linked; retry")
        created = customer_id
    # The link is a complete unit: keep it even if the next Stripe call fails.
    await end_transaction_before_network_call(session)
    return created


async def start_checkout(
    session: AsyncSession,
    access: OrgAccess,
    data: schemas.CheckoutRequest,
    gateway: StripeGateway | None,
    store: CatalogStore,
) -> schemas.CheckoutSession:
    stripe = _require_gateway(gateway)
    await plan_for_access(session, access, store)  # loads the plan inputs onto `access`
    current = access.plan_inputs.subscription if access.plan_inputs is not None else None
    if current is not None and current.status in _STILL_BILLED:
        # Checkout always starts a new subscription; both would be billed every period.
        raise Conflict(
            f"This organization already has a {current.status} subscription; change plans "
            "through the billing portal (POST /billing/portal)"
        )
    catalog = await store.live(session)
    plan = catalog.plans.get(data.plan)
    if plan is None:
        raise BadRequest(f"Unknown plan '{data.plan}'; see GET /plans")
    if plan.stripe_price_id is None:
        raise BadRequest(
            f"The {plan.name} plan has no Stripe price and cannot be bought through checkout"
            + (" (enterprise plans are arranged with sales)" if plan.code == "enterprise" else "")
        )
    customer_id = await ensure_customer(session, access, stripe)
    await end_transaction_before_network_call(session)
    try:
        checkout = await stripe.create_checkout_session(
            organization_id=access.organization.id,
            customer_id=customer_id,
            price_id=plan.stripe_price_id,
            success_url=str(data.success_url),
            cancel_url=str(data.cancel_url),
            request_key=_request_key(),
        )
    except StripeUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    return schemas.CheckoutSession(session_id=checkout.id, url=checkout.url)


async def open_portal(
    session: AsyncSession,
    access: OrgAccess,
    data: schemas.PortalRequest,
    gateway: StripeGateway | None,
) -> schemas.PortalSession:
    stripe = _require_gateway(gateway)
    customer_id = await ensure_customer(session, access, stripe)
    await end_transaction_before_network_call(session)
    try:
        url = await stripe.create_portal_session(
            customer_id=customer_id, return_url=str(data.return_url), request_key=_request_key()
        )
    except StripeUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    return schemas.PortalSession(url=url)


# Stripe's largest amount for one payment (eight digits of minor units, e.g. 999,999.99 USD).
_STRIPE_MAX_AMOUNT = 99_999_999


def _credits_total(price: Decimal, quantity: int, currency: str) -> Decimal | int:
    """`quantity` credits' total in minor units, rounded once to what Stripe charges; a total
    far past one payment's maximum is left unrounded (no rounding brings it back under, and
    quantizing a number that large overflows Decimal's precision)."""
    exact = to_minor_units(price * quantity, currency)
    return exact if exact > 2 * _STRIPE_MAX_AMOUNT else chargeable(exact, currency)


def _fewest_credits_charged(price: Decimal, currency: str, minimum: int) -> int:
    fewest = max(1, math.ceil(Decimal(minimum) / to_minor_units(price, currency)))
    while _credits_total(price, fewest, currency) < minimum:  # rounding fell short: one more
        fewest += 1
    return fewest


async def start_credit_checkout(
    session: AsyncSession,
    access: OrgAccess,
    data: schemas.CreditCheckoutRequest,
    gateway: StripeGateway | None,
    store: CatalogStore,
) -> schemas.CheckoutSession:
    """A Checkout session (payment mode) for `quantity` credits at the plan's
    extra_credit_price. The total is computed exactly and rounded half-up once, to what Stripe
    charges in the currency (kit.money.chargeable: its minor unit, tens of fils, whole krónur),
    and charged as one line item of quantity 1: Stripe charges exactly that total, whatever
    the per-credit price's decimals. Nothing is written here; the credits
    arrive with the paid session's webhook."""
    stripe = _require_gateway(gateway)
    plan = await plan_for_access(session, access, store)
    cap = credits_service.max_credits(plan)
    if cap is not None and data.quantity > cap:
        raise ValidationFailed(
            f"At most {cap} credits can be bought at once on the {plan.plan.name} plan",
            details=[
                {
                    "loc": ["body", "quantity"],
                    "msg": f"must be at most max_credits ({cap})",
                    "type": "less_than_equal",
                }
            ],
        )
    price = credits_service.extra_credit_price(plan)
    currency = plan.plan.currency
    total = _credits_total(price, data.quantity, currency)
    if total < 1:
        raise BadRequest(f"Credits cannot be bought on the {plan.plan.name} plan (no price)")
    if total > _STRIPE_MAX_AMOUNT:
        raise BadRequest(
            f"{data.quantity} credits cost more than one Stripe payment can take; buy fewer"
        )
    minimum = minimum_charge(currency)
    if total < minimum:
        # Stripe would refuse the session: the caller's quantity is at fault, not a 503.
        fewest = _fewest_credits_charged(price, currency, minimum)
        raise BadRequest(
            f"Stripe charges at least {from_minor_units(minimum, currency)} "
            f"{currency.upper()} in one payment: buy at least {fewest} credits",
            details={"minimum_quantity": fewest},
        )
    customer_id = await ensure_customer(session, access, stripe)
    await end_transaction_before_network_call(session)
    try:
        checkout = await stripe.create_credit_checkout_session(
            organization_id=access.organization.id,
            customer_id=customer_id,
            credits=data.quantity,
            amount=int(total),
            currency=currency,
            description=f"{data.quantity} credits at {price} {currency.upper()} each",
            success_url=str(data.success_url),
            cancel_url=str(data.cancel_url),
            request_key=_request_key(),
        )
    except StripeUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    return schemas.CheckoutSession(session_id=checkout.id, url=checkout.url)
