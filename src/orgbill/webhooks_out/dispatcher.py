"""Delivers committed outbox events: a task in every server process (main.py's lifespan) or
`orgbill webhooks dispatch` alone.

Each round claims due deliveries in one short transaction (the head of each (endpoint,
organization) queue only, leased with `locked_until`; PostgreSQL: FOR UPDATE SKIP LOCKED, so
instances share the work), then sends them concurrently with no transaction open, then records
each attempt in its own short transaction. A slow endpoint holds only its own sends (bounded
per endpoint); requests never wait on any of it.

The same loop sweeps, every `webhook_sweep_seconds`, the orgs whose plan can change by time
alone (an enterprise contract starting or ending) and announces what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.config import Settings
from orgbill.db import Database
from orgbill.entitlements import service as entitlements
from orgbill.entitlements.resolver import ContractInput, contract_active
from orgbill.kit.metrics import WEBHOOK_DELIVERIES
from orgbill.kit.time import isoformat_z, utcnow
from orgbill.models import Organization, WebhookDeliveryStatus
from orgbill.plans.store import CatalogStore
from orgbill.webhooks_out import outbox, repository
from orgbill.webhooks_out.events import webhook_id
from orgbill.webhooks_out.repository import ClaimedDelivery
from orgbill.webhooks_out.signing import endpoint_secret, signed_headers

logger = logging.getLogger("orgbill.webhooks_out")
# A claim is held this much longer than a send may take: never two senders at one moment.
_LEASE_MARGIN_SECONDS = 30.0
_ERROR_TEXT_LIMIT = 500
_STOP_GRACE_SECONDS = 2.0


def backoff_seconds(attempts: int, settings: Settings) -> float:
    """Delay before the next try after `attempts` failed ones: exponential, capped, jittered
    (±20%) so a recovering receiver is not hit by every retry at once."""
    delay = min(
        settings.webhook_backoff_max_seconds,
        settings.webhook_backoff_base_seconds * 2 ** max(0, attempts - 1),
    )
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not a secret)


def request_body(event_type: str, created_at: datetime, data: dict[str, object]) -> str:
    return json.dumps(
        {"type": event_type, "timestamp": isoformat_z(created_at), "data": data},
        separators=(",", ":"),
    )


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A finished send, waiting to be written with the next round's claim."""

    delivery: ClaimedDelivery
    values: dict[str, object]
    outcome: str  # delivered | failed | retrying (the metric's status label)
    at: datetime


