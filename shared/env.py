"""Settings as an operator sees them: the environment variable behind each field, its value with
secrets masked, and a loader that turns a bad variable into one line on stderr and exit status 2.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

S = TypeVar("S", bound=BaseSettings)

MASK = "***"
# A variable whose name says it holds a credential is never shown, whatever it holds.
_SECRET_NAME = re.compile(r"key|secret|password|token", re.IGNORECASE)
# `scheme://user:password@host`: the password of a URL in any value (several, comma-separated, too).
_URL_PASSWORD = re.compile(r"(//[^/:@\s,]*:)[^/@\s,]+@")
_QUERY_SECRET = re.compile(r"([?&][^=&\s]*(?:key|secret|password|token)[^=&\s]*=)[^&\s,]*", re.IGNORECASE)
_EXIT_BAD_SETTINGS = 2


@dataclass(frozen=True, slots=True)
class Setting:
    """One field of a settings object, named as the operator sets it."""

    variable: str
    value: str  # as the environment would spell it, secrets masked
    set_in_environment: bool  # else it holds its default


def variable_of(cls: type[BaseSettings], field: str) -> str:
    """The environment variable a field is read from: its alias, else the class's prefix and its name."""
    alias = cls.model_fields[field].validation_alias
    if isinstance(alias, str):
        return alias
    if alias is not None:
        return str(alias.choices[0])
    return (cls.model_config.get("env_prefix", "") + field).upper()


def masked(variable: str, value: str, *, numeric: bool = False) -> str:
    """`value` fit to print: whole if the name says secret, else with URL passwords and secret query values hidden.

    A number is no credential whatever its name (NOTIFIER_SECRET_OVERLAP is a duration).
    """
    if _SECRET_NAME.search(variable) and not numeric:
        return MASK if value else ""
    value = _URL_PASSWORD.sub(rf"\g<1>{MASK}@", value)
    return _QUERY_SECRET.sub(rf"\g<1>{MASK}", value)


def settings_of(settings: BaseSettings, fields: list[str] | None = None) -> list[Setting]:
    """The effective value of each field (all, in declaration order, unless named), as an operator reads it."""
    cls = type(settings)
    present = {name.upper() for name in os.environ}
    listed = []
    for field in fields if fields is not None else list(cls.model_fields):
        variable = variable_of(cls, field)
        raw = _spelled(getattr(settings, field))
        listed.append(Setting(variable, masked(variable, raw, numeric=_numeric(cls, field)), variable in present))
    return listed


def _numeric(cls: type[BaseSettings], field: str) -> bool:
    return cls.model_fields[field].annotation in (int, float, bool)


def _spelled(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def setting_errors(cls: type[BaseSettings], error: ValidationError) -> list[str]:
    """One line per bad variable: `NAME='value': the rule it breaks`, the value masked like any other."""
    return [_error_line(cls, problem) for problem in error.errors()]


def _error_line(cls: type[BaseSettings], problem) -> str:
    if not problem["loc"]:
        return f"settings: {problem['msg']}"
    where = str(problem["loc"][0])
    # pydantic names a field by its alias when it has one: that is already the variable.
    field = where if where in cls.model_fields else _field_of(cls, where)
    variable = variable_of(cls, field) if field else where
    rule = problem["msg"].removeprefix("Value error, ").removeprefix(f"{variable}: ")
    shown = masked(variable, str(problem.get("input", "")), numeric=bool(field) and _numeric(cls, field))
    return f"{variable}={shown if shown == MASK else repr(shown)}: {rule}"


def _field_of(cls: type[BaseSettings], variable: str) -> str | None:
    """The field read from `variable`, if any."""
    return next((field for field in cls.model_fields if variable_of(cls, field) == variable), None)


def from_environment(cls: type[S]) -> S:
    """`cls()` read from the environment; a bad variable prints its line and exits with status 2."""
    try:
        return cls()
    except ValidationError as exc:
        lines = setting_errors(cls, exc)
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        lines = [str(exc)]
    for line in lines:
        print(f"expertmatch: {line}", file=sys.stderr)
    raise SystemExit(_EXIT_BAD_SETTINGS)
