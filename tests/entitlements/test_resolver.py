"""The pure resolver: every branch and boundary, plus a property test over random inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orgbill.entitlements.resolver import (
    ENTITLING_STATUSES,
    ContractInput,
    OrgOverrides,
    SubscriptionInput,
    resolve,
)
from orgbill.plans.catalog import load_catalog
from orgbill.plans.limits import Limit
from tests.fixtures.rows import price_of

CATALOG = load_catalog()
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
ALL_STATUSES = [
    "active",
    "trialing",
    "past_due",
    "canceled",
    "unpaid",
    "incomplete",
    "incomplete_expired",
    "paused",
]


def sub(status: str, plan: str | None = "pro") -> SubscriptionInput:
    return SubscriptionInput(
        stripe_subscription_id="sub_123",
        status=status,
        stripe_price_id=price_of(plan),
        current_period_start=NOW - timedelta(days=10),
        current_period_end=NOW + timedelta(days=20),
    )


def contract(start: datetime, end: datetime | None = None, **overrides: object) -> ContractInput:
    limits = {name: Limit.count(value) for name, value in overrides.items()}  # type: ignore[arg-type]
    return ContractInput(starts_at=start, ends_at=end, overrides=limits)


NO_OVERRIDES = OrgOverrides()

CASES = [
    # (id, contract, subscription, expected source, expected plan)
    ("nothing: free", None, None, "free", "free"),
    ("active sub", None, sub("active"), "stripe", "pro"),
    ("trialing sub", None, sub("trialing", "business"), "stripe", "business"),
    ("past_due still entitles", None, sub("past_due"), "stripe", "pro"),
    ("canceled falls to free", None, sub("canceled"), "free", "free"),
    ("unpaid falls to free", None, sub("unpaid"), "free", "free"),
    ("incomplete falls to free", None, sub("incomplete"), "free", "free"),
    ("incomplete_expired falls to free", None, sub("incomplete_expired"), "free", "free"),
    ("paused falls to free", None, sub("paused"), "free", "free"),
    ("unknown price falls to free", None, sub("active", None), "free", "free"),
    ("plan not in catalog falls to free", None, sub("active", "gold"), "free", "free"),
    ("contract active beats sub", contract(NOW - HOUR), sub("active"), "enterprise", "enterprise"),
    ("contract starting exactly now applies", contract(NOW), None, "enterprise", "enterprise"),
    ("contract starting later does not", contract(NOW + HOUR), sub("active"), "stripe", "pro"),
    ("contract ending exactly now is over", contract(NOW - HOUR, NOW), None, "free", "free"),
    (
        "contract ending later applies",
        contract(NOW - HOUR, NOW + HOUR),
        None,
        "enterprise",
        "enterprise",
    ),
    (
        "ended contract falls to sub",
        contract(NOW - 2 * HOUR, NOW - HOUR),
        sub("active"),
        "stripe",
        "pro",
    ),
]


@pytest.mark.parametrize(
    ("case", "contract_in", "sub_in", "source", "plan"), CASES, ids=[c[0] for c in CASES]
)
def test_layers(
    case: str,
    contract_in: ContractInput | None,
    sub_in: SubscriptionInput | None,
    source: str,
    plan: str,
) -> None:
    result = resolve(
        contract=contract_in, subscription=sub_in, catalog=CATALOG, overrides=NO_OVERRIDES, now=NOW
    )
    assert (result.source, result.plan.code) == (source, plan), case
    applied = [d.layer for d in result.layers if d.applied]
    assert applied == [source]
    assert [d.layer for d in result.layers] == ["enterprise", "stripe", "free"]
    assert set(result.limit_sources.values()) == {f"plan:{plan}"}


def test_reasons_name_the_subscription_and_its_status() -> None:
    result = resolve(
        contract=None,
        subscription=sub("canceled"),
        catalog=CATALOG,
        overrides=NO_OVERRIDES,
        now=NOW,
    )
    stripe = next(d for d in result.layers if d.layer == "stripe")
    assert stripe.reason == "subscription sub_123 is canceled"


@pytest.mark.parametrize("status", ["past_due", "unpaid"])
def test_overdue_statuses_set_is_stripe_overdue(status: str) -> None:
    result = resolve(
        contract=None, subscription=sub(status), catalog=CATALOG, overrides=NO_OVERRIDES, now=NOW
    )
    assert result.is_stripe_overdue


def test_contract_overrides_apply_only_when_contract_applies() -> None:
    applied = resolve(
        contract=contract(NOW - HOUR, None, max_agents=9999),
        subscription=None,
        catalog=CATALOG,
        overrides=NO_OVERRIDES,
        now=NOW,
    )
    assert applied.limits["max_agents"] == Limit.count(9999)
    assert applied.limit_sources["max_agents"] == "contract"
    assert applied.limit_sources["max_members"] == "plan:enterprise"
    ended = resolve(
        contract=contract(NOW - 2 * HOUR, NOW - HOUR, max_agents=9999),
        subscription=None,
        catalog=CATALOG,
        overrides=NO_OVERRIDES,
        now=NOW,
    )
    assert ended.limits["max_agents"] == CATALOG.free.limits["max_agents"]


@pytest.mark.parametrize(
    ("contract_in", "sub_in"),
    [(None, None), (None, sub("active")), (contract(NOW - HOUR, None, max_agents=7), None)],
)
def test_org_overrides_sit_on_top_of_every_layer(
    contract_in: ContractInput | None, sub_in: SubscriptionInput | None
) -> None:
    overrides = OrgOverrides(
        limits={"max_agents": Limit.count(3), "extra_credit_price": Limit.money(Decimal("0.5"))},
        rate_limit=77,
        entitlements=("beta",),
    )
    result = resolve(
        contract=contract_in, subscription=sub_in, catalog=CATALOG, overrides=overrides, now=NOW
    )
    assert result.limits.count("max_agents") == 3
    assert result.limit_sources["max_agents"] == "override"
    assert result.limits.count("api_rate_limit") == 77
    assert result.limits.money("extra_credit_price") == Decimal("0.5")
    assert "beta" in result.features
    assert set(result.plan.features) <= set(result.features)


statuses = st.sampled_from(ALL_STATUSES)
prices = st.sampled_from(
    [*(p.stripe_price_id for p in CATALOG.plans.values() if p.stripe_price_id), None, "price_gold"]
)
PLAN_OF_PRICE = {p.stripe_price_id: p.code for p in CATALOG.plans.values() if p.stripe_price_id}
offsets = st.integers(min_value=-3, max_value=3).map(lambda h: NOW + h * HOUR)


@st.composite
def contracts(draw: st.DrawFn) -> ContractInput | None:
    if draw(st.booleans()):
        return None
    start = draw(offsets)
    end = draw(st.one_of(st.none(), offsets.filter(lambda e: e > start)))
    return ContractInput(starts_at=start, ends_at=end)


@st.composite
def subscriptions(draw: st.DrawFn) -> SubscriptionInput | None:
    if draw(st.booleans()):
        return None
    return SubscriptionInput(
        stripe_subscription_id="sub_x", status=draw(statuses), stripe_price_id=draw(prices)
    )


@settings(max_examples=300, deadline=None)
@given(contract_in=contracts(), sub_in=subscriptions())
def test_result_always_comes_from_the_highest_applicable_layer(
    contract_in: ContractInput | None, sub_in: SubscriptionInput | None
) -> None:
    result = resolve(
        contract=contract_in, subscription=sub_in, catalog=CATALOG, overrides=NO_OVERRIDES, now=NOW
    )
    contract_applies = (
        contract_in is not None
        and contract_in.starts_at <= NOW
        and (contract_in.ends_at is None or contract_in.ends_at > NOW)
    )
    sub_applies = (
        sub_in is not None
        and sub_in.status in ENTITLING_STATUSES
        and sub_in.stripe_price_id in PLAN_OF_PRICE
    )
    expected = "enterprise" if contract_applies else "stripe" if sub_applies else "free"
    assert result.source == expected
    assert [d.layer for d in result.layers if d.applied] == [expected]
    expected_plan = (
        "enterprise"
        if expected == "enterprise"
        else PLAN_OF_PRICE[sub_in.stripe_price_id]
        if expected == "stripe" and sub_in
        else "free"
    )
    assert result.plan.code == expected_plan
    assert dict(result.limits) == dict(result.plan.limits)
