"""The ingest service: create_app(settings) wires the producer, the routes and the health checks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from services.ingest.limits import RequestSizeLimit
from services.ingest.publisher import KafkaPublisher, Publisher
from services.ingest.routes import people_router, router
from services.ingest.settings import IngestSettings
from shared.errors import install_error_handlers
from shared.health import health_router
from shared.kafka import broker_check, make_producer
from shared.outbox import open_publisher
from shared.topics import BACKFILL, POSTS

log = logging.getLogger(__name__)


def create_app(settings: IngestSettings, *, publisher: Publisher | None = None) -> FastAPI:
    """The app; tests pass a fake `publisher` to run without a broker."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.tenants_by_key = settings.tenants_by_key
        if publisher is not None:
            app.state.publisher = publisher
            app.state.readiness = {}
            yield
            return
        async with AsyncExitStack() as stack:
            # No point retrying a send longer than the client waits for its answer.
            producer = make_producer(settings, request_timeout_ms=int(settings.publish_timeout_s * 1000))
            await producer.start()
            # Flushes whatever is in flight before closing.
            stack.push_async_callback(producer.stop)
            events = await stack.enter_async_context(open_publisher(settings, producer, name="ingest"))
            live, backfill = settings.topic(POSTS), settings.topic(BACKFILL)
            app.state.publisher = KafkaPublisher(
                producer, events, live=live, backfill=backfill, timeout_s=settings.publish_timeout_s
            )
            # Topics belong to their owner (`expertmatch topics`, the embedded supervisor): a
            # missing one makes ingest unready and its requests 503, never a topic made up here.
            app.state.readiness = {"broker": broker_check(settings, live, backfill)}
            log.info("ingest ready: publishing to %s, backfill to %s", live, backfill)
            yield

    app = FastAPI(title="expertmatch ingest", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(RequestSizeLimit, max_bytes=settings.max_request_bytes)
    app.include_router(router)
    app.include_router(people_router)
    app.include_router(health_router())
    return app
