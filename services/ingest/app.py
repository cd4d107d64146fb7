"""The ingest service: create_app(settings) serves the routes and health checks over a running `Ingest`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.ingest.bootstrap import bootstrap
from services.ingest.limits import RequestSizeLimit
from services.ingest.publisher import Publisher
from services.ingest.routes import people_router, readiness, router
from services.ingest.settings import IngestSettings
from shared.docs import install_docs
from shared.errors import install_error_handlers
from shared.health import health_router
from shared.metrics import instrument


def create_app(settings: IngestSettings, *, publisher: Publisher | None = None) -> FastAPI:
    """The app; tests pass a fake `publisher` to run without a broker."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bootstrap(settings, publisher=publisher) as ingest:
            app.state.ingest = ingest
            yield

    app = FastAPI(
        title="expertmatch ingest",
        description="Posts and erasures in. A 202 means the event is on the posts topic, so the other services "
        "will see it; resending the same ids is always safe. Every `/v1` call needs `Authorization: Bearer <key>`; "
        "the key names the tenant. Errors are RFC 9457 problem details (`application/problem+json`).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    instrument(app)
    install_error_handlers(app)
    install_docs(app)
    app.add_middleware(RequestSizeLimit, max_bytes=settings.max_request_bytes)
    app.include_router(router)
    app.include_router(people_router)
    app.include_router(health_router(readiness))
    return app
