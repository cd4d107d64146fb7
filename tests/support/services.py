"""The three services as real processes, as `expertmatch <service>` runs them, for e2e tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.embedded_broker import free_port
from tests.support.topics import create_topics

SERVICES = ("ingest", "matcher", "notifier")


@dataclass
class ServiceProcesses:
    """Starts ingest, matcher and notifier against a broker; `url(name)` is where each answers."""

    bootstrap_servers: str
    data_dir: Path
    api_keys: str
    topic_prefix: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICES
    ports: dict[str, int] = field(default_factory=dict)
    _processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def of_test(cls, broker, topic_prefix: str, tmp_path: Path, *, api_keys: str = "acme-key:acme", **options):
        """The services of one test: on its broker and topics, their data under its tmp_path."""
        return cls(
            bootstrap_servers=broker.bootstrap_servers, data_dir=tmp_path / "data", api_keys=api_keys,
            topic_prefix=topic_prefix, **options,
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def rss_bytes(self, name: str) -> int:
        """The resident memory of a running service's process, as Linux counts it (VmRSS)."""
        status = Path(f"/proc/{self._processes[name].pid}/status").read_text()
        kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kilobytes) * 1024

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap_servers,
            KAFKA_TOPIC_PREFIX=self.topic_prefix,
            KAFKA_SESSION_TIMEOUT_MS="3000",
            EXPERTMATCH_API_KEYS=self.api_keys,
            EXPERTMATCH_DATA_DIR=str(self.data_dir),
            HF_HUB_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            # The test receivers listen on loopback, which the notifier refuses unless allowed.
            NOTIFIER_ALLOWED_HOSTS="127.0.0.0/8,::1",
        )
        for name in self.services:
            env[f"{name.upper()}_PORT"] = str(self.ports[name])
        env.update(self.extra_env)
        return env

    def start(self, ready_timeout: float = 120.0) -> ServiceProcesses:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The services never create topics: their owner does, before they start.
        create_topics(self.bootstrap_servers, self.topic_prefix)
        for name in self.services:
            self.ports.setdefault(name, free_port())
        for name in self.services:
            self._spawn(name)
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str) -> None:
        with open(self.data_dir / f"{name}.log", "ab") as log:
            self._processes[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", name], env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self, name: str) -> None:
        """kill -9: no draining, no last commit, as a crash or the OOM killer would."""
        process = self._processes[name]
        process.kill()
        process.wait()

    def restart(self, name: str, ready_timeout: float = 120.0) -> None:
        """Start a killed service again on its port, and wait until it is ready."""
        assert self._processes[name].poll() is not None, f"{name} is still running"
        self._spawn(name)
        self.wait_ready(ready_timeout, only=(name,))

    def wait_ready(self, timeout: float, only: tuple[str, ...] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = set(only or self.services)
        while pending:
            for name in sorted(pending):
                process = self._processes[name]
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")
                try:
                    if httpx.get(f"{self.url(name)}/readyz", timeout=2).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}\n{self.log(n)[-2000:]}" for n in pending)
                raise TimeoutError(f"not ready after {timeout:.0f}s: {sorted(pending)}\n{logs}")
            time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGTERM each service (graceful: consumers commit what they did), kill if it hangs."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, process in self._processes.items():
            try:
                codes[name] = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        self._processes.clear()
        return codes

    def __enter__(self) -> ServiceProcesses:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
