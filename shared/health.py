"""`/healthz` (the process answers) and `/readyz` (every dependency answers) for each service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

Check = Callable[[], Awaitable[bool]]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]


async def _run(check: Check, timeout: float) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), timeout))
    except Exception:
        return False


def health_router(timeout: float = 3.0) -> APIRouter:
    """Readiness checks come from `app.state.readiness`: a dict of name -> async check."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A dependency or a consumer loop is down"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, Check] = getattr(request.app.state, "readiness", {})
        names = list(checks)
        results = await asyncio.gather(*(_run(checks[name], timeout) for name in names))
        status = dict(zip(names, results, strict=True))
        ready = bool(status) and all(results)
        return JSONResponse({"ready": ready, "checks": status}, status_code=200 if ready else 503)

    return router


def running_check(loop) -> Check:
    """A readiness check that fails once a consumer loop has stopped running."""

    async def consumer() -> bool:
        return loop.running

    return consumer
