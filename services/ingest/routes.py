"""The ingest API: posts and erasures in, events on the posts topic, 202 only once the broker has them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from services.ingest.bootstrap import Ingest
from services.ingest.publisher import BrokerUnavailable, Publisher
from services.ingest.schemas import Accepted, BatchAccepted, PersonErasureAccepted, PostBatchIn, PostIn
from services.ingest.settings import IngestSettings
from shared.auth import tenant_dependency
from shared.errors import error_responses, field_error
from shared.events import PersonErased, PersonRef, PostDeleted, PostRef, PostUpserted
from shared.fields import text_field
from shared.health import Check
from shared.kafka import AnyEvent

SOURCE = "expertmatch/ingest"

router = APIRouter(prefix="/v1/posts", tags=["posts"], responses=error_responses(401, 422, 503))
people_router = APIRouter(prefix="/v1/people", tags=["people"], responses=error_responses(401, 422, 503))
# Posts and batches are limited in size (RequestSizeLimit and the routes themselves).
SIZED = error_responses(413)


def _ingest(request: Request) -> Ingest:
    return request.app.state.ingest


IngestDep = Annotated[Ingest, Depends(_ingest)]


TenantDep = Annotated[str, Depends(tenant_dependency(_ingest))]


def readiness(ingest: IngestDep) -> Mapping[str, Check]:
    """The running ingest's readiness checks, for `/readyz`."""
    return ingest.readiness


def _publisher(ingest: IngestDep) -> Publisher:
    return ingest.publisher


def _settings(ingest: IngestDep) -> IngestSettings:
    return ingest.settings


PublisherDep = Annotated[Publisher, Depends(_publisher)]
SettingsDep = Annotated[IngestSettings, Depends(_settings)]


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=SIZED, summary="Store a post")
async def upsert_post(post: PostIn, tenant: TenantDep, publisher: PublisherDep, settings: SettingsDep) -> Accepted:
    """Accept one post; answers once it is on the posts topic. Sending the same `id` again replaces the post;
    a new question that is not a backfill starts a match."""
    _check_body_size(post, settings.max_body_bytes, loc=("body", "body"))
    event = _upserted(post, tenant, received_at=datetime.now(UTC))
    await _publish(publisher, [event])
    return Accepted(id=post.id)


@router.post("/batch", status_code=status.HTTP_202_ACCEPTED, responses=SIZED, summary="Store many posts")
async def upsert_posts(
    batch: PostBatchIn, tenant: TenantDep, publisher: PublisherDep, settings: SettingsDep
) -> BatchAccepted:
    """Accept many posts: all are checked before any is sent, so a bad one sends nothing."""
    if len(batch.posts) > settings.max_batch:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=[field_error(("body", "posts"), f"a batch holds at most {settings.max_batch} posts; "
                           f"this one has {len(batch.posts)}: split it", "too_long")],
        )
    for index, post in enumerate(batch.posts):
        _check_body_size(post, settings.max_body_bytes, loc=("body", "posts", index, "body"))
    received_at = datetime.now(UTC)
    events = [_upserted(post, tenant, received_at=received_at) for post in batch.posts]
    await _publish(publisher, events)
    return BatchAccepted(accepted=len(events), ids=[post.id for post in batch.posts])


@router.delete("/{post_id}", status_code=status.HTTP_202_ACCEPTED, summary="Forget a post")
async def delete_post(
    post_id: Annotated[text_field(min_length=1, max_length=200), Path(description="The post's id (1-200 characters).")],
    tenant: TenantDep,
    publisher: PublisherDep,
    thread_id: Annotated[
        text_field(min_length=1, max_length=200) | None,
        Query(description="The post's thread, when known: the delete then travels in order with the thread."),
    ] = None,
) -> Accepted:
    """Forget a post; with `thread_id` the delete is ordered after the thread's earlier posts."""
    event = PostDeleted(tenant=tenant, source=SOURCE, data=PostRef(post_id=post_id, thread_id=thread_id))
    await _publish(publisher, [event])
    return Accepted(id=post_id)


@people_router.delete("/{person_id}", status_code=status.HTTP_202_ACCEPTED, summary="Erase a person")
async def erase_person(
    person_id: Annotated[
        text_field(min_length=1, max_length=200, pattern=r"\S"),
        Path(description="The person, as the posts' `author_id` names them (1-200 characters)."),
    ],
    tenant: TenantDep,
    publisher: PublisherDep,
) -> PersonErasureAccepted:
    """Erase a person of the caller's tenant everywhere: their posts, invitations and preferences. Idempotent:
    erasing again, or an id nobody has, is harmless."""
    # Stripped like a post's author_id, so the erasure names the same person the posts did.
    event = PersonErased(tenant=tenant, source=SOURCE, data=PersonRef(person_id=person_id.strip()))
    await _publish(publisher, [event])
    return PersonErasureAccepted(person_id=event.data.person_id)


def _upserted(post: PostIn, tenant: str, *, received_at: datetime) -> PostUpserted:
    return PostUpserted(tenant=tenant, source=SOURCE, data=post.to_post(tenant=tenant, received_at=received_at))


def _check_body_size(post: PostIn, limit: int, *, loc: tuple) -> None:
    size = len(post.body.encode())
    if size > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=[field_error(loc, f"body is {size} bytes; the limit is {limit} bytes", "too_large")],
        )


async def _publish(publisher: Publisher, events: list[AnyEvent]) -> None:
    try:
        await publisher.publish(events)
    except BrokerUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the request cannot be stored right now ({exc}); retry later, the same ids are safe to resend",
            headers={"Retry-After": "5"},
        ) from exc
