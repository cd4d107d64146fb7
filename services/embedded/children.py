"""The services as child processes: started, their output forwarded, awaited ready, stopped gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import httpx

from services.embedded.console import say


class ChildFailed(Exception):
    """A service exited, or never became ready: the run cannot go on."""


@dataclass
class Child:
    name: str
    port: int
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    _forwarder: asyncio.Task | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # Its own session: Ctrl-C reaches only the runner, which then stops children in order.
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", self.name,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._forwarder = asyncio.create_task(self._forward(), name=f"{self.name}-output")

    async def _forward(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            if not _is_poll(text):
                say(text, source=self.name)

    async def wait_ready(self, http: httpx.AsyncClient, timeout: float) -> None:
        """Poll /readyz until 200; fail fast if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.returncode is not None:
                code = self.process.returncode if self.process else None
                raise ChildFailed(f"{self.name} exited (code {code}) before it was ready; its output is above")
            try:
                if (await http.get(f"{self.url}/readyz", timeout=5)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            await asyncio.sleep(0.5)
        raise ChildFailed(f"{self.name} was not ready on {self.url}/readyz after {timeout:.0f}s")

    async def exited(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (uvicorn drains, consumers commit), then SIGKILL if it takes longer than `grace`."""
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                say(f"{self.name} did not stop within {grace:.0f}s; killing it")
                self.process.kill()
                await self.process.wait()
        if self._forwarder is not None:
            await self._forwarder


_POLLS = ('"GET /readyz', '"GET /v1/index/stats')


def _is_poll(line: str) -> bool:
    """The runner's own polling in the access log: noise that would bury what matters."""
    return "uvicorn.access" in line and any(poll in line for poll in _POLLS)


def child_env(base: dict[str, str], **values: str) -> dict[str, str]:
    """The runner's environment plus what every child must agree on."""
    env = dict(base)
    env.update(values)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # The model ships in site-packages; the hub is never asked.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def current_env() -> dict[str, str]:
    return dict(os.environ)
