"""Error answers of every API: one shape, always encodable, and written into the OpenAPI document.

The body of an error is `{"detail": ...}`: a list of `{"loc", "msg", "type"}` (FastAPI's
validation shape) when the request itself is wrong (413, 422), a sentence otherwise (401, 404,
409, 503).

The exceptions of expertmatch, where each is raised, and what it becomes:

    Exception
    ├── TransientError (shared.consumer): "retry the batch later"; a consumer loop retries it
    │   with a backoff and commits nothing. The notifier's handlers raise it for a database
    │   that is away or raced (services/notifier/consumer.py maps the store's errors, in one place).
    ├── NotReady (shared.health): a readiness check's failure, shown under `failing` of a 503 `/readyz`.
    ├── IndexUnavailable (services.matcher.index.base): the vector index cannot answer.
    │   │   The matcher's consumers retry on it (services/matcher/consumer.py `index_unavailable`);
    │   │   its HTTP routes answer 503 with Retry-After.
    │   └── ShardLocked (services.matcher.index.edge_shard): another process holds an Edge shard.
    ├── BrokerUnavailable (services.ingest.publisher): a publish timed out or failed; 503 with Retry-After.
    ├── RequestTooLarge (services.ingest.limits): a body over the limit; 413 before it is read.
    ├── EndpointDisabled (services.notifier.store.deliveries): a replay to a disabled endpoint; 409.
    ├── TopicsNotCreated (services.embedded.broker): the supervisor could not create the topics;
    │   it restarts the broker and tries again.
    ├── ChildFailed (services.embedded.children): a service that never got ready; `make run` ends.
    ├── ImportFailed (services.evaluation.importer): `expertmatch import` stops and says why (exit 1).
    └── ValueError
        ├── UndecodableEvent (shared.events): a record that is no event; dead-lettered at once.
        ├── InvalidSignature (services.notifier.signing): a webhook whose signature does not verify.
        └── ForbiddenDestination (services.notifier.egress): a webhook URL that resolves to a
            private, loopback or metadata address; 422 at subscription, a failed attempt at delivery.

aiokafka's `KafkaError` is retried by the consumer loops like `TransientError`. Any other
exception a handler raises splits its batch; the event that still fails alone is dead-lettered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

_SURROGATE = re.compile("[\ud800-\udfff]")


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class FieldErrors(BaseModel):
    """What is wrong with the request, field by field."""

    detail: list[FieldError]


class Message(BaseModel):
    """What went wrong, in a sentence."""

    detail: str


_ANSWERS: dict[int, tuple[type[BaseModel], str]] = {
    status.HTTP_401_UNAUTHORIZED: (Message, "No API key, or one this service does not know"),
    status.HTTP_404_NOT_FOUND: (Message, "Nothing of the caller's tenant has this id"),
    status.HTTP_409_CONFLICT: (Message, "The resource is not in a state that allows this"),
    status.HTTP_413_CONTENT_TOO_LARGE: (FieldErrors, "The request, a post or a batch is over its limit"),
    status.HTTP_503_SERVICE_UNAVAILABLE: (Message, "A dependency is down; retry after Retry-After seconds"),
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route or router that can answer these error statuses."""
    return {code: {"model": _ANSWERS[code][0], "description": _ANSWERS[code][1]} for code in codes}


def field_error(loc: Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    """One entry of a `FieldErrors` detail, for errors a route finds itself."""
    return {"loc": list(loc), "msg": msg, "type": kind}


def install_error_handlers(app: FastAPI) -> None:
    """Validation errors that echo any input back, and bodies that are not JSON text, answer 422."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The errors echo the input, which may hold a lone surrogate that no UTF-8 encoder takes.
    return JSONResponse({"detail": _encodable(jsonable_encoder(exc.errors()))}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # FastAPI answers 400 "There was an error parsing the body" when the bytes are not text
    # (invalid UTF-8) or nest too deep to parse: a body that is not JSON, like any other.
    if exc.status_code == status.HTTP_400_BAD_REQUEST and isinstance(exc.__cause__, ValueError | RecursionError):
        detail = [field_error(["body"], f"the body is not JSON text: {exc.__cause__}", "json_invalid")]
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, exc)


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value
