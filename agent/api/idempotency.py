"""Which registrations are the same request, for `Idempotency-Key` (contract §2).

Pure: no I/O. A repeat is the same request when it asks for the deploy its key
registered, as registering it would have then:
- each field it gives equal in meaning to the first's (key order, spacing, a `null` or a
  field left out, `Z`, `+00:00` or another offset for one instant, `600`, `600.0`,
  `"10m"` or `"600s"` for one window; a `deployed_at` up to the clock skew ahead of the
  first's registration is that moment, as it was taken then);
- `deployed_at` left out meaning the moment of registration, the first's: a repeat
  registers nothing new (else no retry that leaves it out could be the same request);
- `window` left out meaning the environment's window in the configuration loaded NOW,
  not the one the first was registered under. The configuration is the operator's, and
  changes by a restart or a replica started with another one: after `window: 10m`
  became `15m`, a repeat that leaves `window` out asks for 15m, and replaying the 10m
  deploy would tell the pipeline it has what it did not ask; a 409 says so. A repeat
  that leaves it out as the first did is the same body, replayed whatever the
  configuration says now (`stored_as_same`).

What is stored with a key is `document_hash`, the hash of the request's document with
its left-out fields out, as session 41 stored it: every version since reads it (session
41 and 42 compare it with each spelling of their repeat's left-out fields), so during a
rolling upgrade an older replica still replays a key stored by this one. Session 42
stored `v3:`, the hash of the validated request, which session 41 never matched (a 409
for a retry that reached an old replica). That hash is still read here; the meaning it
held is compared, for a key stored now, with what its first request registered
(`differences`). Versions before session 41 hashed the document as sent, nulls and all.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.api.models import CLOCK_SKEW_S, DeployRequest, parse_rfc3339
from agent.records import DeployWindow
from common.durations import format_duration
from common.times import rfc3339

LEFT_OUT: dict[str, tuple[Any, ...]] = {
    name: (None, {}) if name == "labels" else (None,)
    for name, field in DeployRequest.model_fields.items()
    if not field.is_required()
}
"""Optional fields, and the values that mean them left out (besides leaving them out)."""

SHOWN_AS_GIVEN = ("environment", "version", "previous_version", "commit", "labels")
"""The request's fields its deploy object shows as they were sent (not `window` and
`deployed_at`: the object has `ends_at`, and now for a `deployed_at` left out)."""

SAME_INSTANT_S = 1e-6
"""Two times or windows this close are one: the request's resolution is the
microsecond, and a window is read back as `ends_at - deployed_at` (float rounding)."""


def canonical_hash(document: Any) -> str:
    """The same JSON document, however it was spelled (key order, spacing), hashes the same."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _without_left_out(document: Any) -> Any:
    if not isinstance(document, dict):
        return document
    return {
        name: value
        for name, value in document.items()
        if not (name in LEFT_OUT and any(value == same for same in LEFT_OUT[name]))
    }


def document_hash(document: Any) -> str:
    """What is stored with a key: the hash of its request's document with the left-out
    fields out (session 41's format, which every version since reads)."""
    return canonical_hash(_without_left_out(document))


def _meaning(value: Any) -> Any:
    if isinstance(value, datetime):  # aware UTC (`parse_rfc3339`), to the microsecond
        return value.isoformat()
    return value


def meaning_hash(request: DeployRequest) -> str:
    """What session 42 stored with a key: the hash of the validated request, every field
    with its value (a field left out as its default). Read, no longer written."""
    meaning = {name: _meaning(value) for name, value in request.model_dump().items()}
    return "v3:" + canonical_hash(meaning)


def same_request_hashes(document: Any) -> frozenset[str]:
    """Every hash a key stored by a version may hold for this document as written: each
    way of spelling a left-out field (out, null, `{}` for labels) hashed as written,
    `document_hash` among them. At most 48 spellings, computed only for a repeated key."""
    canonical = _without_left_out(document)
    if not isinstance(canonical, dict):
        return frozenset({canonical_hash(canonical)})
    absent = [name for name in LEFT_OUT if name not in canonical]
    choices = [tuple((name, value) for value in (_OUT, *LEFT_OUT[name])) for name in absent]
    return frozenset(
        canonical_hash({**canonical, **{n: v for n, v in spelling if v is not _OUT}})
        for spelling in itertools.product(*choices)
    )


_OUT = object()
"""A field left out of a spelling."""


def stored_as_same(stored_hash: str, document: Any, request: DeployRequest | None) -> bool:
    """The stored hash is this request's: the same document (each spelling of its
    left-out fields), or, for a key session 42 stored, the same validated request."""
    if request is not None and stored_hash == meaning_hash(request):
        return True
    return stored_hash in same_request_hashes(document)


@dataclass(frozen=True, slots=True)
class Registered:
    """What a key's first request registered: its answer (the fields shown as given) and
    its window's times, exact (None for a window no longer stored: read from the answer,
    to the millisecond)."""

    answer: Mapping[str, Any]
    window: DeployWindow | None

    def times(self) -> tuple[float, float, float | None] | None:
        """deployed_at, the window's length, and the moment it was registered."""
        if self.window is not None:
            deployed = self.window.deployed_at
            return deployed, self.window.ends_at - deployed, self.window.created_at
        try:
            deployed = parse_rfc3339(self.answer["deployed_at"]).timestamp()
            return deployed, parse_rfc3339(self.answer["ends_at"]).timestamp() - deployed, None
        except (KeyError, TypeError, ValueError):
            return None


def differences(first: Registered, repeat: DeployRequest, window_now: float | None) -> list[str]:
    """The fields in which `repeat` asks for another deploy than its key registered (see
    the module's docstring), each named, with why for one left out; none for the same
    request. `window_now`: the repeat's environment's window in the configuration loaded
    now (None: not configured)."""
    shown = first.answer
    differ = [
        name for name in SHOWN_AS_GIVEN if name in shown and getattr(repeat, name) != shown[name]
    ]
    times = first.times()
    if times is None:
        return [*differ, "window", "deployed_at"]
    deployed, length, registered_at = times
    slack = SAME_INSTANT_S if first.window is not None else 0.0015
    if repeat.window is not None:
        if abs(repeat.window - length) >= slack:
            differ.append("window")
    elif window_now is None:
        differ.append(f"window (left out, and {repeat.environment} is not configured now)")
    elif abs(window_now - length) >= slack:
        differ.append(
            f"window (left out: {repeat.environment}'s window is {format_duration(window_now)}"
            f" now, and the key's deploy is watched for {format_duration(length)})"
        )
    if repeat.deployed_at is None:
        if registered_at is None or deployed != registered_at:
            differ.append(
                f"deployed_at (left out: the moment of registration, and the key's deploy"
                f" was registered deployed at {rfc3339(deployed)})"
            )
    else:
        given = repeat.deployed_at.timestamp()
        if registered_at is not None and 0 < given - registered_at <= CLOCK_SKEW_S:
            given = registered_at  # taken as the moment of registration, as it was then
        if abs(given - deployed) >= slack:
            differ.append("deployed_at")
    return differ
