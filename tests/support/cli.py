"""The `expertmatch` command as an operator runs it: a process, an environment of its own, its output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# What a process needs to start at all; every setting comes from the test.
_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def expertmatch(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`expertmatch ARGS` with only `env` set among the settings; its exit code, stdout and stderr."""
    environment = {name: os.environ[name] for name in _KEPT if name in os.environ}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=environment, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )
