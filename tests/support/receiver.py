"""A real HTTP webhook receiver for tests: records every request and answers failures on cue."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 refuses connections when several senders deliver at once on a
    # loaded machine; the notifier would then record attempts the receiver never saw.
    request_queue_size = 128
    daemon_threads = True


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None = None
    location: str | None = None
    delay: float = 0.0  # seconds to wait before answering: a slow or hung endpoint


@dataclass
class Receiver:
    """Answers the queued `answers` in order, then 200; `url` is where to send webhooks."""

    answers: list[Answer] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    # The status each request in `requests` was answered with.
    statuses: list[int] = field(default_factory=list)
    # Answer every other request (past the queued answers) with 500: an endpoint that fails half the time.
    flaky: bool = False
    # Requests whose sender went away before the whole body arrived (a sender killed mid-request):
    # a receiver cannot read them, so they are neither recorded nor answered.
    cut_short: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the receiver first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def answer(self, *statuses: int, retry_after: str | None = None) -> None:
        """Queue answers for the next requests (Retry-After on each of them if given)."""
        with self._lock:
            self.answers.extend(Answer(status, retry_after) for status in statuses)

    def hang(self, seconds: float) -> None:
        """Queue an answer that comes only after `seconds`: longer than the sender's timeout."""
        with self._lock:
            self.answers.append(Answer(200, delay=seconds))

    def redirect(self, location: str, status: int = 307) -> None:
        """Queue a redirect for the next request."""
        with self._lock:
            self.answers.append(Answer(status, location=location))

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least `count` requests have arrived, or fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver got {len(self.received())} requests, expected {count}")
            await asyncio.sleep(0.02)
        return self.received()

    def acknowledged(self) -> list[Received]:
        """The requests answered with a 2xx: what the sender was told had arrived."""
        with self._lock:
            return [r for r, status in zip(self.requests, self.statuses, strict=True) if 200 <= status < 300]

    def _next_answer(self, request: Received) -> Answer:
        with self._lock:
            self.requests.append(request)
            if self.answers:
                answer = self.answers.pop(0)
            elif self.flaky and len(self.requests) % 2:
                answer = Answer(500)
            else:
                answer = Answer(200)
            self.statuses.append(answer.status)
            return answer

    def __enter__(self) -> Receiver:
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    with receiver._lock:
                        receiver.cut_short += 1
                    self.close_connection = True
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = receiver._next_answer(Received(self.path, headers, body, time.time()))
                if answer.delay:
                    time.sleep(answer.delay)  # a hung endpoint, in the receiver's own thread
                self.send_response(answer.status)
                if answer.retry_after is not None:
                    self.send_header("retry-after", answer.retry_after)
                if answer.location is not None:
                    self.send_header("location", answer.location)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="webhook-receiver", daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
