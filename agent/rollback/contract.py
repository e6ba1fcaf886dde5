"""The rollback webhook's contract (contract §3): its body, signature and intent. Pure.

What it must not do: any I/O, or read a clock (times are given). Delivery, with its
retries and crash safety, is `agent.rollback.delivery`; receivers can verify with
`verify` exactly as Postflight signs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

from agent.records import DeployWindow, RollbackIntent
from common.jsonsafe import json_safe
from common.times import rfc3339

BREACH_KEYS = ("rule", "source", "metric", "observed", "baseline", "threshold", "detail")
"""The contract's breach fields, in the order the body carries them."""


def _breach(item: Mapping[str, Any]) -> dict[str, Any]:
    """One breach with exactly the contract's fields, in its order.

    Accepts the API's rule shape too (`name` for `rule`), so a caller can pass a
    verdict's failing rules as they are; anything else (outcome, evidence, link)
    is not part of the webhook and is left out.
    """
    out: dict[str, Any] = {}
    for key in BREACH_KEYS:
        value = item.get(key)
        if key == "rule" and value is None:
            value = item.get("name")
        out[key] = json_safe(value)
    return out


def rollback_body(
    window: DeployWindow, reason: str, breaches: Iterable[Mapping[str, Any]], requested_at: float
) -> str:
    """The exact JSON body of the rollback webhook: compact, keys in the contract's order.

    Computed once and stored with the intent; every attempt sends these bytes, so
    a receiver can compare retries byte for byte. Times are written as the deploy
    object writes them (RFC 3339, milliseconds), so `deploy.deployed_at` and
    `requested_at` equal the API's `deployed_at` and `rollback.requested_at`.
    """
    body = {
        "event": "rollback",
        "deploy": {
            "id": window.id,
            "environment": window.environment,
            "version": window.version,
            "previous_version": window.previous_version,
            "commit": window.commit,
            "labels": dict(window.labels),
            "deployed_at": rfc3339(window.deployed_at),
        },
        "reason": reason,
        "breaches": [_breach(b) for b in breaches],
        "requested_at": rfc3339(requested_at),
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<lowercase hex of HMAC-SHA256(secret, "<timestamp>.<raw body>")>`.

    The timestamp is inside the MAC so a receiver can refuse replays of an old
    request by its age.
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Check a signature the way a receiver should: over the `X-Postflight-Timestamp`
    header as written (ASCII digits; read as an int, `+1795701690` verified a MAC made
    over `1795701690.`), compared in constant time (as bytes: any header text is an
    answer, where a non-ASCII one raised out of `compare_digest`)."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    expected = ("sha256=" + mac.hexdigest()).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape"))


DRY_RUN_NOTES = {
    "webhook": "dry run: the webhook was not called",
    "vercel": "dry run: Vercel was not called",
    "github": "dry run: the GitHub rollback workflow was not dispatched",
}
"""What a `dry_run` rollback's `last_error` says, by `rollback.target`: the one it names is
the one that would have been asked (a Vercel target's said "the webhook")."""


def dry_run_note(target: str) -> str:
    return DRY_RUN_NOTES.get(target, DRY_RUN_NOTES["webhook"])


def rollback_intent(
    window: DeployWindow,
    reason: str,
    breaches: Iterable[Mapping[str, Any]],
    requested_at: float,
    *,
    dry_run: bool = False,
    target: str = "webhook",
) -> RollbackIntent:
    """The intent to store with the failed verdict (`Store.finish_window(rollback=…)`).

    `dry_run` gives a `skipped` intent: the API shows what would have been sent (to
    `target`, `rollback.target`), nothing ever is (`pending_rollbacks` never returns it).
    """
    body = rollback_body(window, reason, breaches, requested_at)
    if dry_run:
        return skipped_intent(window.id, body, requested_at, target)
    return RollbackIntent(
        window_id=window.id, state="pending", body=body, requested_at=requested_at
    )


def skipped_intent(
    window_id: str, body: str, requested_at: float, target: str = "webhook"
) -> RollbackIntent:
    """A rollback the environment's `dry_run` kept from being sent."""
    return RollbackIntent(
        window_id=window_id,
        state="skipped",
        body=body,
        requested_at=requested_at,
        finished_at=requested_at,
        last_error=dry_run_note(target),
    )


def resumed_from(intent: RollbackIntent, owner: str, *, startup: bool) -> str:
    """How a sweep that picks up a stored rollback says it (`agent.windows.supervisor`),
    as what it is: a first attempt not yet sent is started, not resumed, and "from
    nobody" named no one (a manual rollback stored without its sender's lease, which
    every manual one was)."""
    attempt = intent.attempts + 1
    held = intent.lease_owner
    if held is None:
        if not intent.attempts:
            return "starting rollback delivery (attempt 1: stored, no sender had taken it)"
        return f"resuming rollback delivery (attempt {attempt}: no sender held it)"
    if held != owner:
        sender = f"{held}, whose lease lapsed"
    elif startup:
        sender = "this replica's previous process"
    else:
        sender = "this replica's own sender, whose lease lapsed"
    if not intent.attempts:
        return f"starting rollback delivery (attempt 1, none sent before), taken over from {sender}"
    return f"resuming rollback delivery (attempt {attempt}), taken over from {sender}"
