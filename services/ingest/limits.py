"""Request size limits enforced before FastAPI parses anything."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import PROBLEM_JSON, field_error, problem_body


class RequestTooLarge(Exception):
    """The client sent more bytes than the limit: answered 413."""


class RequestSizeLimit:
    """Answers 413 when Content-Length, or the bytes actually received, exceed `max_bytes`.

    The body is read here in full (it has to be, to count it) and replayed to the app, so a
    client that lies about Content-Length or streams chunks cannot get past the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send, declared)
            return
        try:
            chunks = await self._read_body(receive)
        except RequestTooLarge:
            await self._reject(send, None)
            return
        await self.app(scope, _replay(chunks, receive), send)

    async def _read_body(self, receive: Receive) -> list[Message]:
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                raise RequestTooLarge
            if not message.get("more_body", False):
                return messages

    async def _reject(self, send: Send, size: int | None) -> None:
        told = f"{size} bytes" if size is not None else "more bytes than allowed"
        msg = f"request is {told}; the limit is {self.max_bytes} bytes: send smaller batches"
        body = json.dumps(problem_body(413, [field_error(["body"], msg, "too_large")])).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
