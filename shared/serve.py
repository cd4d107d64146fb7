"""`--host` and `--port` for every service's main: flags that override the service's settings."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


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
