"""create_app(settings): the notifier's HTTP app over the running notifier that `bootstrap` builds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI

from services.notifier.bootstrap import bootstrap
from services.notifier.clock import Clock, utcnow
from services.notifier.egress import Resolver, system_resolver
from services.notifier.routes import deliveries, invitations, people, readiness, subscriptions, threads
from services.notifier.settings import NotifierSettings
from services.notifier.store import deliveries as delivery_store
from shared import metrics
from shared.docs import install_docs
from shared.errors import install_error_handlers
from shared.health import health_router
from shared.webhooks import INVITATION_CREATED, InvitationCreated

# A due delivery not sent within this is overdue: the workers are behind or stuck.
OVERDUE_AFTER = timedelta(minutes=1)


def create_app(
    settings: NotifierSettings,
    *,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock = utcnow,
    resolver: Resolver = system_resolver,
) -> FastAPI:
    """The notifier: HTTP API over the store, consumers, delivery and escalation started in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bootstrap(settings, http_client=http_client, clock=clock, resolver=resolver) as notifier:
            app.state.notifier = notifier
            yield

    app = FastAPI(
        title="expertmatch notifier",
        description="Where a tenant's invitations go (webhook subscriptions), who was invited to which thread and "
        "why, how each webhook went, a person's say in being invited, and what invitees did. The webhook that "
        "subscribers receive, `invitation.created`, is under `webhooks`. Every `/v1` call needs "
        "`Authorization: Bearer <key>`; the key names the tenant. Errors are RFC 9457 problem details "
        "(`application/problem+json`).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    async def read_backlog() -> list[metrics.Metric]:
        notifier = getattr(app.state, "notifier", None)
        if notifier is None:  # not started yet: nothing to read
            return []
        found = await delivery_store.backlog(notifier.db, now=notifier.clock(), overdue_after=OVERDUE_AFTER)
        return [
            metrics.DELIVERIES_PENDING.of(found.pending),
            metrics.DELIVERIES_DUE.of(found.due),
            metrics.DELIVERIES_OVERDUE.of(found.overdue),
            metrics.OLDEST_DUE.of(found.oldest_due_seconds),
            metrics.ENDPOINTS_DISABLED.of(found.endpoints_disabled),
            metrics.ENDPOINTS_FAILING.of(found.endpoints_failing),
        ]

    metrics.instrument(app, metrics.NOTIFIER, read=read_backlog)
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health_router(readiness))
    for module in (subscriptions, invitations, deliveries, people, threads):
        app.include_router(module.router)
    _declare_webhooks(app)
    return app


def _declare_webhooks(app: FastAPI) -> None:
    """What subscribers receive, in the OpenAPI document's `webhooks` (nothing is served here)."""

    @app.webhooks.post(
        INVITATION_CREATED,
        summary="A colleague is invited to a thread",
        responses={
            200: {"description": "Any 2xx acknowledges the webhook: it is not sent again"},
            410: {"description": "Gone: the subscription is disabled, nothing more is sent to it"},
            "default": {"description": "Any other answer, or none in time, fails the attempt: it is retried"},
        },
    )
    def invitation_created(body: InvitationCreated) -> None:
        """A colleague is invited to a thread. Signed per Standard Webhooks (`webhook-id`,
        `webhook-timestamp`, `webhook-signature`); the same `webhook-id` on every retry. Any 2xx
        acknowledges it; 410 disables the subscription."""
