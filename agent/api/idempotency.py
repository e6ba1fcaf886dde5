"""Which registrations are the same request, for `Idempotency-Key` (contract §2).

Pure: no I/O. A request is hashed as what it means: the validated `DeployRequest`, so
two bodies equal in meaning are one request however written (key order, spacing, a
`null` or a field left out, `Z` or `+00:00` or another offset for the same instant,
`600`, `600.0`, `"10m"` or `"600s"` for one window), and a body that differs in meaning
is another. The versions before hashed the JSON document as sent (the one before that
with its nulls): a 409 for `2026-11-26T14:00:00+00:00` after `…Z`. A key they stored is
still compared with each spelling of the document they could have hashed, so its
repeat replays after an upgrade.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import datetime
from typing import Any

from agent.api.models import DeployRequest

LEFT_OUT: dict[str, tuple[Any, ...]] = {
    name: (None, {}) if name == "labels" else (None,)
    for name, field in DeployRequest.model_fields.items()
    if not field.is_required()
}
"""Optional fields, and the values that mean them left out (besides leaving them out)."""


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


def _meaning(value: Any) -> Any:
    if isinstance(value, datetime):  # aware UTC (`parse_rfc3339`), to the microsecond
        return value.isoformat()
    return value


def request_hash(request: DeployRequest) -> str:
    """What is stored with a key: the hash of what the request means, every field with
    its validated value (a field left out as its default)."""
    meaning = {name: _meaning(value) for name, value in request.model_dump().items()}
    return "v3:" + canonical_hash(meaning)


def same_request_hashes(document: Any) -> frozenset[str]:
    """Every hash a key stored by the versions before may hold for this document: each
    way of spelling a left-out field (out, null, `{}` for labels) hashed as written. At
    most 48 spellings, computed only for a repeated key whose meaning differs."""
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
