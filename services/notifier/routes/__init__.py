"""The notifier's HTTP API, one router per domain, over the running `Notifier` (services/notifier/bootstrap.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from services.notifier.bootstrap import Notifier
from services.notifier.store.database import Database
from shared.auth import tenant_dependency
from shared.errors import field_error
from shared.health import Check


def get_notifier(request: Request) -> Notifier:
    return request.app.state.notifier


NotifierDep = Annotated[Notifier, Depends(get_notifier)]


TenantDep = Annotated[str, Depends(tenant_dependency(get_notifier))]


def readiness(notifier: NotifierDep) -> Mapping[str, Check]:
    """The running notifier's readiness checks, for `/readyz`."""
    return notifier.readiness


def get_database(notifier: NotifierDep) -> Database:
    return notifier.db


def get_now(notifier: NotifierDep) -> datetime:
    return notifier.clock()


DatabaseDep = Annotated[Database, Depends(get_database)]
NowDep = Annotated[datetime, Depends(get_now)]


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no {what}")


def invalid(location: list[str], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the field."""
    return HTTPException(422, detail=[field_error(location, message, "value_error")])
