"""Which registrations are the same request, for `Idempotency-Key` (contract §2).

Pure: no I/O. A request is hashed as its JSON document however it was spelled (key
order, spacing) and with the optional fields the README calls left out when null
(`labels: null`, as `labels: {}`, is no labels) left out. The version before hashed
the document as sent, nulls and all; a key it stored is still compared with each
spelling of the request it could have hashed, so its repeat replays after an upgrade.
"""

from __future__ import annotations

import hashlib
import itertools
import json
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


def request_hash(document: Any) -> str:
    """What is stored with a key: the hash of the request with its left-out fields out."""
    return canonical_hash(_without_left_out(document))


def same_request_hashes(document: Any) -> frozenset[str]:
    """Every hash a key stored for this request may hold: the version before's hash of
    each way of spelling a left-out field (out, null, `{}` for labels), which includes
    `request_hash` (all out). At most 48 spellings, computed only for a repeated key."""
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
