"""Plan resolution: which plan an organization has at an instant, why, and its limits.

Pure: no I/O, no clock. Layers, first that applies:
enterprise contract active now → Stripe subscription active|trialing|past_due → free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from orgbill.plans.catalog import ENTERPRISE_PLAN, Catalog, LimitValue, PlanDef

PlanSource = Literal["enterprise", "stripe", "free"]
ENTITLING_STATUSES = frozenset({"active", "trialing", "past_due"})
OVERDUE_STATUSES = frozenset({"past_due", "unpaid"})


@dataclass(frozen=True, slots=True)
class ContractInput:
    starts_at: datetime
    ends_at: datetime | None
    overrides: Mapping[str, LimitValue] = field(default_factory=dict)
    plan_code: str = ENTERPRISE_PLAN


@dataclass(frozen=True, slots=True)
class SubscriptionInput:
    stripe_subscription_id: str
    status: str
    # The Stripe price as stored; `Catalog.plan_for_price` decides the plan it means.
    stripe_price_id: str | None
    stripe_lookup_key: str | None = None
    stripe_legacy_plan_id: str | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class OrgOverrides:
    limits: Mapping[str, LimitValue] = field(default_factory=dict)
    rate_limit: int | None = None
    entitlements: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LayerDecision:
    layer: PlanSource
    applied: bool
    reason: str


@dataclass(frozen=True, slots=True)
class EffectiveLimit:
    value: LimitValue
    source: str  # "plan:<code>" | "contract" | "override"


@dataclass(frozen=True, slots=True)
class EffectivePlan:
    plan: PlanDef
    source: PlanSource
    layers: tuple[LayerDecision, ...]
    limits: dict[str, EffectiveLimit]
    features: tuple[str, ...]
    subscription_status: str | None
    is_stripe_overdue: bool
    period_start: datetime | None
    period_end: datetime | None
    # Set when an enterprise contract applies: its start anchors the contract's periods.
    contract_starts_at: datetime | None = None

    def limit(self, name: str) -> LimitValue:
        return self.limits[name].value

    @property
    def limit_values(self) -> dict[str, LimitValue]:
        return {name: limit.value for name, limit in self.limits.items()}


def contract_active(contract: ContractInput, now: datetime) -> bool:
    """Half-open [starts_at, ends_at): active from its first instant, over at its end."""
    return contract.starts_at <= now and (contract.ends_at is None or now < contract.ends_at)


def _contract_decision(contract: ContractInput | None, now: datetime) -> LayerDecision:
    if contract is None:
        return LayerDecision("enterprise", False, "no enterprise contract")
    if now < contract.starts_at:
        return LayerDecision(
            "enterprise", False, f"contract starts at {contract.starts_at.isoformat()}"
        )
    if not contract_active(contract, now):
        assert contract.ends_at is not None
        return LayerDecision(
            "enterprise", False, f"contract ended at {contract.ends_at.isoformat()}"
        )
    return LayerDecision("enterprise", True, "enterprise contract is active")


def subscription_plan(subscription: SubscriptionInput, catalog: Catalog) -> PlanDef | None:
    """The plan the subscription's stored price means in `catalog` (decided at read time)."""
    return catalog.plan_for_price(
        subscription.stripe_price_id,
        subscription.stripe_lookup_key,
        subscription.stripe_legacy_plan_id,
    )


def _subscription_decision(
    subscription: SubscriptionInput | None, plan: PlanDef | None
) -> LayerDecision:
    if subscription is None:
        return LayerDecision("stripe", False, "no Stripe subscription")
    sub_id = subscription.stripe_subscription_id
    if subscription.status not in ENTITLING_STATUSES:
        return LayerDecision("stripe", False, f"subscription {sub_id} is {subscription.status}")
    if plan is None:
        return LayerDecision(
            "stripe", False, f"subscription {sub_id} is for a price not in the plan catalog"
        )
    return LayerDecision("stripe", True, f"subscription {sub_id} is {subscription.status}")


def resolve(
    *,
    contract: ContractInput | None,
    subscription: SubscriptionInput | None,
    catalog: Catalog,
    overrides: OrgOverrides,
    now: datetime,
) -> EffectivePlan:
    enterprise = _contract_decision(contract, now)
    subscribed = subscription_plan(subscription, catalog) if subscription else None
    stripe = _subscription_decision(subscription, subscribed)
    if enterprise.applied:
        assert contract is not None
        source: PlanSource = "enterprise"
        plan = catalog.plans.get(contract.plan_code, catalog.plans[ENTERPRISE_PLAN])
        stripe = LayerDecision("stripe", False, "an enterprise contract takes precedence")
        free = LayerDecision("free", False, "an enterprise contract takes precedence")
    elif stripe.applied:
        assert subscribed is not None
        source = "stripe"
        plan = subscribed
        free = LayerDecision("free", False, "a Stripe subscription takes precedence")
    else:
        source = "free"
        plan = catalog.free
        free = LayerDecision("free", True, "no higher layer applies")

    limits = {
        name: EffectiveLimit(value, f"plan:{plan.code}") for name, value in plan.limits.items()
    }
    if source == "enterprise" and contract is not None:
        for name, value in contract.overrides.items():
            limits[name] = EffectiveLimit(value, "contract")
    for name, value in overrides.limits.items():
        limits[name] = EffectiveLimit(value, "override")
    if overrides.rate_limit is not None:
        limits["api_rate_limit"] = EffectiveLimit(overrides.rate_limit, "override")

    features = tuple(dict.fromkeys((*plan.features, *overrides.entitlements)))
    status = subscription.status if subscription is not None else None
    return EffectivePlan(
        plan=plan,
        source=source,
        layers=(enterprise, stripe, free),
        limits=limits,
        features=features,
        subscription_status=status,
        is_stripe_overdue=status in OVERDUE_STATUSES,
        period_start=subscription.current_period_start if subscription else None,
        period_end=subscription.current_period_end if subscription else None,
        contract_starts_at=contract.starts_at if source == "enterprise" and contract else None,
    )
