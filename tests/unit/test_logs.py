"""The services' log lines: JSON objects with the bound ids by default, today's text lines on request."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
import warnings
from datetime import UTC, datetime

import pytest

from services.embedded.children import child_env
from shared.logs import bind, configure_logging, log_context

pytestmark = pytest.mark.unit

log = logging.getLogger("tests.logs")


@pytest.fixture(autouse=True)
def _restore_logging():
    """configure_logging changes the whole process's logging: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in ("aiokafka", "httpx")}
    yield
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in quieted.items():
        logging.getLogger(name).setLevel(was)


def lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_a_line_is_one_json_object_with_the_fixed_fields_the_bound_ids_and_extra(capsys):
    configure_logging("matcher", "INFO")
    event_id = uuid.uuid4()

    with log_context(tenant="acme", thread_id="t-1", post_id=None):
        log.info("question %s matched", "q-1", extra={
            "event": "match", "event_id": event_id, "candidates": [{"person_id": "kim", "score": 2.5}],
            "next_attempt_at": datetime(2025, 5, 2, 9, 30, tzinfo=UTC),
        })

    [line] = lines(capsys)
    assert line == {
        "time": line["time"],
        "level": "INFO",
        "service": "matcher",
        "logger": "tests.logs",
        "message": "question q-1 matched",
        "tenant": "acme",
        "thread_id": "t-1",
        "event": "match",
        "event_id": str(event_id),
        "candidates": [{"person_id": "kim", "score": 2.5}],
        "next_attempt_at": "2025-05-02T09:30:00+00:00",
    }
    at = datetime.fromisoformat(line["time"])
    assert at.utcoffset().total_seconds() == 0 and abs((datetime.now(UTC) - at).total_seconds()) < 60
    assert line["time"].endswith("Z")


def test_bound_ids_last_as_long_as_their_block_and_a_field_given_with_the_call_wins(capsys):
    configure_logging("notifier", "INFO")

    with log_context(tenant="acme", thread_id="t-1"):
        with log_context(thread_id="t-2", invitation_id="inv_1"):
            log.info("inner", extra={"invitation_id": "inv_2", "level": "not a level"})
        log.info("outer")
    log.info("after")

    inner, outer, after = lines(capsys)
    assert (inner["tenant"], inner["thread_id"], inner["invitation_id"], inner["level"]) == ("acme", "t-2", "inv_2",
                                                                                              "INFO")
    assert (outer["thread_id"], "invitation_id" in outer) == ("t-1", False)
    assert {"tenant", "thread_id"}.isdisjoint(after)


async def test_what_a_request_binds_stays_with_its_task(capsys):
    configure_logging("ingest", "INFO")

    async def request(tenant: str) -> None:
        bind(tenant=tenant)
        await asyncio.sleep(0)
        log.info("handled")

    await asyncio.gather(request("acme"), request("globex"))
    log.info("between requests")

    *handled, between = lines(capsys)
    assert sorted(line["tenant"] for line in handled) == ["acme", "globex"]
    assert "tenant" not in between


def test_an_exception_stays_on_its_one_line(capsys):
    configure_logging("notifier", "INFO")
    try:
        raise ValueError("bad payload")
    except ValueError:
        log.exception("delivery failed")

    [line] = lines(capsys)
    assert line["level"] == "ERROR" and line["message"] == "delivery failed"
    assert line["exception"].startswith("Traceback") and "ValueError: bad payload" in line["exception"]


def test_a_librarys_warning_is_a_json_line_too(capsys):
    configure_logging("matcher", "INFO")
    warnings.warn("the old name still answers", UserWarning, stacklevel=1)

    [line] = lines(capsys)
    assert line["logger"] == "py.warnings" and "the old name still answers" in line["message"]


def test_text_lines_are_the_readable_console_format_without_the_fields(capsys):
    configure_logging("matcher", "info", "text")

    with log_context(tenant="acme"):
        log.info("question %s matched", "q-1", extra={"event": "match"})
    log.debug("not at INFO")

    [line] = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} matcher INFO tests\.logs: question q-1 matched", line)


def test_the_runner_gives_its_children_text_lines_unless_the_operator_chose():
    assert child_env({})["EXPERTMATCH_LOG_FORMAT"] == "text"
    assert child_env({"EXPERTMATCH_LOG_FORMAT": "json"})["EXPERTMATCH_LOG_FORMAT"] == "json"
