"""Every service's log: one JSON object a line by default, or readable lines for a console.

A JSON line holds `time` (ISO 8601, UTC), `level`, `service`, `logger` and `message`, then the
fields given with `extra=` and those bound to the work under way with `log_context(...)` or
`bind(...)`: tenant, thread_id, post_id, event_id, invitation_id. No post body and no webhook
secret is ever among them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Literal

LogFormat = Literal["json", "text"]

TEXT_FORMAT = "%(asctime)s {service} %(levelname)s %(name)s: %(message)s"

_NO_FIELDS: Mapping[str, object] = MappingProxyType({})
# Each value is a new mapping, never changed after: a task started inside a block keeps the fields
# it was started with, whatever its parent binds later.
_FIELDS: ContextVar[Mapping[str, object]] = ContextVar("expertmatch_log_fields", default=_NO_FIELDS)

# What every LogRecord has; anything else on a record came with `extra=`, but for uvicorn's copy
# of its message with terminal colours.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "color_message",
}


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add `fields` to every line logged inside the block, and in the tasks started there; None is left out."""
    token = _FIELDS.set({**_FIELDS.get(), **_given(fields)})
    try:
        yield
    finally:
        _FIELDS.reset(token)


def bind(**fields: object) -> None:
    """Add `fields` to every later line of the current task: an HTTP request's, which ends with it."""
    _FIELDS.set({**_FIELDS.get(), **_given(fields)})


def _given(fields: Mapping[str, object]) -> dict[str, object]:
    return {name: value for name, value in fields.items() if value is not None}


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: the fixed fields first, then the bound ones and `extra=`'s."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = {name: value for name, value in vars(record).items() if name not in _RECORD_ATTRIBUTES}
        # A field given with the call says more than one bound around it; neither replaces the fixed ones.
        for name, value in {**_FIELDS.get(), **extra}.items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=_jsonable)


def _jsonable(value: object) -> str:
    """What JSON has no type for: times in ISO 8601, anything else (ids, paths) as its string."""
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def _utc(timestamp: float) -> str:
    """`2025-05-02T09:30:04.123Z`."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def formatter(service: str, log_format: LogFormat = "json") -> logging.Formatter:
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT.format(service=service))
    return JsonFormatter(service)


def configure_logging(service: str, level: str = "INFO", log_format: LogFormat = "json") -> None:
    """Every logger of the process to stderr, as JSON lines or as text; warnings too."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(service, log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # A library's warning is a log line like any other, not a bare line of its own on stderr.
    logging.captureWarnings(True)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
