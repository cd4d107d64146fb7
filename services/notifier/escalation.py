"""Escalation: a thread nobody answered gets the next candidates, round by round.

`escalate_due` does what is due and returns, which tests await with an injected clock; `run()`
repeats it in the lifespan.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from services.notifier.clock import Clock, utcnow
from services.notifier.policy import Policies
from services.notifier.poller import Poller
from services.notifier.store import threads
from services.notifier.store.database import Database
from shared import metrics
from shared.logs import log_context


class EscalationWorker(Poller):
    """Invites a thread's next candidates when nobody invited has replied after the policy's delay."""

    def __init__(
        self,
        *,
        db: Database,
        policies: Policies,
        on_invited: Callable[[], None],
        clock: Clock = utcnow,
        poll_interval: float = 30.0,
        batch_size: int = 20,
        lease: timedelta = timedelta(minutes=5),
    ) -> None:
        super().__init__(poll_interval)
        self._db, self._policies, self._on_invited = db, policies, on_invited
        self._clock, self._batch_size, self._lease = clock, batch_size, lease

    async def burst(self) -> int:
        return await self.escalate_due()

    async def escalate_due(self, now: datetime | None = None) -> int:
        """Escalate every thread due by `now` (default: the clock); returns how many were invited."""
        async with self._busy:
            invited = await self._escalate(now or self._clock())
        if invited:
            self._on_invited()
        return invited

    async def _escalate(self, now: datetime) -> int:
        invited = 0
        while not self._stopping.is_set():
            due = await threads.claim_due(self._db, now=now, limit=self._batch_size, lease=self._lease)
            if not due:
                break
            for tenant, thread_id in due:
                with log_context(tenant=tenant, thread_id=thread_id):
                    created = await threads.escalate(
                        self._db, tenant=tenant, thread_id=thread_id, policy=self._policies.for_tenant(tenant), now=now
                    )
                invited += len(created)
                metrics.INVITATIONS.labels("escalation").inc(len(created))
        return invited
