"""`expertmatch config`: the settings each service runs with, one variable a line, secrets masked."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic_settings import BaseSettings

from services.ingest.settings import IngestSettings
from services.matcher.settings import MatcherSettings
from services.notifier.settings import NotifierSettings
from shared.env import Setting, from_environment, settings_of
from shared.settings import CommonSettings

SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "matcher": MatcherSettings,
    "notifier": NotifierSettings,
}


def config_lines(services: Sequence[str] = tuple(SETTINGS)) -> list[str]:
    """The common settings, then each service's own: `NAME=value`, `# default` where the environment is silent.

    A bad variable exits 2 as it would for the service itself.
    """
    loaded = {service: from_environment(SETTINGS[service]) for service in services}
    common = list(CommonSettings.model_fields)
    lines = ["# common: read by every service", *map(_line, settings_of(loaded[services[0]], common))]
    for service, settings in loaded.items():
        own = [field for field in type(settings).model_fields if field not in common]
        lines += [f"# {service}", *map(_line, settings_of(settings, own))]
    return lines


def _line(setting: Setting) -> str:
    line = f"{setting.variable}={setting.value}"
    return line if setting.set_in_environment else f"{line}  # default"
