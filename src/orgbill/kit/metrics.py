"""The Prometheus metrics every domain increments (a leaf: knows no domain).

Under `orgbill serve --workers N` each worker writes its samples to
``PROMETHEUS_MULTIPROC_DIR`` (set up by the CLI before the workers start) and `/metrics`
aggregates them, so any worker answers for the whole server.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client picks its value store when first imported (just above): read the same moment.
MULTIPROCESS = bool(os.environ.get(MULTIPROC_ENV))

HTTP_REQUESTS = Counter(
    "orgbill_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "orgbill_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMIT_REFUSALS = Counter(
    "orgbill_rate_limit_refusals_total",
    "Requests refused with 429 rate_limited.",
)
STRIPE_EVENTS = Counter(
    "orgbill_stripe_events_total",
    "Stripe webhook events received, by event type and processing status.",
    ["type", "status"],
)
USAGE_EVENTS_ACCEPTED = Counter(
    "orgbill_usage_events_accepted_total",
    "Usage events accepted (recorded, not duplicates).",
)
WEBHOOK_DELIVERIES = Counter(
    "orgbill_webhook_deliveries_total",
    "Outbound webhook delivery attempts, by outcome.",
    ["status"],
)
DB_POOL_IN_USE = Gauge(
    "orgbill_db_pool_connections_in_use",
    "Database connections checked out of the pool right now.",
    multiprocess_mode="livesum",
)


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of every worker in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
