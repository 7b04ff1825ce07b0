"""The plan catalog: a versioned TOML file, validated strictly when `plans sync` loads it and
read leniently from the database (a catalog synced by a newer version may name limits or
fields this version does not know: they are kept and shown, never fatal)."""

from __future__ import annotations

import functools
import logging
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from orgbill.kit.money import from_minor_units, is_currency_code
from orgbill.plans.limits import UNLIMITED, Limit, Limits

logger = logging.getLogger("orgbill.plans")
DEFAULT_PLANS_FILE = Path(__file__).with_name("catalog.toml")
FREE_PLAN = "free"
ENTERPRISE_PLAN = "enterprise"
# Every limit a plan must state, and its type. "count" limits may be "unlimited".
LIMIT_TYPES: dict[str, Literal["count", "bool", "decimal", "rate"]] = {
    "max_agents": "count",
    "max_members": "count",
    "max_concurrency": "count",
    "max_credits": "count",
    "monthly_credits": "count",
    "api_rate_limit": "rate",
    "max_logs_per_month": "count",
    "log_retention_days": "count",
    "max_turns_per_period": "count",
    "max_relationships": "count",
    "chunk_count": "count",
    "dataset_count": "count",
    "file_storage": "count",
    "message_count": "count",
    "can_record_calls": "bool",
    "can_use_api": "bool",
    "extra_credit_price": "decimal",
}


class CatalogError(ValueError):
    """A plans file that cannot be used; the message names the plan and field."""


@dataclass(frozen=True, slots=True)
class Meter:
    name: str
    limit: str
    kind: Literal["counter", "gauge"]
    enforcement: Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class PlanDef:
    code: str
    name: str
    description: str
    amount: int
    currency: str
    interval: Literal["month", "year"]
    rank: int
    stripe_price_id: str | None
    stripe_lookup_key: str | None
    limits: Limits
    features: tuple[str, ...]
    # Monthly credits normally expire at the end of their month; with rollover they stay.
    credits_rollover: bool = False

    @property
    def price(self) -> int | float:
        """Display price in major units, as the seeds show it (29 for 2900 cents)."""
        value = from_minor_units(self.amount, self.currency)
        return int(value) if value == value.to_integral_value() else float(value)


@dataclass(frozen=True, slots=True)
class Catalog:
    version: int
    plans: dict[str, PlanDef]
    meters: dict[str, Meter]
    _by_stripe_ref: dict[str, str] = field(default_factory=dict)

    @property
    def free(self) -> PlanDef:
        return self.plans[FREE_PLAN]

    def plan_for_price(
        self, price_id: str | None, lookup_key: str | None, legacy_plan_id: str | None
    ) -> PlanDef | None:
        """The one place that decides which plan a Stripe price means: its price id, else its
        lookup key, else its legacy plan id (Stripe plan ids are price ids), as this catalog
        lists them. Called at read time, so a catalog change re-maps stored subscriptions."""
        for ref in (price_id, lookup_key, legacy_plan_id):
            if ref and ref in self._by_stripe_ref:
                return self.plans[self._by_stripe_ref[ref]]
        return None

    def meter_for_limit(self, limit: str) -> Meter | None:
        return next((m for m in self.meters.values() if m.limit == limit), None)


# The largest count limit: quantities are stored exactly with four decimals (credits' type),
# so a limit past this could not be compared with them on every database.
MAX_COUNT_LIMIT = 10**12
# A price per unit (extra_credit_price) in major units: far above what one Stripe payment
# takes, and small enough that price x quantity stays exact in a Decimal.
MAX_MONEY_LIMIT = Decimal(10**9)


def parse_limit(plan: str, name: str, raw: Any, *, strict: bool = True) -> Limit:
    """Strict: a bad or unknown limit is a `CatalogError`. Lenient (reading what is already
    stored): it is kept as an unknown limit, shown as stored."""
    try:
        return _parse_limit(plan, name, raw)
    except CatalogError:
        if strict:
            raise
        _warn_kept_as_stored(name, repr(raw))
        return Limit.unknown(raw)


