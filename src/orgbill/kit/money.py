"""Amounts as Stripe takes them: integers in a currency's minor unit.

Stripe's currency rules (its "Supported currencies" page): most currencies have two decimals;
the zero-decimal ones are charged in whole units; the three-decimal ones take three, but an
amount charged must end in 0; ISK is charged in whole krónur yet written with two decimals.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
# Minor units per smallest amount Stripe will charge, where that is more than one.
_CHARGE_STEP = {**dict.fromkeys(THREE_DECIMAL, 10), "isk": 100}
_CODE = re.compile(r"[a-z]{3}")
# Stripe's minimum charge amounts, in major units (its "Minimum and maximum charge amounts"
# table). The minimum is Stripe's in the account's settlement currency; a currency listed
# here is taken to settle as itself, one not listed to have no minimum beyond one unit.
_MINIMUM_CHARGE = {
    code: Decimal(amount)
    for code, amount in {
        "usd": "0.50",
        "aed": "2.00",
        "aud": "0.50",
        "bgn": "1.00",
        "brl": "0.50",
        "cad": "0.50",
        "chf": "0.50",
        "czk": "15.00",
        "dkk": "2.50",
        "eur": "0.50",
        "gbp": "0.30",
        "hkd": "4.00",
        "huf": "175.00",
        "inr": "0.50",
        "jpy": "50",
        "mxn": "10",
        "myr": "2",
        "nok": "3.00",
        "nzd": "0.50",
        "pln": "2.00",
        "ron": "2.00",
        "sek": "3.00",
        "sgd": "0.50",
        "thb": "10",
    }.items()
}


def is_currency_code(currency: str) -> bool:
    """A three-letter ISO 4217 code, lowercase as Stripe spells it."""
    return _CODE.fullmatch(currency) is not None


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit as Stripe counts them (ISK: two)."""
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    return 3 if code in THREE_DECIMAL else 2


def to_minor_units(amount: Decimal, currency: str) -> Decimal:
    """A major-unit amount (a display price) in the currency's minor units, unrounded."""
    return amount.scaleb(minor_unit_exponent(currency))


def from_minor_units(amount: int, currency: str) -> Decimal:
    return Decimal(amount).scaleb(-minor_unit_exponent(currency))


def chargeable(exact_minor: Decimal, currency: str) -> int:
    """An exact minor-unit amount rounded half-up once to what Stripe can charge in the
    currency: a whole minor unit, or the multiple of 10 (three decimals) or 100 (ISK) it
    requires."""
    step = _CHARGE_STEP.get(currency.lower(), 1)
    return int((exact_minor / step).quantize(Decimal(1), ROUND_HALF_UP)) * step


def minimum_charge(currency: str) -> int:
    """The smallest amount, in minor units, Stripe charges in one payment in the currency."""
    minimum = _MINIMUM_CHARGE.get(currency.lower())
    step = _CHARGE_STEP.get(currency.lower(), 1)
    return max(step, int(to_minor_units(minimum, currency))) if minimum is not None else step
