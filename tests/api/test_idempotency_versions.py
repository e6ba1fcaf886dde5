"""`Idempotency-Key` across versions on one store, as a rolling upgrade runs them (two
versions at once behind one load balancer, on one PostgreSQL): a key stored by either
side is read by the other. The versions before are pinned here by their comparison, as
they shipped it (session 41: agent/api/idempotency.py at 54d0eec4; session 42: at
b2173f8c, with its routes' `_same_request`), so a change of the stored format that an
older replica cannot read fails here."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import datetime
from typing import Any

import pytest

from agent.api.models import DeployRequest
from agent.store.sqlite import SqliteStore
from tests.api.harness import AUTH
from tests.api.test_deploys import repeated_under_a_hash
from tests.app_client import AppClient
from tests.store.peek import rows

FULL_REQUEST = {
    "environment": "production",
    "version": "v2.4.1",
    "previous_version": "v2.4.0",
    "commit": "9fceb02",
    "window": "10m",
    "deployed_at": "2026-11-26T14:00:00Z",
    "labels": {"pipeline": "run-1234"},
}
BARE = {"environment": "production", "version": "v2.4.1"}

# --- session 41's comparison (54d0eec4), verbatim but for the names ---------------------

_LEFT_OUT: dict[str, tuple[Any, ...]] = {
    "previous_version": (None,),
    "commit": (None,),
    "window": (None,),
    "deployed_at": (None,),
    "labels": (None, {}),
}
_OUT = object()


def _canonical_hash(document: Any) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _without_left_out(document: Any) -> Any:
    if not isinstance(document, dict):
        return document
    return {
        name: value
        for name, value in document.items()
        if not (name in _LEFT_OUT and any(value == same for same in _LEFT_OUT[name]))
    }


def _same_request_hashes(document: Any) -> frozenset[str]:
    canonical = _without_left_out(document)
    if not isinstance(canonical, dict):
        return frozenset({_canonical_hash(canonical)})
    absent = [name for name in _LEFT_OUT if name not in canonical]
    choices = [tuple((name, value) for value in (_OUT, *_LEFT_OUT[name])) for name in absent]
    return frozenset(
        _canonical_hash({**canonical, **{n: v for n, v in spelling if v is not _OUT}})
        for spelling in itertools.product(*choices)
    )


def session_41_hash(document: Any) -> str:
    return _canonical_hash(_without_left_out(document))


def session_41_replays(stored_hash: str, document: Any) -> bool:
    """Its `_replay`: `stored.request_hash not in same_request_hashes(document)` is 409."""
    return stored_hash in _same_request_hashes(document)


# --- session 42's comparison (b2173f8c) --------------------------------------------------


def session_42_hash(document: Any) -> str:
    """Its `request_hash(DeployRequest)`: the validated request, `v3:`."""
    request = DeployRequest.model_validate(document)
    meaning = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in request.model_dump().items()
    }
    return "v3:" + _canonical_hash(meaning)


def session_42_replays(stored_hash: str, document: Any) -> bool:
    """Its `_same_request(stored, document, body)`."""
    if stored_hash == session_42_hash(document):
        return True
    return stored_hash in _same_request_hashes(document)


def test_the_pinned_comparisons_are_the_versions_before() -> None:
    """A check of the pins: each version replays its own key's repeat and refuses another
    request, and session 41 did not read session 42's keys (the 409 of a rolling upgrade
    the stored format now avoids)."""
    for stored, replays in (
        (session_41_hash, session_41_replays),
        (session_42_hash, session_42_replays),
    ):
        assert replays(stored(FULL_REQUEST), FULL_REQUEST)
        assert replays(stored(FULL_REQUEST), {**FULL_REQUEST, "labels": {"pipeline": "run-1234"}})
        assert not replays(stored(FULL_REQUEST), {**FULL_REQUEST, "version": "v2.4.2"})
    assert not session_41_replays(session_42_hash(FULL_REQUEST), FULL_REQUEST)


async def _stored_hash(store: SqliteStore, key: str) -> str:
    found = await rows(store, "SELECT request_hash FROM idempotency WHERE key = ?", key)
    return str(found[0][0])


@pytest.mark.parametrize(
    ("first", "repeat"),
    [
        (FULL_REQUEST, FULL_REQUEST),
        (FULL_REQUEST, dict(reversed(list(FULL_REQUEST.items())))),
        (BARE, {**BARE, "labels": None, "commit": None}),
        ({**BARE, "labels": {}}, BARE),
        ({**BARE, "window": None}, {**BARE, "labels": {}}),
    ],
    ids=["same", "key-order", "nulls", "empty-labels", "null-window"],
)
async def test_a_key_stored_now_is_replayed_by_either_version_before(
    client: AppClient, store: SqliteStore, first: dict[str, Any], repeat: dict[str, Any]
) -> None:
    """During a rolling upgrade a pipeline's retry can reach a replica of the version
    before: the key this version stored is that version's request, so it replays the
    repeat (session 41 answered 409 to every key session 42 stored: its `v3:` hash of
    the validated request was none it compared with). And this version replays it too."""
    headers = {**AUTH, "Idempotency-Key": "k-rolling"}
    created = await client.post("/v1/deploys", json=first, headers=headers)
    assert created.status == 201, await created.text()
    stored = await _stored_hash(store, "k-rolling")
    assert session_41_replays(stored, repeat)
    assert session_42_replays(stored, repeat)
    assert not session_41_replays(stored, {**repeat, "version": "v9"})
    assert not session_42_replays(stored, {**repeat, "version": "v9"})
    again = await client.post("/v1/deploys", json=repeat, headers=headers)
    assert again.status == 200, await again.text()
    assert await again.json() == await created.json()


@pytest.mark.parametrize(
    ("stored_by", "repeat", "status"),
    [
        (session_41_hash, FULL_REQUEST, 200),
        (
            session_41_hash,
            {**FULL_REQUEST, "labels": {"pipeline": "run-1234"}, "commit": "9fceb02"},
            200,
        ),
        (session_41_hash, {**FULL_REQUEST, "deployed_at": "2026-11-26T14:00:00+00:00"}, 200),
        (session_41_hash, {**FULL_REQUEST, "window": None}, 200),
        (session_41_hash, {**FULL_REQUEST, "version": "v2.4.2"}, 409),
        (session_42_hash, FULL_REQUEST, 200),
        (session_42_hash, {**FULL_REQUEST, "window": 600, "labels": {"pipeline": "run-1234"}}, 200),
        (session_42_hash, {**FULL_REQUEST, "deployed_at": "2026-11-26T15:00:00+01:00"}, 200),
        (session_42_hash, {**FULL_REQUEST, "window": None}, 200),
        (session_42_hash, {**FULL_REQUEST, "window": "11m"}, 409),
    ],
)
async def test_a_key_stored_by_a_version_before_is_replayed_now(
    client: AppClient,
    store: SqliteStore,
    stored_by: Any,
    repeat: dict[str, Any],
    status: int,
) -> None:
    """The other way round: a key either version before stored replays its repeat here,
    one equal in meaning too, and refuses another request."""
    await repeated_under_a_hash(
        client, store, FULL_REQUEST, stored_by(FULL_REQUEST), repeat, status
    )
