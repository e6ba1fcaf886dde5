"""A registration whose window is too short for the environment's `failure_limit`.

`bench/small_windows.py` registers windows as a pipeline does, `window` in the request:
`validate-config` and the start warn of a `threshold` `failure_limit` above the rounds of
the environment's configured window (`agent.windows.unjudged`), but a registration asking
for a shorter one (`"window": "2s"` of 1 s rounds at `failure_limit: 3`) was answered with
no warning, and its window could fail nothing: a deploy failing every probe ended
`inconclusive`, not rolled back. The registration's `warnings` now say so, for the window
it registered.
"""

from __future__ import annotations

from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.foresight import registration_warnings
from tests.config.test_validate_config import MINIMAL

THRESHOLD = MINIMAL.replace(
    "    window: 10m\n    interval: 30s\n", "    window: 10s\n    interval: 1s\n"
).replace("    rules:\n", "    analysis: {policy: threshold, failure_limit: 3}\n    rules:\n")
NOW = 1_800_000_000.0


async def test_a_window_registered_shorter_than_failure_limit_rounds_is_warned(
    store: SqliteStore,
) -> None:
    env = load_settings_text(THRESHOLD).environments["production"]
    said = await registration_warnings(store, env, "production", NOW, NOW + 2.0, now=NOW)
    assert [w for w in said if "failure_limit" in w] == [
        "failure_limit 3 is more than the 2 rounds of this window (2s of 1s rounds), and"
        " analysis.policy threshold fails a rule after 3 consecutive rounds past its bound,"
        " so this window cannot fail and nothing is rolled back: register a window of at"
        " least 3s, or lower failure_limit to at most 2"
    ], said


async def test_a_window_long_enough_for_failure_limit_is_not_warned(store: SqliteStore) -> None:
    env = load_settings_text(THRESHOLD).environments["production"]
    for ends in (3.0, 10.0):
        said = await registration_warnings(store, env, "production", NOW, NOW + ends, now=NOW)
        assert not [w for w in said if "failure_limit" in w], said


async def test_the_sequential_default_is_not_warned_of_failure_limit(store: SqliteStore) -> None:
    """Its `failure_limit` applies to a bare value's streak alone, which `probe-errors` is not."""
    env = load_settings_text(MINIMAL).environments["production"]
    said = await registration_warnings(store, env, "production", NOW, NOW + 30.0, now=NOW)
    assert not [w for w in said if "failure_limit" in w], said
