"""`--host` and `--port` for every service's main: flags that override the service's settings."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic_settings import BaseSettings

from shared.env import from_environment
from shared.logs import configure_logging
from shared.tracing import configure_tracing, shutdown as shutdown_tracing


class _Listens(Protocol):
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Bind:
    """Where the command line says to listen; None leaves the setting as it is."""

    host: str | None = None
    port: int | None = None

    def address(self, settings: _Listens) -> tuple[str, int]:
        """(host, port): the flags where given, else the settings."""
        return (
            self.host if self.host is not None else settings.host,
            self.port if self.port is not None else settings.port,
        )


def parse_bind(argv: Sequence[str] | None, *, service: str, env_prefix: str) -> Bind:
    """Parse `expertmatch <service> [--host H] [--port P]`; exits with usage on anything else."""
    parser = argparse.ArgumentParser(prog=f"expertmatch {service}", description=f"Run the {service} service.")
    parser.add_argument("--host", help=f"overrides {env_prefix}HOST")
    parser.add_argument("--port", type=int, help=f"overrides {env_prefix}PORT")
    args = parser.parse_args(argv)
    return Bind(host=args.host, port=args.port)


def serve(
    argv: Sequence[str] | None,
    *,
    service: str,
    env_prefix: str,
    settings_class: type[BaseSettings],
    create_app: Callable[[Any], Any],
    **uvicorn_options: Any,
) -> None:
    """Settings from the environment (a bad one exits 2), flags over them, logging, then the app under uvicorn."""
    import uvicorn

    bind = parse_bind(argv, service=service, env_prefix=env_prefix)
    settings = from_environment(settings_class)
    host, port = bind.address(settings)
    configure_logging(service, settings.log_level, settings.log_format)
    configure_tracing(service)
    try:
        # log_config=None keeps the format configure_logging set.
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None, **uvicorn_options)
    finally:
        shutdown_tracing()  # the last spans exported