@functools.lru_cache(maxsize=256)
def _warn_kept_as_stored(name: str, raw: str) -> None:
    # Stored limits are parsed on every read: once per process and value, not per request.
    logger.warning("unknown or invalid limit kept as stored", extra={"limit": name, "raw": raw})


def _parse_limit(plan: str, name: str, raw: Any) -> Limit:
    kind = LIMIT_TYPES.get(name)
    where = f"plan '{plan}', limit '{name}'"
    if kind is None:
        raise CatalogError(f"{where}: unknown limit")
    if kind == "bool":
        if not isinstance(raw, bool):
            raise CatalogError(f"{where}: must be true or false")
        return Limit.flag(raw)
    if kind == "decimal":
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise CatalogError(f"{where}: must be a decimal number")
        try:
            value = Decimal(str(raw))
        except InvalidOperation as exc:
            raise CatalogError(f"{where}: must be a decimal number") from exc
        if not value.is_finite() or value < 0:
            raise CatalogError(f"{where}: must be a non-negative number")
        if value > MAX_MONEY_LIMIT:
            raise CatalogError(f"{where}: at most {MAX_MONEY_LIMIT}")
        return Limit.money(value)
    if raw == UNLIMITED and kind == "count":
        return Limit.unlimited()
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < (1 if kind == "rate" else 0):
        allowed = (
            "a positive integer" if kind == "rate" else 'a non-negative integer or "unlimited"'
        )
        raise CatalogError(f"{where}: must be {allowed}")
    if raw > MAX_COUNT_LIMIT:
        raise CatalogError(f'{where}: at most {MAX_COUNT_LIMIT} (or "unlimited")')
    return Limit.count(raw)


def _text(plan: str, data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"plan '{plan}', field '{key}': must be a non-empty string")
    return value


# The fields a strict parse (`plans sync`) knows; a lenient one (serving a stored catalog a
# newer version may have written) skips the others.
_CATALOG_FIELDS = frozenset({"version", "plans", "meters"})
_PLAN_FIELDS = frozenset(
    {
        "name",
        "description",
        "amount",
        "currency",
        "interval",
        "rank",
        "features",
        "limits",
        "stripe_price_id",
        "stripe_lookup_key",
        "credits_rollover",
    }
)
_METER_FIELDS = frozenset({"limit", "kind", "enforcement"})


def _refuse_unknown(where: str, data: dict[str, Any], known: frozenset[str]) -> None:
    for key in data:
        if key not in known:
            raise CatalogError(f"{where}, field '{key}': unknown field")


def _parse_plan(code: str, data: Any, strict: bool) -> PlanDef:
    if not isinstance(data, dict):
        raise CatalogError(f"plan '{code}': must be a table")
    if strict:
        _refuse_unknown(f"plan '{code}'", data, _PLAN_FIELDS)
    amount = data.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise CatalogError(
            f"plan '{code}', field 'amount': must be a non-negative integer (minor units)"
        )
    interval = data.get("interval")
    if interval not in ("month", "year"):
        raise CatalogError(f"plan '{code}', field 'interval': must be 'month' or 'year'")
    rank = data.get("rank")
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise CatalogError(f"plan '{code}', field 'rank': must be an integer")
    features = data.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise CatalogError(f"plan '{code}', field 'features': must be a list of strings")
    raw_limits = data.get("limits")
    if not isinstance(raw_limits, dict):
        raise CatalogError(f"plan '{code}', field 'limits': must be a table")
    missing = [name for name in LIMIT_TYPES if name not in raw_limits]
    if missing and strict:
        raise CatalogError(f"plan '{code}', limit '{missing[0]}': missing")
    limits = Limits(
        {name: parse_limit(code, name, raw, strict=strict) for name, raw in raw_limits.items()}
    )
    rollover = data.get("credits_rollover", False)
    if not isinstance(rollover, bool):
        if strict:
            raise CatalogError(f"plan '{code}', field 'credits_rollover': must be true or false")
        rollover = False
    currency = _text(code, data, "currency")
    assert currency is not None
    currency = currency.lower()
    if strict and not is_currency_code(currency):
        # Amounts are in its minor unit, so an unknown spelling would price everything wrong.
        raise CatalogError(f"plan '{code}', field 'currency': must be a three-letter ISO code")
    return PlanDef(
        code=code,
        name=_text(code, data, "name") or code,
        description=_text(code, data, "description") or "",
        amount=amount,
        currency=currency,
        interval=interval,
        rank=rank,
        stripe_price_id=_text(code, data, "stripe_price_id", required=False),
        stripe_lookup_key=_text(code, data, "stripe_lookup_key", required=False),
        limits=limits,
        features=tuple(features),
        credits_rollover=rollover,
    )


