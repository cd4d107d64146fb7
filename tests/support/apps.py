"""Each service's HTTP app as its `create_app` builds it: nothing starts until its lifespan runs."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.matcher.app import create_app as create_matcher
from services.matcher.settings import MatcherSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings


def service_app(service: str, data_dir: Path) -> FastAPI:
    """The app of `service` ("ingest", "matcher" or "notifier") over default settings and `data_dir`."""
    if service == "ingest":
        return create_ingest(IngestSettings(data_dir=data_dir))
    if service == "matcher":
        return create_matcher(MatcherSettings(data_dir=data_dir))
    if service == "notifier":
        return create_notifier(NotifierSettings(data_dir=data_dir))
    raise ValueError(f"no service {service!r}")
