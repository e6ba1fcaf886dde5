"""The README's "Verify the signature like this" snippet (section "The rollback webhook"),
run as written against a rollback the agent's delivery really sent: a receiver written
from it accepts the agent's requests and refuses an altered body or timestamp."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.metrics import Metrics
from agent.rollback.delivery import RollbackDelivery
from agent.store.sqlite import SqliteStore
from tests.receivers import RollbackReceiver
from tests.rollback.support import SECRET, settings, stored_intent

README = Path(__file__).resolve().parents[2] / "README.md"


def snippet() -> str:
    section = README.read_text().split("\n## The rollback webhook\n", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    return str(code)


def verified(secret: bytes, ts: str, raw_body: bytes, headers: dict[str, str]) -> bool:
    names: dict[str, Any] = {
        "hmac": hmac,
        "hashlib": hashlib,
        "secret": secret,
        "ts": ts,
        "raw_body": raw_body,
        "request": SimpleNamespace(headers=headers),
    }
    exec(snippet(), names)  # the README's own lines
    return bool(names["ok"])


async def test_the_readmes_signature_check_accepts_what_the_agent_sends(
    store: SqliteStore, metrics: Metrics, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    sender = RollbackDelivery(store, metrics, random=lambda: 0.5)
    try:
        done = await sender.deliver(await stored_intent(store), settings(receiver.url), "prod")
    finally:
        await sender.aclose()
    assert done.state == "delivered"
    [attempt] = receiver.attempts
    headers, body = attempt.headers, attempt.body.encode()
    ts = headers["X-Postflight-Timestamp"]
    assert verified(SECRET.encode(), ts, body, headers)
    assert not verified(SECRET.encode(), ts, body.replace(b"rollback", b"rollbacK"), headers)
    assert not verified(SECRET.encode(), str(int(ts) + 1), body, headers)
    assert not verified(b"another secret", ts, body, headers)
