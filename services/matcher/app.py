"""The matcher's HTTP app: "who knows about X" search and index stats; routes only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.matcher.bootstrap import Matcher, bootstrap
from services.matcher.embedder import Embedder
from services.matcher.index.base import ExpertIndex, IndexUnavailable
from services.matcher.settings import MatcherSettings
from shared import metrics
from shared.auth import tenant_dependency
from shared.docs import install_docs
from shared.errors import error_responses, install_error_handlers
from shared.events import Candidate
from shared.fields import text_field
from shared.health import Check, health_router
from shared.tasks import start_task


class SearchRequest(BaseModel):
    """A text to find the people for, ranked the way a new question would be."""

    # Unknown fields are refused: a `tenant` in the body must fail loudly, the key names the tenant.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"text": "replica lag in PostgreSQL", "limit": 5, "audience": ["public"], "exclude": ["u-bo"]}
        ]},
    )

    text: text_field(min_length=1, max_length=20_000) = Field(
        description="What to find people for, 1-20,000 characters of more than white space: a question's title and "
        "body, or a few words.",
        examples=["replica lag in PostgreSQL"],
    )
    limit: int = Field(default=10, ge=1, le=50, description="How many people to answer at most, 1-50.", examples=[5])
    audience: list[text_field(max_length=200)] | None = Field(
        default=None, max_length=100, examples=[["team-payments"]],
        description="Up to 100 groups whose posts may be used as evidence besides public ones: those of the "
        "question's readers. `null` or absent: public posts only.",
    )
    exclude: list[text_field(max_length=200)] | None = Field(
        default=None, max_length=1000, examples=[["u-bo"]],
        description="Up to 1,000 person ids to leave out (the asker, say).",
    )

    @field_validator("text")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must contain more than white space")
        return value


class SearchResponse(BaseModel):
    """The people found, best first."""

    experts: list[Candidate] = Field(
        description="Up to `limit` people, best first; nobody is listed without a post the readers may see."
    )


class PostsCountRequest(BaseModel):
    """Posts of the caller's tenant to look for in the index."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"post_ids": ["p-1", "p-2"]}]})

    post_ids: list[text_field(min_length=1, max_length=200)] = Field(
        min_length=1, max_length=1000, description="1-1,000 post ids, as the ingest was given them.",
        examples=[["p-1", "p-2"]],
    )


class PostsCount(BaseModel):
    """How many of the posts asked about are in the index."""

    indexed: int = Field(description="How many of the distinct posts asked about the index holds.", examples=[2])
    of: int = Field(description="How many distinct posts were asked about.", examples=[2])


class IndexStats(BaseModel):
    """What the index holds of the caller's tenant."""

    contributions: int = Field(description="How many of the tenant's posts are indexed.", examples=[1520])
    learned_from: int = Field(
        description="How many past questions with an accepted answer the tenant's ranking model learned from; "
        "0 while the hand-set fusion ranks (a model is fit from 50 on).",
        examples=[0],
    )


def _matcher(request: Request) -> Matcher:
    return request.app.state.matcher


MatcherDep = Annotated[Matcher, Depends(_matcher)]


TenantDep = Annotated[str, Depends(tenant_dependency(_matcher))]


def _readiness(matcher: MatcherDep) -> Mapping[str, Check]:
    return matcher.readiness


def create_app(
    settings: MatcherSettings, *, embedder: Embedder | None = None, index: ExpertIndex | None = None
) -> FastAPI:
    """The app; the model, index, producer and consumer start in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bootstrap(settings, embedder=embedder, index=index) as matcher:
            app.state.matcher = matcher
            loops = list(matcher.loops or ())
            tasks = [start_task(loop.run(), name=f"{loop.name} consumer") for loop in loops]
            try:
                yield
            finally:
                for loop in loops:
                    loop.stop()  # finishes and commits the batch in hand
                await asyncio.gather(*tasks, return_exceptions=True)  # a crash was logged when it happened

    app = FastAPI(
        title="expertmatch matcher",
        description="Who knows about X: ranks the people of the caller's tenant for a text, the way a new question "
        "is ranked, with the posts and counts that explain each. Every `/v1` call needs "
        "`Authorization: Bearer <key>`; the key names the tenant. Errors are RFC 9457 problem details "
        "(`application/problem+json`).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    async def read_index_size() -> list[metrics.Metric]:
        matcher = getattr(app.state, "matcher", None)
        if matcher is None:  # not started yet: nothing to read
            return []
        tenants = sorted(set(matcher.tenants_by_key.values()))  # configured, so the label stays bounded
        sizes = {(tenant,): await matcher.index.count(tenant) for tenant in tenants}
        return [metrics.INDEX_CONTRIBUTIONS.of(sizes)]

    metrics.instrument(app, metrics.MATCHER, read=read_index_size)
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health_router(_readiness))

    @app.post(
        "/v1/experts/search",
        response_model=SearchResponse,
        responses=error_responses(401, 422, 503),
        summary="Find the people who know about a text",
        tags=["experts"],
    )
    async def search_experts(body: SearchRequest, tenant: TenantDep, matcher: MatcherDep) -> SearchResponse:
        """The people of the caller's tenant whose posts best match the text, best first, each with their best
        matching posts (`evidence`), what the score is made of (`parts`), `closeness` and `track_record`."""
        try:
            experts = await matcher.service.search(
                tenant=tenant,
                text=body.text,
                limit=body.limit,
                audience=body.audience or (),
                exclude=body.exclude or (),
            )
        except IndexUnavailable as exc:
            raise _unavailable(exc) from exc
        return SearchResponse(experts=experts)

    @app.get(
        "/v1/index/stats",
        response_model=IndexStats,
        responses=error_responses(401, 503),
        summary="Count what the index holds of the tenant",
        tags=["index"],
    )
    async def index_stats(tenant: TenantDep, matcher: MatcherDep) -> IndexStats:
        """How many contributions of the caller's tenant the index holds, and what its ranking learned from."""
        try:
            return IndexStats(
                contributions=await matcher.index.count(tenant),
                learned_from=matcher.service.trainer.scorer(tenant).examples,
            )
        except IndexUnavailable as exc:
            raise _unavailable(exc) from exc

    @app.post(
        "/v1/index/posts/count",
        response_model=PostsCount,
        responses=error_responses(401, 422, 503),
        summary="Count which of some posts are indexed",
        tags=["index"],
    )
    async def count_posts(body: PostsCountRequest, tenant: TenantDep, matcher: MatcherDep) -> PostsCount:
        """How many of the given posts of the caller's tenant the index holds: what `expertmatch import --wait`
        asks to follow an import until the matcher has every post of it. A post counts once indexed, in any
        version; a deleted one does not."""
        post_ids = list(dict.fromkeys(body.post_ids))
        try:
            return PostsCount(indexed=await matcher.index.count(tenant, post_ids), of=len(post_ids))
        except IndexUnavailable as exc:
            raise _unavailable(exc) from exc

    return app


def _unavailable(exc: IndexUnavailable) -> HTTPException:
    """503 with the Retry-After the documented answer promises: the index is usually back within seconds."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"index unavailable: {exc}", headers={"Retry-After": "5"}
    )
