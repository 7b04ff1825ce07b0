"""Settings, read once from the environment (``ORGBILL_*``)."""

from __future__ import annotations

import logging
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Secrets that ship in the repo for local use; refused outside the dev environment.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105
DEV_API_KEY_SECRET = "dev-only-api-key-secret-change-me-0123456789"  # noqa: S105

# The database drivers a URL may name, and the async driver orgbill runs each on
# (db.normalize_database_url applies it); anything else is refused with the settings.
ASYNC_DATABASE_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
# What redis-py's Redis.from_url accepts.
REDIS_SCHEMES = ("redis", "rediss", "unix")
# Rates (requests per second) and burst windows the buckets' arithmetic handles: a rate of
# one request per 1000 s still refills a token in ~17 minutes, so Retry-After and the
# X-RateLimit-Reset date stay representable; inf or nan made every limited request a 500.
MIN_RATE, MAX_RATE = 1e-3, 1e6
_DAY = 24 * 3600.0
MIN_BURST_SECONDS, MAX_BURST_SECONDS = 1e-3, 86_400.0
Rate = Annotated[float, Field(ge=MIN_RATE, le=MAX_RATE, allow_inf_nan=False)]


class Settings(BaseSettings):
    # A refused value is never echoed in the error: URLs and secrets carry passwords.
    # No setting is infinite or NaN (`inf` passes `gt=0`, then overflows where it is used).
    model_config = SettingsConfigDict(
        env_prefix="ORGBILL_",
        env_file=None,
        extra="ignore",
        hide_input_in_errors=True,
        allow_inf_nan=False,
    )

    env: Literal["dev", "test", "production"] = "dev"
    database_url: str = "sqlite+aiosqlite:///./orgbill.db"
    # PostgreSQL only: a schema to put on the search_path (tests use a throwaway one).
    database_schema: str | None = None
    redis_url: str | None = None
    # Token buckets per org / per client IP (seed 004). Off only to measure its cost.
    rate_limit_enabled: bool = True
    # Namespace of the shared buckets in Redis (one per deployment; tests use their own).
    rate_limit_key_prefix: str = "orgbill:ratelimit:"
    # Requests per second per client IP (calls without valid credentials) and per user (a
    # valid token acting for no organization); organizations get their plan's api_rate_limit.
    public_rate_limit: Rate = 20
    user_rate_limit: Rate = 20
    # A bucket holds this many seconds of its rate (at least one request): the idle burst.
    rate_limit_burst_seconds: float = Field(
        default=2, ge=MIN_BURST_SECONDS, le=MAX_BURST_SECONDS, allow_inf_nan=False
    )
    # Peers whose X-Forwarded-For is believed (comma-separated CIDRs); none by default.
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = []

    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    # RS256 option: PEM public key to verify tokens and private key to sign them.
    jwt_public_key: str | None = None
    jwt_private_key: str | None = None
    jwt_ttl_seconds: int = Field(default=3600, ge=60)
    impersonation_ttl_seconds: int = Field(default=900, ge=60)
    # Keyed hash (HMAC-SHA256) secret for API keys: a database dump alone cannot verify keys.
    api_key_secret: str = DEV_API_KEY_SECRET

    cookie_secure: bool = True
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    plans_file: Path | None = None

    # Larger request bodies are refused (413) before they are parsed.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # Signs pagination cursors; derived from the API key secret when unset.
    cursor_secret: str | None = None

    # Outbound webhooks (webhooks_out/): the dispatcher runs in every server process unless off
    # (operators may run `orgbill webhooks dispatch` as a separate worker instead).
    webhook_dispatch: bool = True
    # How often the dispatcher looks for due deliveries when nothing woke it (a commit that
    # wrote events wakes it at once in this process).
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # How often it compares each contract org's plan with the last one announced (time-driven
    # plan changes: a contract starting or ending); at most 30 s by contract.
    webhook_sweep_seconds: float = Field(default=10.0, gt=0, le=30)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Retries: exponential backoff from the base, capped, with jitter, for the retry window;
    # an endpoint failing continuously for the disable window is disabled.
    # (Bounded so every delay stays a representable datetime: an absurd one is refused.)
    webhook_backoff_base_seconds: float = Field(default=5.0, gt=0, le=_DAY)
    webhook_backoff_max_seconds: float = Field(default=3 * 3600.0, gt=0, le=7 * _DAY)
    webhook_retry_window_seconds: float = Field(default=24 * 3600.0, gt=0, le=365 * _DAY)
    webhook_disable_after_seconds: float = Field(default=3 * 24 * 3600.0, gt=0, le=365 * _DAY)
    # Concurrent sends: in all, and to one endpoint (for different organizations).
    webhook_max_in_flight: int = Field(default=64, ge=1, le=1000)
    webhook_max_in_flight_per_endpoint: int = Field(default=8, ge=1, le=100)

    log_level: str = "INFO"
    access_log: bool = True
    # Health probes and scrapes (/healthz, /readyz, /metrics) fill logs with noise: off by default.
    access_log_probes: bool = False

    # Checked here, not where they are first used, so every command (and `serve --check`)
    # refuses them in one line instead of a traceback from SQLAlchemy, redis-py or logging.
    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
            url.port  # noqa: B018 (a port that is not a number raises only when read)
        except (ArgumentError, ValueError):
            raise ValueError("not a database URL (sqlite:///FILE or postgresql://…)") from None
        if url.drivername not in ASYNC_DATABASE_DRIVERS:
            raise ValueError(f"unsupported database {url.drivername!r}: use sqlite or postgresql")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if not value:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises for a port that is not a number or out of range)
        except ValueError as exc:
            raise ValueError(f"not a Redis URL: {exc}") from None
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return [ip_network(part.strip()) for part in value.split(",") if part.strip()]
            except ValueError as exc:
                raise ValueError(f"ORGBILL_TRUSTED_PROXIES: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.env != "dev":
            if self.jwt_algorithm == "HS256" and self.jwt_secret == DEV_JWT_SECRET:
                raise ValueError("ORGBILL_JWT_SECRET must be set outside ORGBILL_ENV=dev")
            if self.api_key_secret == DEV_API_KEY_SECRET:
                raise ValueError("ORGBILL_API_KEY_SECRET must be set outside ORGBILL_ENV=dev")
        if self.jwt_algorithm == "HS256" and len(self.jwt_secret) < 32:
            raise ValueError("ORGBILL_JWT_SECRET must be at least 32 characters")
        if self.jwt_algorithm == "RS256" and not self.jwt_public_key:
            raise ValueError("ORGBILL_JWT_PUBLIC_KEY is required with RS256")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
