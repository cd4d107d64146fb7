"""The services as child processes: started, their output forwarded, awaited ready, restarted when they die, stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from services.embedded.backoff import Backoff
from services.embedded.console import say

# Exits before the first ready that end the run: enough to tell a bad setting from bad luck.
GIVE_UP_AFTER = 3


class ChildFailed(Exception):
    """A service never became ready: the run cannot go on."""


@dataclass
class Child:
    """One service process, started again after the backoff's delay whenever it exits unasked."""

    name: str
    port: int
    env: dict[str, str]
    # What runs; `python -m services.cli NAME` unless told otherwise.
    command: Sequence[str] = ()
    backoff: Backoff = field(default_factory=Backoff)
    # How the restart delay is waited out: tests pass one that only advances their clock.
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    process: asyncio.subprocess.Process | None = None
    # Exits it did not ask for, and whether it was ever ready: a service that keeps dying before
    # its first /readyz 200 (a bad setting, say) ends the run instead of being retried for minutes.
    exits: int = 0
    was_ready: bool = False
    _forwarders: set[asyncio.Task] = field(default_factory=set, repr=False)
    _watchers: set[asyncio.Task] = field(default_factory=set, repr=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _starting: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        async with self._starting:
            if not self._stopping.is_set():
                await self._spawn()
                say(f"{self.name} started (pid {self.process.pid})")

    async def _spawn(self) -> None:
        command = self.command or (sys.executable, "-m", "services.cli", self.name)
        # Its own session: Ctrl-C reaches only the runner, which then stops children in order.
        self.process = await asyncio.create_subprocess_exec(
            *command,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self.backoff.started()
        _keep(self._forwarders, asyncio.create_task(self._forward(self.process), name=f"{self.name}-output"))

    async def _forward(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            if not _is_poll(text):
                say(text, source=self.name)

    async def is_ready(self, http: httpx.AsyncClient) -> bool:
        try:
            return (await http.get(f"{self.url}/readyz", timeout=5)).status_code == 200
        except httpx.HTTPError:
            return False  # not listening (yet, or any more)

    async def wait_ready(self, http: httpx.AsyncClient, timeout: float) -> None:
        """Poll /readyz until 200, through any restarts; ChildFailed after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.is_ready(http):
                self.was_ready = True
                return
            if not self.was_ready and self.exits >= GIVE_UP_AFTER:
                raise ChildFailed(
                    f"{self.name} exited {self.exits} times before it was ever ready; its output is above"
                )
            await asyncio.sleep(0.5)
        raise ChildFailed(f"{self.name} was not ready on {self.url}/readyz after {timeout:.0f}s; its output is above")

    async def keep_running(self, http: httpx.AsyncClient) -> None:
        """Start the service again each time it exits unasked; returns once `stop` was called."""
        while self.process is not None:
            code = await self.process.wait()
            if self._stopping.is_set():
                return
            self.exits += 1
            exited_at = time.monotonic()
            delay = self.backoff.delay()
            say(f"{self.name} exited (code {code}); restarting in {delay:g}s")
            if not await self._pause(delay):
                return
            async with self._starting:
                if self._stopping.is_set():
                    return
                await self._spawn()
            say(f"{self.name} restarted (pid {self.process.pid})")
            ready = self._say_when_ready(http, self.process, exited_at)
            _keep(self._watchers, asyncio.create_task(ready, name=f"{self.name}-ready"))

    async def _pause(self, delay: float) -> bool:
        """Wait out the delay; False if told to stop meanwhile."""
        sleeping = asyncio.ensure_future(self.sleep(delay))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeping, stopping):
            task.cancel()
        return not self._stopping.is_set()

    async def _say_when_ready(
        self, http: httpx.AsyncClient, process: asyncio.subprocess.Process, exited_at: float
    ) -> None:
        while process.returncode is None:
            if await self.is_ready(http):
                say(f"{self.name} is ready again on {self.url} ({time.monotonic() - exited_at:.1f}s after it exited)")
                return
            await asyncio.sleep(0.5)

    async def stop(self, grace: float = 20.0) -> None:
        """No more restarts; SIGTERM (uvicorn drains, consumers commit), SIGKILL after `grace` seconds."""
        self._stopping.set()
        async with self._starting:  # a restart under way finishes first, so no process is left behind
            process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                say(f"{self.name} did not stop within {grace:.0f}s; killing it")
                process.kill()
                await process.wait()
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, *self._forwarders, return_exceptions=True)


def _keep(tasks: set[asyncio.Task], task: asyncio.Task) -> None:
    """Hold a reference until the task is done (the loop keeps only weak ones)."""
    tasks.add(task)
    task.add_done_callback(tasks.discard)


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
    # The runner prints its children's lines among its own: readable ones, unless the operator chose.
    env.setdefault("EXPERTMATCH_LOG_FORMAT", "text")
    return env


def current_env() -> dict[str, str]:
    return dict(os.environ)
