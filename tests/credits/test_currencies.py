"""Credit purchases and displayed prices in Stripe's currency classes: two decimals (usd),
zero decimals (clp, jpy, ...: no minor unit), three decimals (kwd: charged in tens of fils)
and ISK (whole krónur written with two decimals)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from orgbill.kit.money import THREE_DECIMAL, ZERO_DECIMAL, chargeable, to_minor_units
from orgbill.plans.catalog import DEFAULT_PLANS_FILE
from tests.fixtures.app import client_for, running_app
from tests.fixtures.databases import migrated_settings
from tests.fixtures.factories import API, create_org
from tests.fixtures.stripe import FakeStripe

URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}


def _catalog_in(tmp_path: Path, currency: str, amount: int, credit_price: str) -> Path:
    """The shipped catalog with the free plan priced in `currency`: `amount` minor units a
    month (a display price only: the free plan has no Stripe price) and `credit_price` a
    credit."""
    text = DEFAULT_PLANS_FILE.read_text()
    start = text.index("[plans.free]\n")
    end = text.index("\n[plans.pro]\n", start)  # the free plan and its limits table
    section = text[start:end].replace('currency = "usd"', f'currency = "{currency}"')
    section = re.sub(r"(?m)^amount = .*$", f"amount = {amount}", section)
    section = re.sub(
        r"(?m)^extra_credit_price = .*$", f'extra_credit_price = "{credit_price}"', section
    )
    path = tmp_path / f"plans-{currency}.toml"
    path.write_text(text[:start] + section + text[end:])
    return path


@pytest.mark.parametrize(
    ("currency", "amount", "credit_price", "quantity", "charged", "price"),
    [
        # 67 x 0.015 USD = 100.5 cents, rounded half-up to 101 (over Stripe's 50-cent minimum).
        ("usd", 500, "0.015", 67, "101", 5),
        # 10 x 50 CLP = 500 pesos: the peso is CLP's minor unit (was charged as 50,000).
        ("clp", 5000, "50", 10, "500", 5000),
        # 71 x 0.7 JPY = 49.7 yen, rounded half-up to 50 (Stripe's minimum, 50 yen).
        ("jpy", 980, "0.7", 71, "50", 980),
        # 1 x 5.124 KWD = 5124 fils; Stripe charges three-decimal amounts in tens: 5120.
        ("kwd", 5125, "5.124", 1, "5120", 5.125),
        # 3 x 0.5 ISK = 1.5 krónur, charged in whole krónur written with two decimals: 200.
        ("isk", 50000, "0.5", 3, "200", 500),
    ],
)
async def test_a_credit_purchase_charges_what_stripe_takes_in_the_plans_currency(
    backend: str,
    tmp_path: Path,
    stripe_api: FakeStripe,
    currency: str,
    amount: int,
    credit_price: str,
    quantity: int,
    charged: str,
    price: float,
) -> None:
    plans = _catalog_in(tmp_path, currency, amount, credit_price)
    with migrated_settings(backend, tmp_path, plans_file=plans) as settings:
        wired = settings.model_copy(update={"stripe_api_base": stripe_api.url})
        async with running_app(wired) as app, client_for(app) as client:
            org = await create_org(client)
            response = await client.post(
                f"{API}/credits/checkout",
                json={"quantity": quantity, **URLS},
                headers=org.key_headers,
            )
            assert response.status_code == 200, response.text
            form = stripe_api.calls("/v1/checkout/sessions")[-1].form
            assert form["line_items[0][price_data][currency]"] == currency
            assert form["line_items[0][price_data][unit_amount]"] == charged
            shown = (await client.get(f"{API}/plans", headers=org.key_headers)).json()
            [free] = [plan for plan in shown["data"] if plan["code"] == "free"]
            assert free["currency"] == currency and free["price"] == price


def test_every_stripe_currency_class_rounds_once_to_what_stripe_charges() -> None:
    assert len(ZERO_DECIMAL) == 16 and len(THREE_DECIMAL) == 5
    for code in ZERO_DECIMAL:
        assert to_minor_units(Decimal("12.5"), code) == Decimal("12.5")
        assert chargeable(Decimal("12.5"), code) == 13
    for code in THREE_DECIMAL:
        assert to_minor_units(Decimal("1.2345"), code) == Decimal("1234.5")
        assert chargeable(Decimal("1234.5"), code) == 1230  # last digit 0, half-up on tens
        assert chargeable(Decimal("1235"), code) == 1240
    assert chargeable(Decimal("149.99"), "isk") == 100 and chargeable(Decimal("150"), "ISK") == 200
    assert chargeable(Decimal("1234.5"), "usd") == 1235 and chargeable(Decimal("0.4"), "eur") == 0
