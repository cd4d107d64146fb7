"""The three OpenAPI documents, as an intranet team builds against them: every field described, every
operation summarized, every body with an example, the API key and the error answers declared, valid OpenAPI 3.1.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from pydantic import BaseModel

from services.ingest.schemas import PostBatchIn, PostIn
from services.matcher.app import PostsCountRequest, SearchRequest
from services.notifier.routes.invitations import ResponseIn
from services.notifier.routes.people import PreferencesIn
from services.notifier.routes.subscriptions import SubscriptionIn
from shared.webhooks import InvitationCreated
from tests.support.apps import service_app
from tests.support.services import SERVICES

pytestmark = pytest.mark.unit

PROBLEM_JSON = "application/problem+json"
PROBLEMS = {"#/components/schemas/Problem", "#/components/schemas/ValidationProblem"}
# The answers that are not problems: /readyz's 503 is its readiness report.
NOT_PROBLEMS = {("/readyz", "get", "503")}
# Every request body of the three documents (and the webhook's), by its schema's name.
BODIES: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        PostIn, PostBatchIn, SearchRequest, PostsCountRequest, SubscriptionIn, ResponseIn, PreferencesIn,
        InvitationCreated,
    )
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(params=SERVICES)
def app(request, tmp_path) -> FastAPI:
    # Building an app and its document starts nothing: no broker, model or database is needed.
    return service_app(request.param, tmp_path)


def operations(document: dict) -> list[tuple[str, str, dict]]:
    """(path, method, operation) of the paths and of the webhooks."""
    webhooks = {f"webhook {name}": item for name, item in document.get("webhooks", {}).items()}
    items = {**document.get("paths", {}), **webhooks}
    return [(path, method, op) for path, item in items.items() for method, op in item.items() if method in HTTP_METHODS]


def test_the_document_is_valid_openapi_3_1(app):
    document = app.openapi()

    assert document["openapi"].startswith("3.1")
    validate(document)  # raises, naming the part that is not OpenAPI


def test_every_property_of_every_schema_is_described(app):
    schemas = app.openapi()["components"]["schemas"]

    undescribed = [
        f"{name}.{prop}"
        for name, schema in schemas.items()
        for prop, definition in schema.get("properties", {}).items()
        if not definition.get("description", "").strip()
    ]
    assert undescribed == []
    assert [name for name, schema in schemas.items() if not schema.get("description", "").strip()] == []


def test_every_parameter_is_described(app):
    undescribed = [
        f"{method.upper()} {path} {parameter['name']}"
        for path, method, op in operations(app.openapi())
        for parameter in op.get("parameters", [])
        if not parameter.get("description", "").strip()
    ]
    assert undescribed == []


def test_every_operation_has_a_written_summary_and_a_description(app):
    found = operations(app.openapi())

    # FastAPI makes a summary of the function's name when none is given ("Upsert Post"), and the
    # operationId starts with that name: such a summary is not one written for the reader.
    made_up = [
        f"{m.upper()} {p}" for p, m, op in found
        if not op.get("summary") or op["operationId"].startswith(op["summary"].lower().replace(" ", "_"))
    ]
    assert made_up == []
    assert [f"{m.upper()} {p}" for p, m, op in found if not op.get("description", "").strip()] == []


def test_every_request_body_has_an_example(app):
    document = app.openapi()
    schemas = document["components"]["schemas"]

    def has_example(media: dict) -> bool:
        if media.get("example") is not None or media.get("examples"):
            return True
        ref = media.get("schema", {}).get("$ref", "")
        return bool(schemas.get(ref.rsplit("/", 1)[-1], {}).get("examples"))

    bodies = [(p, m, op["requestBody"]) for p, m, op in operations(document) if "requestBody" in op]
    assert bodies, "no operation with a body: the check would check nothing"
    without = [f"{m.upper()} {p}" for p, m, body in bodies if not all(map(has_example, body["content"].values()))]
    assert without == []


def test_every_body_example_is_what_the_model_accepts(app):
    # An example a client copies must pass the validation its request meets.
    document = app.openapi()
    schemas = document["components"]["schemas"]
    refs = {
        media["schema"]["$ref"].rsplit("/", 1)[-1]
        for _, _, op in operations(document) if "requestBody" in op
        for media in op["requestBody"]["content"].values()
    }

    assert refs <= set(BODIES), f"add the new request models to BODIES: {refs - set(BODIES)}"
    for name in refs:
        assert schemas[name]["examples"]
        for example in schemas[name]["examples"]:
            BODIES[name].model_validate(example)


def test_the_api_key_is_declared_on_every_v1_operation(app):
    document = app.openapi()

    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "An API key from EXPERTMATCH_API_KEYS; it names the tenant."
    }
    v1 = [(p, m, op) for p, m, op in operations(document) if p.startswith("/v1/")]
    assert v1
    assert [f"{m.upper()} {p}" for p, m, op in v1 if op.get("security") != [{"HTTPBearer": []}]] == []
    assert [f"{m.upper()} {p}" for p, m, op in v1 if "401" not in op["responses"]] == []


def test_every_error_answer_is_a_documented_problem(app):
    document = app.openapi()
    errors = [
        (f"{m.upper()} {p} {code}", answer)
        for p, m, op in operations(document)
        for code, answer in op["responses"].items()
        if code[0] in "45" and (p, m, code) not in NOT_PROBLEMS and not p.startswith("webhook ")
    ]
    assert errors

    not_problems = [
        where for where, answer in errors
        if list(answer.get("content", {})) != [PROBLEM_JSON]
        or answer["content"][PROBLEM_JSON]["schema"].get("$ref") not in PROBLEMS
    ]
    assert not_problems == []
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert "HTTPValidationError" not in document["components"]["schemas"]  # FastAPI's own 422, which we never send


def test_every_operation_that_validates_input_documents_its_422(app):
    undeclared = [
        f"{m.upper()} {p}"
        for p, m, op in operations(app.openapi())
        if not p.startswith("webhook ") and (op.get("parameters") or "requestBody" in op)
        and op["responses"].get("422", {}).get("content", {}).get(PROBLEM_JSON, {}).get("schema", {}).get("$ref")
        != "#/components/schemas/ValidationProblem"
    ]
    assert undeclared == []