class Dispatcher:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        store: CatalogStore,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._database = database
        self._settings = settings
        self._store = store
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=settings.webhook_max_in_flight),
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._per_endpoint: Counter[uuid.UUID] = Counter()
        self._attempts: list[_Attempt] = []
        self._failing = False
        self._next_sweep = 0.0

    # Lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        outbox.register_waker(self.wake)
        self._task = asyncio.create_task(self.run_forever(), name="orgbill-webhooks-dispatcher")

    async def stop(self) -> None:
        outbox.unregister_waker(self.wake)
        # The flag, not only the cancellation, ends the loop: on Python 3.11 `wait_for` drops
        # a cancellation that lands as its wait completes (a wake-up at the same moment), and
        # the loop would poll on forever while shutdown awaited it.
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            # wait(), not `await task`: the caller's own cancellation still reaches it.
            await asyncio.wait({self._task})
        if self._sends:
            # In-flight sends get a moment to finish; any cut short keeps its lease and is
            # sent again after it runs out (at least once, never twice at one moment).
            _, pending = await asyncio.wait(self._sends, timeout=_STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._attempts:
            with contextlib.suppress(Exception):
                await self._record_and_claim(0, [])
        await self._client.aclose()

    def wake(self) -> None:
        """Thread-safe: commits in any thread (tests run servers in threads) may call it."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    async def run_forever(self) -> None:
        while not self._stopping:
            try:
                claimed = await self.run_once()
                if self._failing:
                    self._failing = False
                    logger.warning("webhook dispatch recovered")
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database outage must not kill the loop: try again at the next poll, and
                # say so once per outage, not once per poll.
                if not self._failing:
                    self._failing = True
                    logger.exception("webhook dispatch round failed; retrying every poll")
                claimed = 0
            if claimed or self._stopping:
                continue  # there may be more due right now (or the loop is to end)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.webhook_poll_seconds)
            self._wake.clear()

    async def run_once(self) -> int:
        """One round: sweep if due; then, in one short transaction, record the attempts that
        finished since the last round and claim what is due; start sending it. Returns how
        many deliveries it claimed."""
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self._settings.webhook_sweep_seconds
            await self.sweep()
        free = self._settings.webhook_max_in_flight - len(self._sends)
        if free <= 0 and not self._attempts:
            return 0
        if not self._attempts and not await self._anything_due():
            return 0  # idle: no write transaction (and on SQLite no write lock) per poll
        cap = self._settings.webhook_max_in_flight_per_endpoint
        busy = [endpoint for endpoint, n in self._per_endpoint.items() if n >= cap]
        claimed = await self._record_and_claim(max(0, free), busy)
        for delivery in claimed:
            self._per_endpoint[delivery.endpoint_id] += 1
            task = asyncio.create_task(self._send(delivery))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
        return len(claimed)

    async def drain(self) -> None:
        """Runs rounds until nothing is due, in flight or unrecorded (`orgbill webhooks
        dispatch --once`, benchmarks); callers bound it with `asyncio.timeout`."""
        while True:
            self._wake.clear()
            if await self.run_once():
                continue
            if self._sends:
                await asyncio.wait(self._sends, return_when=asyncio.FIRST_COMPLETED)
            elif not self._attempts and not self._wake.is_set():
                return

    # Claim, send, record

    async def _anything_due(self) -> bool:
        async with self._database.reader() as session:
            return await repository.any_due(session, utcnow())

    async def _record_and_claim(self, limit: int, busy: list[uuid.UUID]) -> list[ClaimedDelivery]:
        attempts, self._attempts = self._attempts, []
        now = utcnow()
        lease = now + timedelta(
            seconds=self._settings.webhook_timeout_seconds + _LEASE_MARGIN_SECONDS
        )
        try:
            async with self._database.writer() as session, session.begin():
                disabled = await self._record(session, attempts) if attempts else []
                kept: list[ClaimedDelivery] = []
                if limit > 0:
                    kept = await self._claim(session, now, lease, limit, busy)
        except BaseException:
            # Nothing of it committed: record these again next round (their leases hold).
            self._attempts = attempts + self._attempts
            raise
        for attempt in attempts:
            WEBHOOK_DELIVERIES.labels(status=attempt.outcome).inc()
        for endpoint_id in disabled:
            logger.warning(
                "webhook endpoint disabled after failing continuously",
                extra={"endpoint": str(endpoint_id)},
            )
        return kept

    async def _claim(
        self,
        session: AsyncSession,
        now: datetime,
        lease: datetime,
        limit: int,
        busy: list[uuid.UUID],
    ) -> list[ClaimedDelivery]:
        candidates = await repository.due_heads(session, now, lease, limit, busy)
        # One round may find several of one endpoint's queues due: take them within its cap
        # (the rest stay unleased: due for the next round).
        cap = self._settings.webhook_max_in_flight_per_endpoint
        taken: Counter[uuid.UUID] = Counter(self._per_endpoint)
        kept = []
        for delivery in candidates:
            if taken[delivery.endpoint_id] < cap:
                taken[delivery.endpoint_id] += 1
                kept.append(delivery)
        if kept:
            await repository.lease(session, [d.id for d in kept], lease)
        return kept

    async def _send(self, delivery: ClaimedDelivery) -> None:
        try:
            try:
                status_code, error, latency_ms = await self._post(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not even a request sent (preparing it failed): still an attempt, or the
                # delivery is leased again and again, never `failed`, holding its queue.
                logger.exception("webhook delivery failed", extra={"delivery": str(delivery.id)})
                status_code, error, latency_ms = None, _error_text(exc), 0
            self._attempts.append(self._attempt(delivery, status_code, error, latency_ms))
        finally:
            self._per_endpoint[delivery.endpoint_id] -= 1
            if self._per_endpoint[delivery.endpoint_id] <= 0:
                del self._per_endpoint[delivery.endpoint_id]
            # The attempt is recorded, and its queue's next delivery claimed, next round.
            self._wake.set()

    async def _post(self, delivery: ClaimedDelivery) -> tuple[int | None, str | None, int]:
        body = request_body(delivery.event_type, delivery.event_created_at, delivery.data)
        secret = endpoint_secret(self._settings.api_key_secret, delivery.secret_nonce)
        # The webhook-id is the event's: the same on every retry, so receivers can dedupe.
        headers = signed_headers(secret, webhook_id(delivery.event_id), utcnow(), body)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.webhook_timeout_seconds):
                response = await self._client.post(delivery.url, content=body, headers=headers)
        except TimeoutError:
            return None, "Timed out", _ms_since(started)
        except httpx.HTTPError as exc:
            return None, _error_text(exc), _ms_since(started)
        except Exception as exc:
            # httpx raises more than its own errors while building a request (idna's
            # ValueError for a host it cannot encode, from a URL stored before the validator
            # refused it): a failed attempt like any other, so the delivery ends `failed`.
            logger.warning(
                "webhook request could not be sent",
                extra={"delivery": str(delivery.id), "error": type(exc).__name__},
            )
            return None, _error_text(exc), _ms_since(started)
        latency = _ms_since(started)
        if 200 <= response.status_code < 300:
            return response.status_code, None, latency
        return response.status_code, f"HTTP {response.status_code}", latency

    def _attempt(
        self,
        delivery: ClaimedDelivery,
        status_code: int | None,
        error: str | None,
        latency_ms: int,
    ) -> _Attempt:
        """What an attempt changes, decided when it ends (its retry delay counts from then).
        The retry window counts from the delivery's own first attempt, so time spent waiting
        behind earlier deliveries of its queue does not use it up."""
        now = utcnow()
        settings = self._settings
        values: dict[str, object] = {
            "last_attempt_at": now,
            "last_status_code": status_code,
            "last_latency_ms": latency_ms,
            "last_error": error,
        }
        window_started = delivery.retry_window_started_at
        if window_started is None:
            window_started = now
            values["retry_window_started_at"] = now
        if error is None:
            outcome = WebhookDeliveryStatus.DELIVERED.value
            values.update(status=outcome, delivered_at=now)
        elif now - window_started >= timedelta(seconds=settings.webhook_retry_window_seconds):
            outcome = WebhookDeliveryStatus.FAILED.value
            values.update(status=outcome)
        else:
            outcome = "retrying"
            delay = backoff_seconds(delivery.attempts + 1, settings)
            values.update(next_attempt_at=now + timedelta(seconds=delay))
        return _Attempt(delivery=delivery, values=values, outcome=outcome, at=now)

    async def _record(self, session: AsyncSession, attempts: list[_Attempt]) -> list[uuid.UUID]:
        """Writes the attempts, then each endpoint's health from its latest attempt (one
        statement for all that succeeded). Returns the endpoints this disabled."""
        latest: dict[uuid.UUID, _Attempt] = {}
        for attempt in attempts:
            if not await repository.record_attempt(session, attempt.delivery, attempt.values):
                continue  # our lease ran out and another dispatcher took it: its record counts
            endpoint_id = attempt.delivery.endpoint_id
            if endpoint_id not in latest or latest[endpoint_id].at <= attempt.at:
                latest[endpoint_id] = attempt
        succeeded = [e for e, a in latest.items() if a.outcome == WebhookDeliveryStatus.DELIVERED]
        if succeeded:
            await repository.endpoints_succeeded(session, succeeded)
        window = timedelta(seconds=self._settings.webhook_disable_after_seconds)
        reason = f"Every delivery attempt failed for {_describe(window)}"
        disabled = []
        for endpoint_id, attempt in latest.items():
            if attempt.outcome != WebhookDeliveryStatus.DELIVERED and (
                await repository.endpoint_failed(
                    session, endpoint_id, attempt.at, attempt.at - window, reason
                )
            ):
                disabled.append(endpoint_id)
        return disabled

    # Time-driven plan changes

    async def sweep(self) -> int:
        """Announces plan changes no request made: a contract that started or ended by time.
        Cheap when nothing changed: one read of the contracts and their announcements."""
        now = utcnow()
        async with self._database.reader() as session:
            watches = await repository.contract_watches(session)
        announced = 0
        for watch in watches:
            active = contract_active(ContractInput(watch.starts_at, watch.ends_at), now)
            if (watch.announced_source == "enterprise") == active:
                continue
            async with self._database.writer() as session, session.begin():
                org = await session.get(Organization, watch.organization_id)
                if org is None:
                    continue
                plan = await entitlements.effective_plan(session, org, self._store, now)
                if await outbox.announce_plan(session, org.id, plan.identity):
                    announced += 1
        return announced


def _describe(window: timedelta) -> str:
    seconds = window.total_seconds()
    if seconds >= 86400 and seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{seconds:g} seconds"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_ERROR_TEXT_LIMIT]


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
