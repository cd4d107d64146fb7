"""The wiring from topics to the store: matches become invitations, posts become known replies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer
from sqlalchemy import exc as sa_exc

from services.notifier.delivery import Clock, utcnow
from services.notifier.settings import NotifierSettings
from services.notifier.policy import InvitePolicy, Policies
from services.notifier.store import invitations, threads
from services.notifier.store.database import Database
from shared.consumer import Delivery, Handler, TransientError
from shared.events import ExpertsMatched, PostUpserted
from shared.kafka import make_consumer
from shared.topics import MATCHES, POSTS

log = logging.getLogger(__name__)

# The database is away or busy: nothing was written, the batch can be handled again later.
_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, OSError, TimeoutError)


def matches_handler(
    db: Database, *, policies: Policies, on_invited: Callable[[], None], clock: Clock = utcnow
) -> Handler:
    """Record the invitations of each match; call `on_invited` when there are webhooks to send."""

    async def handle(batch: Sequence[Delivery]) -> None:
        created = 0
        for delivery in batch:
            if isinstance(delivery.event, ExpertsMatched):
                policy = policies.for_tenant(delivery.event.tenant)
                created += len(await _record(db, delivery.event, policy=policy, now=clock()))
        if created:
            on_invited()

    return handle


def posts_handler(db: Database) -> Handler:
    """Learn who replied to which thread and which answers were accepted: escalation stops on them."""

    async def handle(batch: Sequence[Delivery]) -> None:
        posts = [d.event.data for d in batch if isinstance(d.event, PostUpserted)]
        if not posts:
            return
        try:
            await threads.record_replies(db, posts)
        except _UNAVAILABLE as exc:
            raise TransientError(f"notifier database unavailable: {exc}") from exc
        except sa_exc.IntegrityError as exc:
            # Another replica recorded the same post meanwhile: the batch is replayed and then finds it.
            raise TransientError(f"reply recorded concurrently: {exc}") from exc

    return handle


async def _record(db: Database, event: ExpertsMatched, *, policy: InvitePolicy, now: datetime) -> list:
    for attempt in (1, 2):
        try:
            return await invitations.record_match(db, event=event, policy=policy, now=now)
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


def posts_consumer(settings: NotifierSettings) -> AIOKafkaConsumer:
    """A consumer of the posts topic in the notifier's own group for replies (manual commits)."""
    return make_consumer(settings, settings.topic(POSTS), group_id=settings.topic("notifier-posts"))
