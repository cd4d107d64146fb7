"""The delivery worker: sends due webhooks, signed, and decides what each answer means.

`run()` is the lifespan task; `deliver_due()` is its burst mode (send what is due, then return),
which tests await instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from opentelemetry.trace import SpanKind

from services.notifier.clock import Clock, utcnow
from services.notifier.egress import AllowList, ForbiddenDestination, Resolver, check_destination, system_resolver
from services.notifier.models import DeliveryAttempt, DeliveryState
from services.notifier.poller import Poller
from services.notifier.retry import next_attempt_at
from services.notifier.signing import webhook_headers
from services.notifier.store import deliveries
from services.notifier.store.database import Database
from services.notifier.store.deliveries import Attempted, DueDelivery, Outcome
from shared import metrics, tracing
from shared.logs import log_context
from shared.tasks import start_task

log = logging.getLogger(__name__)


def decide(
    *, attempts: int, status: int | None, retry_after: str | None, now: datetime, schedule: Sequence[float]
) -> Outcome:
    """The outcome of the `attempts`-th attempt, given the answer's status (None: no answer)."""
    if status is not None and 200 <= status < 300:
        return Outcome(DeliveryState.DELIVERED)
    if status == 410:
        return Outcome(DeliveryState.FAILED, disable_reason="endpoint answered 410 Gone")
    retry_at = next_attempt_at(attempts=attempts, now=now, schedule=schedule, status=status, retry_after=retry_after)
    if retry_at is None:
        return Outcome(DeliveryState.FAILED)
    return Outcome(DeliveryState.PENDING, next_attempt_at=retry_at)


