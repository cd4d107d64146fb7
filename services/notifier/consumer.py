"""The wiring from the matches topic to the invitations: one handler for `experts.matched`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer
from sqlalchemy import exc as sa_exc

from services.notifier.delivery import Clock, utcnow
from services.notifier.settings import NotifierSettings
from services.notifier.store import invitations
from services.notifier.store.database import Database
from shared.consumer import Delivery, Handler, TransientError
from shared.events import ExpertsMatched
from shared.kafka import make_consumer
from shared.topics import MATCHES

log = logging.getLogger(__name__)

# The database is away or busy: nothing was written, the batch can be handled again later.
_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, OSError, TimeoutError)


def matches_handler(
    db: Database, *, limit: int, on_invited: Callable[[], None], clock: Clock = utcnow
) -> Handler:
    """Record the invitations of each match; call `on_invited` when there are webhooks to send."""

    async def handle(batch: Sequence[Delivery]) -> None:
        created = 0
        for delivery in batch:
            if isinstance(delivery.event, ExpertsMatched):
                created += len(await _record(db, delivery.event, limit=limit, now=clock()))
        if created:
            on_invited()

    return handle


async def _record(db: Database, event: ExpertsMatched, *, limit: int, now: datetime) -> list:
    for attempt in (1, 2):
        try:
            return await invitations.record_match(db, event=event, limit=limit, now=now)
        except sa_exc.IntegrityError:
            # Another replica invited someone to this thread meanwhile: choose again, seeing its rows.
            if attempt == 2:
                raise
            log.info("invitation race on thread %s; choosing again", event.data.question.thread_id)
        except _UNAVAILABLE as exc:
            raise TransientError(f"notifier database unavailable: {exc}") from exc
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:  # the connection dropped mid-transaction
                raise TransientError(f"notifier database connection lost: {exc}") from exc
            raise
    raise AssertionError("unreachable")


def matches_consumer(settings: NotifierSettings) -> AIOKafkaConsumer:
    """A consumer of the matches topic in the notifier's consumer group (manual commits)."""
    return make_consumer(settings, settings.topic(MATCHES), group_id=settings.topic("notifier"))
