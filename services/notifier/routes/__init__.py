"""The notifier's HTTP API, one router per domain; the store comes from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.notifier.store.database import Database


def get_database(request: Request) -> Database:
    return request.app.state.db


DatabaseDep = Annotated[Database, Depends(get_database)]
