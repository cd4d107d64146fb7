"""A demo webhook endpoint that prints each invitation and whether its signature verified."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from services.embedded.console import say
from shared.embedded_broker import free_port


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class InvitedQuestion(_Loose):
    title: str | None = None
    url: str | None = None


class InvitationData(_Loose):
    person_id: str
    thread_id: str
    score: float
    why: str
    question: InvitedQuestion
    parts: dict[str, float] = {}


class InvitationWebhook(_Loose):
    type: str
    data: InvitationData


def _verifier(secret: str) -> Callable[[bytes, dict[str, str]], None]:
    """Verifies with the independent standardwebhooks package when installed, else the notifier's signer."""
    try:
        from standardwebhooks import Webhook
    except ImportError:
        from services.notifier.signing import verify

        return lambda body, headers: verify(secret, headers, body)
    hook = Webhook(secret)
    return lambda body, headers: hook.verify(body, headers)


class DemoReceiver:
    """Serves POST /invitations on 127.0.0.1 and a free port, inside the runner's event loop."""

    def __init__(self, *, names: dict[str, str]) -> None:
        self.port = free_port()
        self.received = 0
        self._names = names
        self._verify: Callable[[bytes, dict[str, str]], None] | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/invitations"

    def trust(self, secret: str) -> None:
        """The subscription's secret, known once the notifier has created it."""
        self._verify = _verifier(secret)

    def app(self) -> FastAPI:
        app = FastAPI(title="expertmatch demo receiver")

        @app.post("/invitations")
        async def invitation(request: Request) -> Response:
            body = await request.body()
            return Response(status_code=self._receive(body, dict(request.headers)))

        return app

    def _receive(self, body: bytes, headers: dict[str, str]) -> int:
        if self._verify is None:
            say("a webhook arrived before the subscription existed; refused", source="receiver")
            return 503
        try:
            self._verify(body, headers)
        except Exception as exc:  # each verifier raises its own error type
            say(f"REJECTED a webhook: signature did not verify ({exc})", source="receiver")
            return 401
        try:
            hook = InvitationWebhook.model_validate_json(body)
        except ValidationError as exc:
            say(f"a signed webhook this demo cannot read: {exc.errors()[0]['msg']}", source="receiver")
            return 204
        self.received += 1
        say(self._describe(hook.data), source="receiver")
        return 204

    def _describe(self, data: InvitationData) -> str:
        who = self._names.get(data.person_id, data.person_id)
        title = data.question.title or data.thread_id
        # The biggest parts of the score first: what put this person here.
        parts = ", ".join(f"{name} {value:.2f}" for name, value in sorted(data.parts.items(), key=lambda p: -p[1])[:3])
        return (
            f"INVITATION -> {who} to \"{title}\" (score {data.score:.2f}{': ' + parts if parts else ''})\n"
            f"    why: {data.why}\n"
            f"    signature verified"
        )

    async def start(self) -> None:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(), name="demo-receiver")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises why it could not start
                raise RuntimeError("the demo receiver stopped before it started")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
