"""The only module that calls the Stripe API through the `stripe` SDK (signature.py uses its
webhook signature check).

Everything else talks to `StripeGateway`, which returns plain dicts (the mappers' input) or small
dataclasses. The SDK's calls are blocking, so each runs in a worker thread: the event loop never
waits on Stripe. Every create carries an idempotency key, so a retried request cannot create a
second customer or session.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe

from orgbill.config import Settings
from orgbill.errors import BadRequest, Unavailable
from orgbill.stripe_sync.mappers import CREDITS_PURPOSE, CREDITS_QUANTITY_KEY, PURPOSE_KEY

# Pinned: the shapes we read (periods on items, invoice.parent) are those of this version. The
# mappers still read older shapes, for events sent under an endpoint's older version.
STRIPE_API_VERSION = "2026-10-28.endive"
_LIST_PAGE_SIZE = 100
T = TypeVar("T")


class StripeUnavailable(Unavailable):
    """Stripe could not be reached or failed the call (503): not the caller's fault. The
    message is safe to show; Stripe's own answer is the exception's cause, for the log."""


class StripeRejected(BadRequest):
    """Stripe refused a value the caller sent (400), e.g. a URL it does not accept."""


def _stripe_reason(exc: stripe.StripeError) -> str:
    code = f" ({exc.code})" if exc.code else ""
    return f"{type(exc).__name__}{code}, HTTP {exc.http_status}, request {exc.request_id}"


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str | None


def idempotency_key(*parts: object) -> str:
    """A key per logical create; a fresh one for creates that are new each time."""
    return "orgbill-" + "-".join(str(p) for p in parts) if parts else f"orgbill-{uuid.uuid4()}"


class StripeGateway:
    def __init__(
        self, api_key: str, *, api_base: str | None = None, max_network_retries: int = 2
    ) -> None:
        base_addresses: Any = {"api": api_base} if api_base else {}
        self._client = stripe.StripeClient(
            api_key,
            stripe_version=STRIPE_API_VERSION,
            base_addresses=base_addresses,
            max_network_retries=max_network_retries,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway | None:
        if not settings.stripe_api_key:
            return None
        return cls(settings.stripe_api_key, api_base=settings.stripe_api_base)

    async def _call(
        self,
        fn: Callable[[], T],
        caller_params: frozenset[str] = frozenset(),
        caller_codes: frozenset[str] = frozenset(),
    ) -> T:
        """Runs one SDK call; the one place Stripe's failures become our errors: Stripe
        refusing a value the caller sent (`caller_params`) or what the caller asked for
        (`caller_codes`: an amount it chose, say) is the caller's 400, anything else
        (unreachable, 5xx, auth, a refusal of what we sent) is a 503."""
        try:
            return await asyncio.to_thread(fn)
        except stripe.InvalidRequestError as exc:
            if exc.param in caller_params:
                raise StripeRejected(
                    f"Stripe refused {exc.param}: {exc.user_message or 'invalid value'}",
                    details={"param": exc.param},
                ) from exc
            if exc.code in caller_codes:
                raise StripeRejected(
                    f"Stripe refused the request ({exc.code}): "
                    f"{exc.user_message or 'change what was asked for'}",
                    details={"code": exc.code},
                ) from exc
            raise StripeUnavailable(
                f"Stripe refused the request ({_stripe_reason(exc)}); retry later"
            ) from exc
        except stripe.StripeError as exc:
            # The SDK's message may echo request details (a key prefix): the log has them.
            raise StripeUnavailable(
                f"Stripe request failed ({_stripe_reason(exc)}); retry later"
            ) from exc

    # Creates

    async def create_customer(
        self,
        *,
        organization_id: uuid.UUID,
        name: str,
        email: str | None = None,
        replacing: str | None = None,
    ) -> str:
        params: dict[str, Any] = {
            "name": name,
            "metadata": {"organization_id": str(organization_id)},
        }
        if email:
            params["email"] = email
        # Keyed on the org: two concurrent first checkouts get one customer, not two. After
        # Stripe deleted the org's customer (`replacing`), a new key: under the first one
        # Stripe would answer with the deleted customer for a day.
        parts: tuple[object, ...] = ("customer", organization_id)
        if replacing:
            parts += ("after", replacing)
        options: Any = {"idempotency_key": idempotency_key(*parts)}
        customer = await self._call(
            lambda: self._client.v1.customers.create(params=params, options=options)
        )
        return customer.id

    async def create_checkout_session(
        self,
        *,
        organization_id: uuid.UUID,
        customer_id: str,
        price_id: str,
        success_url: str,
        cancel_url: str,
        request_key: str,
    ) -> CheckoutSession:
        metadata = {"organization_id": str(organization_id)}
        params: Any = {
            "mode": "subscription",
            "customer": customer_id,
            "client_reference_id": str(organization_id),
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
        }
        options: Any = {"idempotency_key": idempotency_key("checkout", request_key)}
        session = await self._call(
            lambda: self._client.v1.checkout.sessions.create(params=params, options=options),
            frozenset({"success_url", "cancel_url"}),
        )
        return CheckoutSession(id=session.id, url=getattr(session, "url", None))

    async def create_credit_checkout_session(
        self,
        *,
        organization_id: uuid.UUID,
        customer_id: str,
        credits: int,
        amount: int,
        currency: str,
        description: str,
        success_url: str,
        cancel_url: str,
        request_key: str,
    ) -> CheckoutSession:
        """A one-off payment for `credits` credits: one line item whose unit amount is the
        whole price in minor units (quantity 1, so Stripe charges exactly what we computed)."""
        metadata = {
            "organization_id": str(organization_id),
            PURPOSE_KEY: CREDITS_PURPOSE,
            CREDITS_QUANTITY_KEY: str(credits),
        }
        params: Any = {
            "mode": "payment",
            "customer": customer_id,
            "client_reference_id": str(organization_id),
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": amount,
                        "product_data": {"name": f"{credits} credits", "description": description},
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
        options: Any = {"idempotency_key": idempotency_key("credits-checkout", request_key)}
        session = await self._call(
            lambda: self._client.v1.checkout.sessions.create(params=params, options=options),
            frozenset({"success_url", "cancel_url"}),
            # The amount follows from the caller's quantity (a minimum this table lacks).
            frozenset({"amount_too_small", "amount_too_large"}),
        )
        return CheckoutSession(id=session.id, url=session.url)

    async def create_portal_session(
        self, *, customer_id: str, return_url: str, request_key: str
    ) -> str:
        params: Any = {"customer": customer_id, "return_url": return_url}
        options: Any = {"idempotency_key": idempotency_key("portal", request_key)}
        session = await self._call(
            lambda: self._client.v1.billing_portal.sessions.create(params=params, options=options),
            frozenset({"return_url"}),
        )
        url = getattr(session, "url", None)
        if not isinstance(url, str):
            raise StripeUnavailable("Stripe answered without a portal URL; retry later")
        return url

    # Reads (reconciliation)

    async def list_customers(self) -> list[dict[str, Any]]:
        return await self._list(self._client.v1.customers.list, {})

    async def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        customer = await self._call(lambda: self._client.v1.customers.retrieve(customer_id))
        return customer.to_dict()

    async def list_subscriptions(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"status": "all"}
        if customer_id:
            params["customer"] = customer_id
        return await self._list(self._client.v1.subscriptions.list, params)

    async def list_invoices(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"customer": customer_id} if customer_id else {}
        return await self._list(self._client.v1.invoices.list, params)

    async def list_paid_credit_checkouts(
        self, customer_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Completed Checkout sessions that bought credits (reconciliation's purchases)."""
        params: dict[str, Any] = {"status": "complete"}
        if customer_id:
            params["customer"] = customer_id
        try:
            sessions = await self._list(self._client.v1.checkout.sessions.list, params)
        except StripeUnavailable as exc:
            # A Stripe stand-in without Checkout (localstripe) answers 404: nothing to repair.
            if getattr(exc.__cause__, "http_status", None) == 404:
                return []
            raise
        return [
            s for s in sessions if (s.get("metadata") or {}).get(PURPOSE_KEY) == CREDITS_PURPOSE
        ]

    async def _list(self, method: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
        def fetch_all() -> list[dict[str, Any]]:
            page = method(params={**params, "limit": _LIST_PAGE_SIZE})
            return [obj.to_dict() for obj in page.auto_paging_iter()]

        return await self._call(fetch_all)
