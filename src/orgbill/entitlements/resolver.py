"""Plan resolution: which plan an organization has at an instant, why, its typed limits and
its current billing period.

Pure: no I/O, no clock. Layers, first that applies:
enterprise contract active now → Stripe subscription active|trialing|past_due → free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from orgbill.entitlements.periods import Period, PeriodBasis, billing_period
from orgbill.kit.time import as_utc
from orgbill.plans.catalog import ENTERPRISE_PLAN, Catalog, PlanDef
from orgbill.plans.limits import Limit, Limits

PlanSource = Literal["enterprise", "stripe", "free"]
# (plan code, plan source): what organization.plan_changed announces and compares.
PlanIdentity = tuple[str, PlanSource]
ENTITLING_STATUSES = frozenset({"active", "trialing", "past_due"})
OVERDUE_STATUSES = frozenset({"past_due", "unpaid"})


@dataclass(frozen=True, slots=True)
class ContractInput:
    starts_at: datetime
    ends_at: datetime | None
    overrides: Mapping[str, Limit] = field(default_factory=dict)
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
    limits: Mapping[str, Limit] = field(default_factory=dict)
    rate_limit: int | None = None
    entitlements: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LayerDecision:
    layer: PlanSource
    applied: bool
    reason: str


@dataclass(frozen=True, slots=True)
class EffectivePlan:
    """An organization's plan at one instant (`evaluated_at`): every route reads this."""

    plan: PlanDef
    source: PlanSource
    layers: tuple[LayerDecision, ...]
    limits: Limits
    # Where each limit came from: "plan:<code>" | "contract" | "override".
    limit_sources: Mapping[str, str]
    features: tuple[str, ...]
    subscription_status: str | None
    is_stripe_overdue: bool
    evaluated_at: datetime
    # The billing period containing `evaluated_at`; `period_at` for any other instant.
    period: Period
    period_basis: PeriodBasis

    def period_at(self, at: datetime) -> Period:
        return billing_period(self.period_basis, at)

    @property
    def identity(self) -> PlanIdentity:
        return self.plan.code, self.source


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


def _choose(
    contract: ContractInput | None,
    subscription: SubscriptionInput | None,
    catalog: Catalog,
    now: datetime,
) -> tuple[PlanDef, PlanSource, tuple[LayerDecision, ...]]:
    """The layer that decides the plan (enterprise contract → Stripe subscription → free)."""
    enterprise = _contract_decision(contract, now)
    subscribed = subscription_plan(subscription, catalog) if subscription else None
    stripe = _subscription_decision(subscription, subscribed)
    if enterprise.applied:
        assert contract is not None
        plan = catalog.plans.get(contract.plan_code, catalog.plans[ENTERPRISE_PLAN])
        stripe = LayerDecision("stripe", False, "an enterprise contract takes precedence")
        free = LayerDecision("free", False, "an enterprise contract takes precedence")
        return plan, "enterprise", (enterprise, stripe, free)
    if stripe.applied:
        assert subscribed is not None
        free = LayerDecision("free", False, "a Stripe subscription takes precedence")
        return subscribed, "stripe", (enterprise, stripe, free)
    free = LayerDecision("free", True, "no higher layer applies")
    return catalog.free, "free", (enterprise, stripe, free)


def plan_identity(
    *,
    contract: ContractInput | None,
    subscription: SubscriptionInput | None,
    catalog: Catalog,
    now: datetime,
) -> PlanIdentity:
    """The plan `resolve` would choose, and its source, without building the rest (an org's
    own overrides change limits and features, never these two)."""
    plan, source, _ = _choose(contract, subscription, catalog, now)
    return plan.code, source


def resolve(
    *,
    contract: ContractInput | None,
    subscription: SubscriptionInput | None,
    catalog: Catalog,
    overrides: OrgOverrides,
    now: datetime,
) -> EffectivePlan:
    plan, source, layers = _choose(contract, subscription, catalog, now)

    limits = dict(plan.limits)
    sources = dict.fromkeys(limits, f"plan:{plan.code}")
    if source == "enterprise" and contract is not None:
        limits.update(contract.overrides)
        sources.update(dict.fromkeys(contract.overrides, "contract"))
    limits.update(overrides.limits)
    sources.update(dict.fromkeys(overrides.limits, "override"))
    if overrides.rate_limit is not None:
        limits["api_rate_limit"] = Limit.count(overrides.rate_limit)
        sources["api_rate_limit"] = "override"

    basis = _period_basis(source, subscription, contract)

    features = tuple(dict.fromkeys((*plan.features, *overrides.entitlements)))
    status = subscription.status if subscription is not None else None
    return EffectivePlan(
        plan=plan,
        source=source,
        layers=layers,
        limits=Limits(limits),
        limit_sources=sources,
        features=features,
        subscription_status=status,
        is_stripe_overdue=status in OVERDUE_STATUSES,
        evaluated_at=now,
        period=billing_period(basis, now),
        period_basis=basis,
    )


def _period_basis(
    source: PlanSource, subscription: SubscriptionInput | None, contract: ContractInput | None
) -> PeriodBasis:
    if source == "stripe" and subscription is not None:
        start, end = subscription.current_period_start, subscription.current_period_end
        if start is not None and end is not None and start < end:
            return PeriodBasis(stripe_period=Period(as_utc(start), as_utc(end)))
    if source == "enterprise" and contract is not None:
        return PeriodBasis(contract_starts_at=contract.starts_at)
    return PeriodBasis()
