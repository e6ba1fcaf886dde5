"""`Idempotency-Key` repeats on `postflight run` under hypothesis (contract §2), each
field of a registration kept (written another way, or left out where that means the
same: `window` where the environment gives it, an optional field as null) or changed: a
repeat that changes none replays the first answer (200, the same body), one that
changes any is a 409 problem+json naming each field changed, and none is a 5xx.
Derandomised with the suite's `ci` profile (HYPOTHESIS_PROFILE=ci)."""

from __future__ import annotations

import json
import re
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.test_garbage import FUZZ
from tests.e2e.conftest import TOKEN, environment
from tests.e2e.crash import free_port
from tests.e2e.test_replicas import Daemon, running

pytestmark = pytest.mark.e2e

EXAMPLES = 60
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
WINDOWS = {"production": 3600, "staging": 1800}
"""Each environment's configured window, in seconds."""


def post(daemon: Daemon, body: Any, key: str) -> tuple[int, str, Any]:
    request = urllib.request.Request(
        daemon.url + "/v1/deploys",
        data=json.dumps(body).encode(),
        method="POST",
        headers={**AUTH, "Idempotency-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get_content_type(), json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers.get_content_type(), json.loads(refused.read())


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("idempotency")
    target = f"http://127.0.0.1:{free_port()}"  # nothing listens: never probed healthy
    config = (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{tmp / 'postflight.db'}\n"
        "environments:\n"
        + textwrap.indent(
            "".join(
                environment(name, target, window=f"{s}s", interval="10s", background_interval="1h")
                for name, s in WINDOWS.items()
            ),
            "  ",
        )
    )
    with running(tmp, "idempotency", config) as started:
        yield started


text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=10)


def window_written(seconds: int, style: int) -> Any:
    """One window, in seconds or in words."""
    if style == 0:
        return seconds
    if style == 1:
        return float(seconds)
    return f"{seconds}s" if style == 2 or seconds % 60 else f"{seconds // 60}m"


def instant_written(at: datetime, minutes: int, style: int) -> str:
    """One instant, in the zone `minutes` east of UTC, with `Z` or not, a fraction or not."""
    local = at.astimezone(timezone(timedelta(minutes=minutes)))
    written = local.isoformat(timespec="milliseconds" if style % 2 else "seconds")
    return written.replace("+00:00", "Z") if minutes == 0 and style > 1 else written


@st.composite
def pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """A registration, its repeat, and the fields the repeat changed."""
    first: dict[str, Any] = {"environment": draw(st.sampled_from(sorted(WINDOWS)))}
    again: dict[str, Any] = {}
    changed: set[str] = set()

    def change(name: str) -> bool:
        if draw(st.integers(0, 5)) == 0:
            changed.add(name)
            return True
        return False

    again["environment"] = first["environment"]
    if change("environment"):
        again["environment"] = "staging" if first["environment"] == "production" else "production"
    first["version"] = again["version"] = draw(text)
    if change("version"):
        again["version"] = first["version"] + "x"
    for name in ("previous_version", "commit"):
        value = draw(st.none() | text)
        if value is not None or draw(st.booleans()):
            first[name] = value
        if value is not None or draw(st.booleans()):
            again[name] = value
        if change(name):
            again[name] = "other" if value is None else None
    labels = draw(st.dictionaries(text, text, max_size=3))
    first["labels"] = labels or draw(st.sampled_from([None, {}]))
    again["labels"] = labels or draw(st.sampled_from([None, {}, "out"]))
    if again["labels"] == "out":
        del again["labels"]
    if change("labels"):
        again["labels"] = {**labels, "added": "1"}

    # window: its environment's (given or left out), or another
    default = WINDOWS[first["environment"]]
    seconds = draw(st.sampled_from([default, default, 600, 2700]))
    if seconds != default or draw(st.booleans()):
        first["window"] = window_written(seconds, draw(st.integers(0, 3)))
    repeat_default = WINDOWS[again["environment"]]
    if seconds == repeat_default and draw(st.booleans()):
        again["window"] = draw(st.sampled_from([None, "out"]))
    else:
        again["window"] = window_written(seconds, draw(st.integers(0, 3)))
    if again["window"] == "out":
        del again["window"]
    if change("window"):
        again["window"] = seconds + 60
    # deployed_at: now (left out), or an instant before now
    if draw(st.booleans()):
        at = datetime.fromtimestamp(time.time(), UTC).replace(microsecond=0)
        at -= timedelta(seconds=draw(st.integers(60, 5400)))
        first["deployed_at"] = instant_written(
            at, draw(st.integers(-600, 600)), draw(st.integers(0, 3))
        )
        again["deployed_at"] = instant_written(
            at, draw(st.integers(-600, 600)), draw(st.integers(0, 3))
        )
        if change("deployed_at"):
            again["deployed_at"] = (at + timedelta(seconds=1)).isoformat()
    elif change("deployed_at"):
        again["deployed_at"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    return first, again, changed


def test_a_repeat_replays_unless_it_changed_a_field_and_then_names_it(daemon: Daemon) -> None:
    @settings(FUZZ, max_examples=EXAMPLES)
    @given(pair=pairs())
    def check(pair: tuple[dict[str, Any], dict[str, Any], set[str]]) -> None:
        first, again, changed = pair
        key = f"fuzz-{time.monotonic_ns()}"
        status, _, created = post(daemon, first, key)
        assert status == 201, (first, created)
        status, content_type, answer = post(daemon, again, key)
        if not changed:
            assert (status, answer) == (200, created), (first, again, answer)
            return
        assert status == 409, (first, again, changed, answer)
        assert content_type == "application/problem+json", answer
        assert answer["type"].endswith("idempotency-key-reused"), answer
        said = answer["detail"].split("this one differs in ")[1].split(". Send")[0]
        named = set(re.findall(r"(?:^|, )([a-z_]+)", said))
        assert changed <= named, (changed, first, again, answer["detail"])

    check()
