"""Field types for what clients send: text that every store and encoder can hold, instants in UTC.

JSON may carry a lone surrogate (`"\\ud800"`), which no UTF-8 encoder, Kafka message or
database takes, and NUL, which PostgreSQL refuses in text; either is refused here with a 422
naming the field, before any route sees it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, StringConstraints
from pydantic_core import PydanticCustomError

# The largest value an INTEGER column holds on PostgreSQL (and a sane bound for a count anywhere).
INT32_MAX = 2**31 - 1

_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")


def _readable(value: Any) -> Any:
    if isinstance(value, str) and (found := _UNENCODABLE.search(value)):
        char = found.group()
        what = "a NUL character" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
        raise PydanticCustomError(
            "string_unicode",
            "must be Unicode text: character {position} is {what}",
            {"position": found.start() + 1, "what": what},
        )
    return value


def text_field(
    *,
    strip: bool = False,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
) -> Any:
    """A `str` field type that refuses lone surrogates and NUL, then applies the given constraints.

    The check runs first (it wraps the constraints), so a bad character gets its own message.
    """
    constraints = StringConstraints(
        strip_whitespace=strip or None, min_length=min_length, max_length=max_length, pattern=pattern
    )
    return Annotated[str, constraints, BeforeValidator(_readable)]


Text = text_field()


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "must fall between the years 1 and 9999 in UTC") from None


# An aware instant, converted to UTC (so it can be compared and stored everywhere).
Instant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
