"""Standard Webhooks v1 signatures: `whsec_` secrets, HMAC-SHA256 over `id.timestamp.body`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


class InvalidSignature(ValueError):
    """A webhook whose headers are missing, stale, or signed with another secret."""


def new_secret() -> str:
    """A fresh endpoint secret: `whsec_` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one message: `v1,<base64 HMAC>`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    secret: str | Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """Every header a Standard Webhooks request carries, signed now unless told the time.

    Given several secrets (a rotation's overlap), one signature per secret, space-separated.
    """
    timestamp = int(time.time()) if timestamp is None else timestamp
    keys = [secret] if isinstance(secret, str) else list(secret)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(key, msg_id, timestamp, body) for key in keys),
        "content-type": "application/json",
    }


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300) -> None:
    """Check a received webhook; raises InvalidSignature unless one v1 signature matches in time."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp, presented = (lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and presented):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > tolerance:
        raise InvalidSignature("webhook-timestamp is not a recent unix time")
    expected = sign(secret, msg_id, int(stamp), body).encode()
    if not any(hmac.compare_digest(expected, part.encode()) for part in presented.split()):
        raise InvalidSignature("no matching v1 signature")
