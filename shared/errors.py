"""Error answers of every API: RFC 9457 problem details, always encodable, and written into the OpenAPI document.

Every error is `application/problem+json`: `{"type": "about:blank", "title": <the status's phrase>,
"status": <the code>, "detail": ...}`. `detail` is a list of `{"loc", "msg", "type"}` (FastAPI's
validation shape) when the request itself is wrong (413, 422), a sentence otherwise (401, 404,
405, 409, 500, 503).

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
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
# RFC 9110's names, which Python 3.11's HTTPStatus still gives in their older wording.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}
_SURROGATE = re.compile("[\ud800-\udfff]")


class FieldError(BaseModel):
    """One thing wrong with the request."""

    loc: list[str | int] = Field(
        description="Where: `body`, `path`, `query` or `header`, then the field's name and, inside a list, "
        "the item's index.",
        examples=[["body", "posts", 3, "kind"]],
    )
    msg: str = Field(description="What is wrong, in a sentence for a person.",
                     examples=["Input should be 'question', 'answer' or 'comment'"])
    type: str = Field(
        description="What kind of error, for programs: a pydantic error type (`missing`, `string_too_long`, "
        "`enum`, ...) or expertmatch's own (`too_large`, `too_long`, `json_invalid`, `value_error`).",
        examples=["enum"],
    )
    input: Any = Field(default=None, description="The value refused, when validation saw one; absent otherwise.",
                       examples=["query"])
    ctx: dict[str, Any] = Field(default_factory=dict, examples=[{"expected": "'question', 'answer' or 'comment'"}],
                                description="The rule's parameters (a limit, the values allowed), when it has any.")


class _Problem(BaseModel):
    type: str = Field(examples=["about:blank"],
                      description="A URI naming the kind of problem; `about:blank`: what the status says, no more.")
    title: str = Field(description="The HTTP status's phrase, the same for every problem of that status.",
                       examples=["Not Found"])
    status: int = Field(description="The HTTP status code of the answer, repeated in the body.", examples=[404])


class Problem(_Problem):
    """What went wrong, in a sentence (RFC 9457 problem details)."""

    detail: str = Field(description="What went wrong with this request, for a person to read.",
                        examples=["no subscription sub_3f9c0d6e1b2a4c5d8e7f60718293a4b5"])


class ValidationProblem(_Problem):
    """What is wrong with the request, field by field (RFC 9457 problem details)."""

    title: str = Field(description="The HTTP status's phrase, the same for every problem of that status.",
                       examples=["Unprocessable Content"])
    status: int = Field(description="The HTTP status code of the answer, repeated in the body.", examples=[422])
    detail: list[FieldError] = Field(description="Each thing wrong with the request; nothing of it was applied.")


_ANSWERS: dict[int, tuple[type[BaseModel], str]] = {
    status.HTTP_401_UNAUTHORIZED: (Problem, "No API key, or one this service does not know"),
    status.HTTP_404_NOT_FOUND: (Problem, "Nothing of the caller's tenant has this id"),
    status.HTTP_409_CONFLICT: (Problem, "The resource is not in a state that allows this"),
    status.HTTP_413_CONTENT_TOO_LARGE: (ValidationProblem, "The request, a post or a batch is over its limit"),
    status.HTTP_422_UNPROCESSABLE_CONTENT: (ValidationProblem, "The request is not valid: `detail` names each field"),
    status.HTTP_503_SERVICE_UNAVAILABLE: (Problem, "A dependency is down; retry after Retry-After seconds"),
}
_PROBLEM_REFS = {f"#/components/schemas/{model.__name__}" for model in (Problem, ValidationProblem)}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route or router that can answer these error statuses."""
    return {code: {"model": _ANSWERS[code][0], "description": _ANSWERS[code][1]} for code in codes}


def field_error(loc: Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    """One entry of a `ValidationProblem` detail, for errors a route finds itself."""
    return {"loc": list(loc), "msg": msg, "type": kind}


def problem_body(status_code: int, detail: Any) -> dict[str, Any]:
    """The body of an error answer: `detail` as the route gave it, under RFC 9457's members."""
    return {"type": "about:blank", "title": _title(status_code), "status": status_code, "detail": detail}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(status_code: int, detail: Any, headers: Mapping[str, str] | None = None) -> ProblemResponse:
    return ProblemResponse(problem_body(status_code, detail), status_code=status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error answers a problem; validation errors that echo any input back, and bodies that are
    not JSON text, answer 422. The OpenAPI document says so (`application/problem+json`)."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)
    app.openapi = _documenting_problems(app.openapi)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    # The errors echo the input, which may hold a lone surrogate that no UTF-8 encoder takes.
    return problem(422, _encodable(jsonable_encoder(exc.errors())))


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    # FastAPI answers 400 "There was an error parsing the body" when the bytes are not text
    # (invalid UTF-8) or nest too deep to parse: a body that is not JSON, like any other.
    if exc.status_code == status.HTTP_400_BAD_REQUEST and isinstance(exc.__cause__, ValueError | RecursionError):
        detail = [field_error(["body"], f"the body is not JSON text: {exc.__cause__}", "json_invalid")]
        return problem(422, detail)
    if exc.status_code in (status.HTTP_204_NO_CONTENT, status.HTTP_304_NOT_MODIFIED):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return problem(exc.status_code, exc.detail, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette logs the exception and raises it on after this answer; the client learns only this.
    return problem(500, "the service failed to answer this request; the error is in its log")


def _documenting_problems(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """FastAPI writes every model's answer as `application/json`; a problem's is `application/problem+json`."""

    def openapi() -> dict[str, Any]:
        document = build()  # FastAPI builds it once and hands back the same dict after
        for item in document.get("paths", {}).values():
            for operation in item.values():
                for answer in operation.get("responses", {}).values():
                    content = answer.get("content", {})
                    if content.get("application/json", {}).get("schema", {}).get("$ref") in _PROBLEM_REFS:
                        content[PROBLEM_JSON] = content.pop("application/json")
        return document

    return openapi


def _title(status_code: int) -> str:
    try:
        return _TITLES.get(status_code) or HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value
