"""The version `expertmatch --version` reports: the installed package's, else the source tree's pyproject."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def package_version(distribution: str = "expertmatch", pyproject: Path = PYPROJECT) -> str:
    """`0.1.0` from the install's metadata; run from a source tree that is not installed, its pyproject's."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        pass
    try:
        return tomllib.loads(pyproject.read_text())["project"]["version"] + " (not installed)"
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown (not installed, and no pyproject.toml beside the source)"
