"""`Idempotency-Key` under hypothesis, on a real API app and store: a request written
another way with the same meaning (key order, a null for a field left out, the instant
with another offset or fraction, the window in seconds or words, or left out where it is
the environment's) replays the first answer; one that means something else is a 409; a
random body under a used key is never a 5xx. Run derandomised with the suite's `ci`
profile (HYPOTHESIS_PROFILE=ci)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.api.models import CLOCK_SKEW_S
from tests.api.harness import AUTH
from tests.api.test_garbage import FUZZ, LiveApi, deploy_like, json_values, live_api

NOW = time.time()
EXAMPLES = 80
"""Two requests each; the shapes of writing a time and a window are few."""


def answer(api: LiveApi, body: Any, key: str) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        data = body if isinstance(body, str) else json.dumps(body)
        headers = {**AUTH, "Content-Type": "application/json", "Idempotency-Key": key}
        async with api.client.post("/v1/deploys", data=data, headers=headers) as response:
            return response.status, await response.json()

    return api.run(go())


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LiveApi]:
    with live_api(tmp_path) as running:
        yield running


text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=12)
instants = st.integers(min_value=-3_000_000, max_value=3_000_000).map(
    lambda ms: datetime.fromtimestamp(NOW, UTC).replace(microsecond=0) + timedelta(milliseconds=ms)
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m))
windows_s = st.one_of(st.just(600), st.integers(min_value=30, max_value=7200))
"""600 s is production's window: a repeat may leave it out, as the first may."""


def written(at: datetime, offset: timedelta, style: int) -> str:
    """`at` in RFC 3339, in the zone of `offset`: `Z`, `+00:00`, lower case, a fraction."""
    local = at.astimezone(timezone(offset))
    text = local.isoformat(timespec="milliseconds" if style % 2 else "auto")
    if offset == timedelta(0) and style % 3 == 0:
        text = text.replace("+00:00", "Z" if style % 4 else "z")
    return text if style % 5 else text.replace("T", "t")


def window_written(seconds: int, style: int) -> Any:
    if style % 4 == 0:
        return seconds
    if style % 4 == 1:
        return float(seconds)
    if style % 4 == 2 or seconds % 60:
        return f"{seconds}s"
    return f"{seconds // 60}m"


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """One request, and the same request written another way."""
    base: dict[str, Any] = {"environment": "production", "version": draw(text)}
    at, seconds = draw(instants), draw(windows_s)
    first = {
        **base,
        "deployed_at": written(at, draw(offsets), draw(st.integers(0, 59))),
        "window": window_written(seconds, draw(st.integers(0, 3))),
        "labels": draw(st.dictionaries(text, text, max_size=3)),
    }
    again = {
        **base,
        "deployed_at": written(at, draw(offsets), draw(st.integers(0, 59))),
        "window": window_written(seconds, draw(st.integers(0, 3))),
        "labels": first["labels"] or draw(st.sampled_from([None, {}])),
        "commit": None,
    }
    if seconds == 600:  # production's window: left out, null or given, in either
        first = _window_left_out(first, draw(st.integers(0, 2)))
        again = _window_left_out(again, draw(st.integers(0, 2)))
    if draw(st.booleans()):
        again = dict(reversed(list(again.items())))
    return first, again


def _window_left_out(request: dict[str, Any], how: int) -> dict[str, Any]:
    if how == 0:
        return {name: value for name, value in request.items() if name != "window"}
    return {**request, "window": None} if how == 1 else request


def test_a_request_written_another_way_replays_its_first_answer(api: LiveApi) -> None:
    @settings(FUZZ, max_examples=EXAMPLES)
    @given(pair=requests(), key=text)
    def check(pair: tuple[dict[str, Any], dict[str, Any]], key: str) -> None:
        first, again = pair
        key = f"same-{key}-{time.monotonic_ns()}"
        status, created = answer(api, first, key)
        assert status == 201, created
        status, replayed = answer(api, again, key)
        assert (status, replayed) == (200, created), (first, again, replayed)

    check()


def test_a_request_that_means_another_is_409(api: LiveApi) -> None:
    @settings(FUZZ, max_examples=EXAMPLES)
    @given(
        pair=requests(),
        change=st.sampled_from(["instant", "window", "version", "label"]),
        by=st.integers(min_value=1, max_value=10_000),
    )
    def check(pair: tuple[dict[str, Any], dict[str, Any]], change: str, by: int) -> None:
        first, again = pair
        key = f"other-{time.monotonic_ns()}"
        status, created = answer(api, first, key)
        assert status == 201, created
        if change == "instant":  # a millisecond or more later, in the same words
            at = datetime.fromisoformat(first["deployed_at"].upper().replace("Z", "+00:00"))
            # not both up to the clock skew ahead: each is registered as now, one request
            assume(not -1 < at.timestamp() - time.time() <= CLOCK_SKEW_S + 1)
            again["deployed_at"] = (at + timedelta(milliseconds=by)).isoformat()
        elif change == "window":
            again["window"] = 7200 + by  # the first is at most 7200 s
        elif change == "version":
            again["version"] = first["version"] + "x"
        else:
            again["labels"] = {**(first["labels"] or {}), "added": str(by)}
        status, refused = answer(api, again, key)
        assert status == 409, (first, again, refused)
        assert refused["type"].endswith("idempotency-key-reused")
        assert created["id"] in refused["detail"] and "use a new key" in refused["detail"]

    check()


def test_a_random_body_under_a_used_key_is_never_a_5xx(api: LiveApi) -> None:
    status, _ = answer(api, {"environment": "production", "version": "v1"}, "used")
    assert status == 201

    @settings(FUZZ, max_examples=EXAMPLES)
    @given(body=st.one_of(deploy_like, json_values))
    def check(body: Any) -> None:
        status, said = answer(api, body, "used")
        assert status in (200, 400, 404, 409, 422), (status, body, said)
        if status != 200:
            assert said["detail"], said

    check()
