"""Responses out: what invitees said, published as `invitation.responded` for the matcher to learn from.

`publish_pending` publishes what is stored and unpublished and returns, which tests await;
`run()` repeats it in the lifespan.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from services.notifier.clock import Clock, utcnow
from services.notifier.poller import Poller
from services.notifier.store import responses
from services.notifier.store.database import Database
from shared.events import InvitationResponded


class ResponsePublisher(Poller):
    """Publishes stored responses as `invitation.responded`; what the broker refused is sent later."""

    def __init__(
        self,
        *,
        db: Database,
        send: Callable[[Sequence[InvitationResponded]], Awaitable[object]],
        clock: Clock = utcnow,
        poll_interval: float = 30.0,
    ) -> None:
        super().__init__(poll_interval)
        self._db, self._send, self._clock = db, send, clock

    async def burst(self) -> int:
        return await self.publish_pending()

    async def publish_pending(self) -> int:
        """Publish every unpublished response; returns how many."""
        published = 0
        async with self._busy:
            while count := await responses.publish_unpublished(self._db, send=self._send, now=self._clock()):
                published += count
        return published
