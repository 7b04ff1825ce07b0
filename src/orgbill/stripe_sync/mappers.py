"""The one normalisation layer: Stripe objects of any API version → our own dataclasses.

Pure (plain dicts in, frozen dataclasses out), so webhooks and reconciliation share it and it is
tested without a database. Shapes it reconciles:
- billing period on the subscription (before 2025-03-31) or on its items (2025-03-31 and later);
- an item's `price` (2018+) or legacy `plan` (plan ids are price ids), or a top-level `plan`
  on very old subscriptions;
- an invoice's subscription at `invoice.subscription` (old) or
  `invoice.parent.subscription_details.subscription` (2025-03-31 and later);
- ids that are either strings or expanded objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

JsonObject = Mapping[str, Any]


class MalformedStripeObject(ValueError):
    """An object lacking what every API version has (an id, a status…)."""


@dataclass(frozen=True, slots=True)
class PriceRef:
    """How one subscription item names what it sells: we try them in this order."""

    price_id: str | None
    lookup_key: str | None
    legacy_plan_id: str | None

    @property
    def refs(self) -> tuple[str | None, str | None, str | None]:
        return (self.price_id, self.lookup_key, self.legacy_plan_id)


@dataclass(frozen=True, slots=True)
class SubscriptionSnapshot:
    stripe_subscription_id: str
    stripe_customer_id: str | None
    status: str
    items: tuple[PriceRef, ...]
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    organization_id: uuid.UUID | None  # from metadata.organization_id


@dataclass(frozen=True, slots=True)
class InvoiceSnapshot:
    stripe_invoice_id: str
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    status: str | None
    currency: str
    total: int
    amount_due: int
    amount_paid: int
    invoice_pdf: str | None
    hosted_invoice_url: str | None
    period_start: datetime | None
    period_end: datetime | None
    created: datetime
    organization_id: uuid.UUID | None  # from metadata.organization_id


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    stripe_customer_id: str
    deleted: bool
    organization_id: uuid.UUID | None


# A credit purchase's Checkout session says so in its metadata (set by StripeGateway).
PURPOSE_KEY = "orgbill_purpose"
CREDITS_PURPOSE = "credits"
CREDITS_QUANTITY_KEY = "credits"


@dataclass(frozen=True, slots=True)
class CheckoutSnapshot:
    stripe_session_id: str
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    organization_id: uuid.UUID | None  # client_reference_id, else metadata
    payment_status: str | None = None
    # A credit purchase's session (metadata marker), and how many credits it bought (None
    # when the metadata was altered into something that is not a positive number).
    buys_credits: bool = False
    credits_quantity: Decimal | None = None

    @property
    def paid(self) -> bool:
        return self.payment_status == "paid"


@dataclass(frozen=True, slots=True)
class EventEnvelope:
    """The event around the object: what ordering and the inbox need."""

    id: str
    type: str
    api_version: str | None
    created: datetime
    object: JsonObject

    @property
    def object_id(self) -> str | None:
        value = self.object.get("id")
        return value if isinstance(value, str) else None

    @property
    def customer_id(self) -> str | None:
        """The Stripe customer the object belongs to (the object itself for a customer)."""
        if self.object.get("object") == "customer":
            return self.object_id
        return ref_id(self.object.get("customer"))


def timestamp(value: Any) -> datetime | None:
    """Stripe's unix seconds as aware UTC; a number no datetime can hold (1e20, NaN) is a
    malformed object, not an OverflowError."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedStripeObject(f"{value!r} is not a time") from exc


def ref_id(value: Any) -> str | None:
    """An id that may come as a string or as an expanded object."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def organization_id_in(*candidates: Any) -> uuid.UUID | None:
    """The first candidate that is a valid organization id (metadata is free text)."""
    for candidate in candidates:
        if isinstance(candidate, str):
            try:
                return uuid.UUID(candidate)
            except ValueError:
                continue
    return None


def _metadata_org(obj: JsonObject) -> uuid.UUID | None:
    metadata = obj.get("metadata")
    return (
        organization_id_in(metadata.get("organization_id"))
        if isinstance(metadata, Mapping)
        else None
    )


def _require_id(obj: JsonObject, prefix_hint: str) -> str:
    value = obj.get("id")
    if not isinstance(value, str) or not value:
        raise MalformedStripeObject(f"{prefix_hint} object has no id")
    return value


def _price_ref(item: JsonObject) -> PriceRef:
    price = item.get("price")
    plan = item.get("plan")
    price_id = ref_id(price)
    lookup_key = price.get("lookup_key") if isinstance(price, Mapping) else None
    return PriceRef(
        price_id=price_id,
        lookup_key=lookup_key if isinstance(lookup_key, str) else None,
        legacy_plan_id=ref_id(plan),
    )


def _items(subscription: JsonObject) -> list[JsonObject]:
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, Mapping) else None
    return [item for item in data or () if isinstance(item, Mapping)]


def _period(subscription: JsonObject, items: list[JsonObject]) -> tuple[datetime | None, ...]:
    start = timestamp(subscription.get("current_period_start"))
    end = timestamp(subscription.get("current_period_end"))
    if start is not None or end is not None:
        return start, end
    # 2025-03-31+: each item carries its own period; the subscription's spans them all.
    starts = [s for s in (timestamp(i.get("current_period_start")) for i in items) if s]
    ends = [e for e in (timestamp(i.get("current_period_end")) for i in items) if e]
    return (min(starts) if starts else None, max(ends) if ends else None)


def subscription_snapshot(obj: JsonObject) -> SubscriptionSnapshot:
    sub_id = _require_id(obj, "subscription")
    status = obj.get("status")
    if not isinstance(status, str) or not status:
        raise MalformedStripeObject(f"subscription {sub_id} has no status")
    items = _items(obj)
    refs = [_price_ref(item) for item in items]
    if not refs and obj.get("plan") is not None:
        # Very old single-plan subscriptions name the plan at the top level only.
        refs = [PriceRef(price_id=None, lookup_key=None, legacy_plan_id=ref_id(obj.get("plan")))]
    start, end = _period(obj, items)
    return SubscriptionSnapshot(
        stripe_subscription_id=sub_id,
        stripe_customer_id=ref_id(obj.get("customer")),
        status=status,
        items=tuple(refs),
        current_period_start=start,
        current_period_end=end,
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        canceled_at=timestamp(obj.get("canceled_at")),
        ended_at=timestamp(obj.get("ended_at")),
        organization_id=_metadata_org(obj),
    )


def _subscription_details(obj: JsonObject) -> JsonObject | None:
    """What an invoice carries of its subscription: `parent.subscription_details`
    (2025-03-31 and later), else the older top-level `subscription_details`."""
    parent = obj.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
    if not isinstance(details, Mapping):
        details = obj.get("subscription_details")
    return details if isinstance(details, Mapping) else None


def _invoice_subscription(obj: JsonObject) -> str | None:
    legacy = ref_id(obj.get("subscription"))
    if legacy:
        return legacy
    details = _subscription_details(obj)
    return ref_id(details.get("subscription")) if details is not None else None


def _invoice_org(obj: JsonObject) -> uuid.UUID | None:
    """The invoice's own metadata, else its subscription's as Stripe copied it onto the
    invoice: a subscription's invoices belong to the org the subscription does."""
    details = _subscription_details(obj)
    return _metadata_org(obj) or (_metadata_org(details) if details is not None else None)


