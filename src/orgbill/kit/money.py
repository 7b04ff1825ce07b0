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
