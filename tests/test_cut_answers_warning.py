"""A window's probe waits its own timeout, as a background run does: registration no
longer warns of background answers slower than half a sub-second round.

`bench/small_windows.py` (1 s background runs, then a 250 ms-round window, the check's
`timeout: 2s`): a release that changed nothing, a service answering in 50 ms with a long
tail (lognormal, sigma 1: p95 about 260 ms, no errors served), was rolled back in 6 of 6
windows as `probe-errors: error_rate 0.16-0.26 > max 0.05`: each answer slower than 125 ms
(half the round) was a failed probe, `no response within 125ms`, while its background runs,
which wait the whole timeout, had none. Registration's `warnings` said so (`check
api-health: 17.8% of its background runs' answers (427 of 2,400) took longer than 125ms,
…`). A probe still in flight at its round's end is now carried to the round it lands in
(`agent.windows.carried`, `tests/e2e/test_tail_past_the_round_e2e.py`): such an answer is no
failure, and the warning would say one.
"""

from __future__ import annotations

import random

from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import registration_warnings
from tests.config.test_validate_config import MINIMAL

NOW = 1_800_000_000.0
SUB_SECOND = MINIMAL.replace(
    "    window: 10m\n    interval: 30s\n",
    "    window: 10s\n    interval: 250ms\n    background_interval: 1s\n",
).replace("        path: /health\n", "        path: /health\n        timeout: 2s\n")


async def background(store: SqliteStore, text: str, latency: float, sigma: float) -> None:
    """60 background runs of 40 probes in the last minute, all answered: lognormal times."""
    env = load_settings_text(text).environments["production"]
    prints = check_fingerprints(env)
    rng = random.Random(1)
    for run in range(60):
        times = [latency * rng.lognormvariate(0.0, sigma) for _ in range(40)]
        summary = {"ok": [1] * 40, "latency": times}
        at = NOW - 60 + run
        await store.add_probe_summary("production", "api-health", at, summary, prints["api-health"])


def cut(said: list[str]) -> list[str]:
    return [w for w in said if w.startswith("check api-health:")]


async def test_a_tail_slower_than_half_the_round_is_not_warned(store: SqliteStore) -> None:
    await background(store, SUB_SECOND, 0.05, 1.0)
    env = load_settings_text(SUB_SECOND).environments["production"]
    said = await registration_warnings(store, env, "production", NOW, NOW + 10, now=NOW)
    assert cut(said) == [], said


async def test_a_fast_service_or_rounds_long_enough_are_not_warned(store: SqliteStore) -> None:
    await background(store, SUB_SECOND, 0.02, 0.3)
    env = load_settings_text(SUB_SECOND).environments["production"]
    assert cut(await registration_warnings(store, env, "production", NOW, NOW + 10, now=NOW)) == []
    thirty = SUB_SECOND.replace("interval: 250ms", "interval: 30s").replace("10s", "10m")
    await background(store, thirty, 0.05, 1.0)
    env = load_settings_text(thirty).environments["production"]
    assert cut(await registration_warnings(store, env, "production", NOW, NOW + 600, now=NOW)) == []
