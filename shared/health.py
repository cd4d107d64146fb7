"""`/healthz` (the process answers) and `/readyz` (every dependency answers) for each service.

A check answers True when its part can do its work. One that cannot says so by returning False
or, better, by raising `NotReady` with the reason, which `/readyz` shows under `failing`.
"""

# No `from __future__ import annotations`: FastAPI must see `Depends(checks)` itself, a closure
# variable that a string annotation could not name.
import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

Check = Callable[[], Awaitable[bool]]


class NotReady(Exception):
    """Raised by a readiness check: the reason is shown to whoever asks `/readyz`."""


class Readiness(BaseModel):
    """Whether the service can do its work, check by check."""

    ready: bool = Field(description="True when every check passes (the answer is then 200, else 503).",
                        examples=[True])
    checks: dict[str, bool] = Field(
        description="Each of the service's checks (`broker`, `database`, `index`, `model`, `consumer`, ...) and "
        "whether it passes.",
        examples=[{"broker": True, "index": True, "model": True, "consumer": True, "backfill_consumer": True}],
    )
    failing: dict[str, str] = Field(
        default={},
        description="The checks that fail, each with why; absent while all pass.",
        examples=[{"broker": "missing on the broker: posts; topics are created by their owner"}],
    )


class Alive(BaseModel):
    """The process answers."""

    status: str = Field(description="Always `ok`.", examples=["ok"])


async def _run(check: Check, timeout: float) -> tuple[bool, str | None]:
    try:
        ok = bool(await asyncio.wait_for(check(), timeout))
    except NotReady as exc:
        return False, str(exc)
    except TimeoutError:
        return False, f"no answer within {timeout:.0f}s"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]
    return ok, None if ok else "not ready"


def health_router(checks: Callable[..., Mapping[str, Check]], timeout: float = 3.0) -> APIRouter:
    """`checks` is a FastAPI dependency giving the running service's checks, name -> async check."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Tell whether the process answers", response_model=Alive)
    async def healthz() -> dict[str, str]:
        """200 while the process answers; no API key needed."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "The service cannot do its work: `failing` says why"}},
        summary="Tell whether the service can do its work",
    )
    async def readyz(running: Annotated[Mapping[str, Check], Depends(checks)]) -> JSONResponse:
        """200 when every dependency answers, else 503 with the reasons under `failing`; no API key needed.
        This 503 is a readiness report, not a problem: its body is the same `Readiness` as a 200's."""
        names = list(running)
        results = await asyncio.gather(*(_run(running[name], timeout) for name in names))
        status = {name: ok for name, (ok, _) in zip(names, results, strict=True)}
        failing = {name: reason for name, (ok, reason) in zip(names, results, strict=True) if not ok}
        ready = bool(status) and not failing
        body: dict = {"ready": ready, "checks": status}
        if failing:
            body["failing"] = failing
        return JSONResponse(body, status_code=200 if ready else 503)

    return router


def consumer_check(loop) -> Check:
    """A readiness check that fails, saying why, while a consumer loop cannot do its work."""

    async def consumer() -> bool:
        if reason := loop.health():
            raise NotReady(reason)
        return True

    return consumer