class DeliveryWorker(Poller):
    def __init__(
        self,
        *,
        db: Database,
        client: httpx.AsyncClient,
        schedule: Sequence[float],
        total_timeout: float,
        batch_size: int = 20,
        poll_interval: float = 1.0,
        clock: Clock = utcnow,
        allow: AllowList = AllowList(),
        resolve: Resolver = system_resolver,
        disable_after: timedelta | None = timedelta(days=5),
    ) -> None:
        super().__init__(poll_interval)
        self._db = db
        self._allow, self._resolve, self._disable_after = allow, resolve, disable_after
        self._client = client
        self._schedule = tuple(schedule)
        self._total_timeout = total_timeout
        self._batch_size = batch_size
        self._clock = clock
        # A claim outlives the slowest attempt, so a crashed sender's delivery comes back later.
        self._lease = timedelta(seconds=total_timeout + 30)
        # At most one claim's worth of attempts in flight, whether claimed here or handed over.
        self._sending = asyncio.Semaphore(batch_size)
        self._handed_over: set[asyncio.Task] = set()

    async def burst(self) -> int:
        return await self.deliver_due()

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Send every delivery due by `now` (default: the clock, read once), batch after batch; returns how many.

        The instant is fixed for the whole burst: a retry that falls due while the burst runs waits
        for the next one, so a slow attempt never makes the same burst send its retry early.
        """
        async with self._busy:
            return await self._deliver_due(now or self._clock())

    async def _deliver_due(self, now: datetime) -> int:
        sent = 0
        while not self._stopping.is_set():
            due = await deliveries.claim_due(self._db, now=now, limit=self._batch_size, lease=self._lease)
            if not due:
                break
            await asyncio.gather(*(self._send_all(group) for group in _by_endpoint(due)))
            sent += len(due)
        return sent

    @property
    def lease(self) -> timedelta:
        """How long a claim holds a delivery: longer than its slowest attempt."""
        return self._lease

    @property
    def busy(self) -> bool:
        """True while a burst runs or deliveries handed over by `send_now` are being sent."""
        return super().busy or bool(self._handed_over)

    def send_now(self, due: Sequence[DueDelivery]) -> None:
        """Send deliveries their recorder has just claimed for `lease` (see `invitations.recording`), at once:
        no claim, and no waiting for the polling loop's round in hand."""
        for group in _by_endpoint(due):
            task = start_task(self._send_all(group), name="handed-over deliveries")
            self._handed_over.add(task)
            task.add_done_callback(self._handed_over.discard)

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            # What was handed over is sent and recorded before the worker stops.
            await asyncio.gather(*self._handed_over, return_exceptions=True)

    async def _send_all(self, due: Sequence[DueDelivery]) -> None:
        """One attempt at each (of one endpoint), concurrently; then every outcome recorded in one transaction."""
        attempted = await asyncio.gather(*(self._attempt(item) for item in due))
        await deliveries.record_attempts(self._db, attempted, disable_after=self._disable_after)
        for item in attempted:
            with log_context(tenant=item.due.tenant, invitation_id=item.due.invitation_id):
                _note(item)

    async def _attempt(self, due: DueDelivery) -> Attempted:
        """One attempt, its invitation's ids on every line logged meanwhile."""
        with log_context(tenant=due.tenant, invitation_id=due.invitation_id):
            async with self._sending:
                return await self._send_and_decide(due)

    async def _send_and_decide(self, due: DueDelivery) -> Attempted:
        attempted_at, started = self._clock(), time.perf_counter()
        with tracing.span(
            "deliver invitation.created", parent=due.traceparent, kind=SpanKind.CLIENT,
            attempt=due.attempts + 1, **{"webhook.message_id": due.message_id},
        ) as span:
            status, retry_after, error = await self._send(due)
            span.set_attribute("http.response.status_code", status or 0)
        duration_ms = round((time.perf_counter() - started) * 1000)
        outcome = decide(
            attempts=due.attempts + 1,
            status=status,
            retry_after=retry_after,
            now=self._clock(),
            schedule=self._schedule,
        )
        attempt = DeliveryAttempt(attempted_at=attempted_at, status_code=status, duration_ms=duration_ms, error=error)
        return Attempted(due, attempt, outcome)

    async def _send(self, due: DueDelivery) -> tuple[int | None, str | None, str | None]:
        """One POST to the checked address: (status, Retry-After, error)."""
        try:
            async with asyncio.timeout(self._total_timeout):
                # Resolved and checked now, not at subscription: DNS may have changed since.
                destination = await check_destination(due.url, allow=self._allow, resolve=self._resolve)
                headers = webhook_headers(due.secrets, due.message_id, due.payload)
                headers["host"] = destination.host_header
                # The question's trace, for a receiver that traces too (not part of the signature).
                headers.update(dict((name, value.decode()) for name, value in tracing.headers(None)))
                response = await self._client.post(
                    destination.pinned_url,
                    content=due.payload,
                    headers=headers,
                    extensions={"sni_hostname": destination.host},
                )
        except ForbiddenDestination as exc:
            return None, None, f"refused: {exc}"[:1000]
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            return None, None, f"{type(exc).__name__}: {exc}"[:1000]
        status = response.status_code
        return status, response.headers.get("retry-after"), None if response.is_success else f"HTTP {status}"


def loggable_url(url: str) -> str:
    """The endpoint without what may be a credential: no user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def _by_endpoint(due: Sequence[DueDelivery]) -> list[list[DueDelivery]]:
    """The deliveries per subscription, in their order: a slow endpoint holds up only its own outcomes."""
    groups: dict[str, list[DueDelivery]] = {}
    for item in due:
        groups.setdefault(item.subscription_id, []).append(item)
    return list(groups.values())


def _note(item: Attempted) -> None:
    """The metrics and the log line of one recorded attempt."""
    due, attempt, outcome = item.due, item.attempt, item.outcome
    status, error = attempt.status_code, attempt.error
    metrics.DELIVERIES.labels(str(status) if status else "error", str(outcome.state)).inc()
    metrics.DELIVERY_ATTEMPT.observe(due.attempts + 1)
    metrics.DELIVERY_SECONDS.observe(attempt.duration_ms / 1000)
    log.info(
        "delivery %s to %s: %s -> %s", due.message_id, loggable_url(due.url), status or error, outcome.state,
        extra={
            "event": "delivery_attempt", "delivery_id": due.id, "message_id": due.message_id,
            "subscription_id": due.subscription_id, "attempt": due.attempts + 1, "status": status, "error": error,
            "state": outcome.state, "next_attempt_at": outcome.next_attempt_at, "duration_ms": attempt.duration_ms,
        },
    )
