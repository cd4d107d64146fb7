"""The wiring from topics to the store: matches become invitations, posts known replies, erasures erase."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from sqlalchemy import exc as sa_exc

from services.notifier.clock import Clock, utcnow
from services.notifier.policy import Policies
from services.notifier.settings import NotifierSettings
from services.notifier.store import erasure, invitations, threads
from services.notifier.store.database import Database
from services.notifier.store.deliveries import DueDelivery
from shared import metrics, tracing
from shared.consumer import Handler, TransientError
from shared.events import AnyEvent, ExpertsMatched, PersonErased, Post, PostUpserted
from shared.kafka import BACKGROUND_FETCH_MAX_WAIT_MS, make_consumer
from shared.logs import log_context
from shared.topics import MATCHES, POSTS

log = logging.getLogger(__name__)

T = TypeVar("T")

# The database is away or busy: nothing was written, the batch can be handled again later.
_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, OSError, TimeoutError)


def matches_handler(
    db: Database,
    *,
    policies: Policies,
    on_invited: Callable[[], None],
    send_now: Callable[[Sequence[DueDelivery]], None] | None = None,
    lease: timedelta | None = None,
    per_transaction: int = 4,
    clock: Clock = utcnow,
) -> Handler:
    """Record the invitations of a batch of matches, up to `per_transaction` of them in each transaction;
    after each commit hand its webhooks to `send_now` (claimed for `lease` in that transaction), or
    else call `on_invited` to have them sent."""

    async def handle(batch: Sequence[AnyEvent]) -> None:
        matches = [event for event in batch if isinstance(event, ExpertsMatched)]
        # A commit per few matches: fewer syncs than one each, and the first of a large batch is not
        # sent only once the last is decided.
        for start in range(0, len(matches), per_transaction):
            chunk = matches[start:start + per_transaction]
            created, leased = await _record(db, chunk, policies=policies, clock=clock,
                                            lease=lease if send_now is not None else None)
            metrics.INVITATIONS.labels("match").inc(created)
            if leased and send_now is not None:
                send_now(leased)
            elif created:
                on_invited()

    return handle


def posts_handler(db: Database, *, clock: Clock = utcnow) -> Handler:
    """Learn who replied to which thread and which answers were accepted (escalation stops on them);
    erase the people the posts topic says to erase."""

    async def handle(batch: Sequence[AnyEvent]) -> None:
        # In topic order: a reply and its author's erasure in one batch leave nothing behind.
        posts: list[Post] = []
        for event in batch:
            match event:
                case PostUpserted(data=post):
                    posts.append(post)
                case PersonErased(tenant=tenant, data=ref, time=asked_at):
                    await _record_replies(db, posts)
                    posts = []
                    # A match ranked before either moment may still be on its way: both count.
                    erased_at = max(asked_at, clock())
                    await _erase(db, tenant=tenant, person_id=ref.person_id, erased_at=erased_at)
        await _record_replies(db, posts)

    return handle


async def _record_replies(db: Database, posts: list[Post]) -> None:
    if posts:
        await _store(threads.record_replies(db, posts))


async def _erase(db: Database, *, tenant: str, person_id: str, erased_at: datetime) -> None:
    erased = await _store(erasure.erase_person(db, tenant=tenant, person_id=person_id, erased_at=erased_at))
    # Counts only: the log is not a place to keep the id of someone just erased.
    log.info("erased a person of tenant %s: %s", tenant, erased)


# PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back to let
# another through, and succeeds when run again.
_RETRY_SQLSTATES = frozenset({"40P01", "40001"})


def _lost_or_rolled_back(exc: sa_exc.DBAPIError) -> bool:
    return exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES


async def _store(work: Awaitable[T]) -> T:
    """Await one store call, turning a database that is away or raced into a retry of the batch."""
    try:
        return await work
    except _UNAVAILABLE as exc:
        raise TransientError(f"notifier database unavailable: {exc}") from exc
    except sa_exc.IntegrityError as exc:
        # Another replica wrote the same rows meanwhile: the batch is replayed and then finds them.
        raise TransientError(f"recorded concurrently: {exc}") from exc
    except sa_exc.DBAPIError as exc:
        if _lost_or_rolled_back(exc):
            raise TransientError(f"notifier database rolled the batch back: {exc}") from exc
        raise


async def _record(
    db: Database, matches: Sequence[ExpertsMatched], *, policies: Policies, clock: Clock, lease: timedelta | None
) -> tuple[int, list[DueDelivery]]:
    """The batch's invitations, committed together: how many, and the deliveries leased to send now."""
    for attempt in (1, 2):
        try:
            return await _record_once(db, matches, policies=policies, now=clock(), lease=lease)
        except sa_exc.IntegrityError:
            # Another replica invited someone to one of these threads meanwhile: choose again, seeing its rows.
            if attempt == 2:
                raise
            log.info("invitation race in a batch of %d matches; choosing again", len(matches))
        except _UNAVAILABLE as exc:
            raise TransientError(f"notifier database unavailable: {exc}") from exc
        except sa_exc.DBAPIError as exc:
            # The connection dropped mid-transaction, or PostgreSQL chose this one to end a deadlock.
            if _lost_or_rolled_back(exc):
                raise TransientError(f"notifier database connection lost or rolled back: {exc}") from exc
            raise
    raise AssertionError("unreachable")


async def _record_once(
    db: Database, matches: Sequence[ExpertsMatched], *, policies: Policies, now: datetime, lease: timedelta | None
) -> tuple[int, list[DueDelivery]]:
    created = 0
    async with invitations.recording(db, events=matches, now=now, lease=lease) as recorder:
        for event in matches:
            question = event.data.question
            with log_context(tenant=event.tenant, thread_id=question.thread_id, post_id=question.post_id,
                             event_id=event.id), tracing.span("record match", event_id=event.id):
                created += len(await recorder.record(event, policy=policies.for_tenant(event.tenant)))
    return created, recorder.leased


def matches_consumer(settings: NotifierSettings) -> AIOKafkaConsumer:
    """A consumer of the matches topic in the notifier's consumer group (manual commits)."""
    return make_consumer(settings, settings.topic(MATCHES), group_id=settings.topic("notifier"))


def posts_consumer(settings: NotifierSettings) -> AIOKafkaConsumer:
    """A consumer of the posts topic in the notifier's own group for replies (manual commits)."""
    return make_consumer(
        settings, settings.topic(POSTS), group_id=settings.topic("notifier-posts"),
        fetch_max_wait_ms=BACKGROUND_FETCH_MAX_WAIT_MS,
    )