def _amount(obj: JsonObject, key: str, fallback: int = 0) -> int:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


def invoice_snapshot(obj: JsonObject) -> InvoiceSnapshot:
    invoice_id = _require_id(obj, "invoice")
    created = timestamp(obj.get("created")) or timestamp(obj.get("date"))
    if created is None:
        raise MalformedStripeObject(f"invoice {invoice_id} has no created time")
    amount_due = _amount(obj, "amount_due")
    currency = obj.get("currency")
    status = obj.get("status")
    pdf, hosted = obj.get("invoice_pdf"), obj.get("hosted_invoice_url")
    return InvoiceSnapshot(
        stripe_invoice_id=invoice_id,
        stripe_customer_id=ref_id(obj.get("customer")),
        stripe_subscription_id=_invoice_subscription(obj),
        status=status if isinstance(status, str) else None,
        currency=currency.lower() if isinstance(currency, str) else "usd",
        total=_amount(obj, "total", amount_due),
        amount_due=amount_due,
        amount_paid=_amount(obj, "amount_paid"),
        invoice_pdf=pdf if isinstance(pdf, str) else None,
        hosted_invoice_url=hosted if isinstance(hosted, str) else None,
        period_start=timestamp(obj.get("period_start")),
        period_end=timestamp(obj.get("period_end")),
        created=created,
        organization_id=_invoice_org(obj),
    )


def customer_snapshot(obj: JsonObject, *, deleted: bool = False) -> CustomerSnapshot:
    return CustomerSnapshot(
        stripe_customer_id=_require_id(obj, "customer"),
        deleted=deleted or bool(obj.get("deleted")),
        organization_id=_metadata_org(obj),
    )


def _buys_credits(obj: JsonObject) -> bool:
    metadata = obj.get("metadata")
    return isinstance(metadata, Mapping) and metadata.get(PURPOSE_KEY) == CREDITS_PURPOSE


def _credits_quantity(obj: JsonObject) -> Decimal | None:
    metadata = obj.get("metadata")
    raw = metadata.get(CREDITS_QUANTITY_KEY) if isinstance(metadata, Mapping) else None
    try:
        quantity = Decimal(raw) if isinstance(raw, str) else None
    except InvalidOperation:
        return None
    if quantity is None or not quantity.is_finite() or quantity <= 0 or quantity > 10**9:
        return None
    return quantity


def checkout_snapshot(obj: JsonObject) -> CheckoutSnapshot:
    payment_status = obj.get("payment_status")
    return CheckoutSnapshot(
        stripe_session_id=_require_id(obj, "checkout session"),
        stripe_customer_id=ref_id(obj.get("customer")),
        stripe_subscription_id=ref_id(obj.get("subscription")),
        organization_id=organization_id_in(obj.get("client_reference_id")) or _metadata_org(obj),
        payment_status=payment_status if isinstance(payment_status, str) else None,
        buys_credits=_buys_credits(obj),
        credits_quantity=_credits_quantity(obj) if _buys_credits(obj) else None,
    )


def event_envelope(payload: Any) -> EventEnvelope:
    """The parts of an event body every API version has; anything else is malformed."""
    if not isinstance(payload, Mapping):
        raise MalformedStripeObject("event body is not a JSON object")
    event_id, event_type = payload.get("id"), payload.get("type")
    created = timestamp(payload.get("created"))
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(event_id, str) or not event_id.startswith("evt_") or len(event_id) > 255:
        raise MalformedStripeObject("event has no valid id")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 100:
        raise MalformedStripeObject("event has no type")
    if created is None or not isinstance(obj, Mapping):
        raise MalformedStripeObject("event has no created time or data.object")
    api_version = payload.get("api_version")
    return EventEnvelope(
        id=event_id,
        type=event_type,
        api_version=api_version[:32] if isinstance(api_version, str) else None,
        created=created,
        object=obj,
    )