def _parse_meter(name: str, data: Any, strict: bool) -> Meter:
    if not isinstance(data, dict):
        raise CatalogError(f"meter '{name}': must be a table")
    if strict:
        _refuse_unknown(f"meter '{name}'", data, _METER_FIELDS)
    limit = data.get("limit")
    if not isinstance(limit, str) or LIMIT_TYPES.get(limit) != "count":
        raise CatalogError(f"meter '{name}', field 'limit': must name a count limit")
    if data.get("kind") not in ("counter", "gauge"):
        raise CatalogError(f"meter '{name}', field 'kind': must be 'counter' or 'gauge'")
    if data.get("enforcement") not in ("hard", "soft"):
        raise CatalogError(f"meter '{name}', field 'enforcement': must be 'hard' or 'soft'")
    return Meter(name=name, limit=data["limit"], kind=data["kind"], enforcement=data["enforcement"])


def parse_catalog(data: dict[str, Any], *, strict: bool = True) -> Catalog:
    """`strict=False` reads a catalog that a strict parse accepted once, possibly by a newer
    version: unknown limits and fields are kept or skipped, so serving never fails on them."""
    if strict:
        _refuse_unknown("plans file", data, _CATALOG_FIELDS)
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CatalogError("field 'version': must be a positive integer")
    raw_plans = data.get("plans")
    if not isinstance(raw_plans, dict) or not raw_plans:
        raise CatalogError("field 'plans': must define at least one plan")
    plans = {code: _parse_plan(code, raw, strict) for code, raw in raw_plans.items()}
    for required in (FREE_PLAN, ENTERPRISE_PLAN):
        if required not in plans:
            raise CatalogError(f"plan '{required}': missing (orgbill falls back to it)")
    raw_meters = data.get("meters", {})
    if not isinstance(raw_meters, dict):
        raise CatalogError("field 'meters': must be a table")
    meters: dict[str, Meter] = {}
    for name, raw in raw_meters.items():
        try:
            meters[name] = _parse_meter(name, raw, strict)
        except CatalogError:
            if strict:
                raise
            # A meter on a limit this version does not know: it cannot be enforced here.
            logger.warning("meter skipped", extra={"meter": name})
    by_ref: dict[str, str] = {}
    for plan in plans.values():
        for ref in (plan.stripe_price_id, plan.stripe_lookup_key):
            if ref is None:
                continue
            if ref in by_ref:
                raise CatalogError(f"plan '{plan.code}': Stripe reference '{ref}' is used twice")
            by_ref[ref] = plan.code
    return Catalog(version=version, plans=plans, meters=meters, _by_stripe_ref=by_ref)


def read_plans_file(path: Path | None = None) -> dict[str, Any]:
    """The plans file as a TOML document; any way it cannot be read is a CatalogError (one
    line from the CLI), for `plans sync` and for every server start alike."""
    path = path or DEFAULT_PLANS_FILE
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read plans file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:  # TOML is UTF-8: a UTF-16 save, a binary picked by mistake
        raise CatalogError(
            f"plans file {path} is not UTF-8 text (byte {exc.start}): TOML must be UTF-8"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"plans file {path} is not valid TOML: {exc}") from exc


def load_catalog(path: Path | None = None) -> Catalog:
    return parse_catalog(read_plans_file(path))
