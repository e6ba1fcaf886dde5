"""Registration's "cannot pass on evidence" in the daemon's form (background runs stored as
the prober stores them, read back through `registration_warnings`): a background whose
errors fill whole runs is said to leave the window inconclusive, as the judge then leaves
it (its pass side's floor takes the burstiness the runs show)."""

from __future__ import annotations

import math
import random

import pytest

from agent.settings_file import load_settings
from agent.store.sqlite import SqliteStore
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import registration_warnings
from agent.windows.probing import background_burst, background_every
from checks.registry import build_check
from tests.test_foresight import EXAMPLE


@pytest.mark.parametrize(("bursty", "warned"), [(False, []), (True, ["rule probe-errors"])])
async def test_a_background_failing_whole_runs_is_said_to_leave_the_window_inconclusive(
    store: SqliteStore, example_env: dict[str, str], bursty: bool, warned: list[str]
) -> None:
    """The example's production checks over an hour of background runs at 1% errors: one
    by one, no warning; in whole runs (1% of runs failing every probe), `probe-errors`
    (`max: 0.05`) is said to be unable to pass by the window's end (before, its reach took
    the binomial floor and registration said nothing)."""
    settings = load_settings(EXAMPLE)
    env = settings.environments["production"]
    prints = check_fingerprints(env)
    rnd = random.Random(11)
    now = 1_800_000_000.0
    for config in env.checks:
        check = build_check(config)
        every = background_every(check, env)
        if every is None:
            continue
        per_run = background_burst(check, env)
        if check.once_per_round:
            per_run *= round(config.rate * config.duration)  # type: ignore[attr-defined]
        for k in range(int(env.lookback // every)):
            if bursty:
                ok = [0 if k % 60 == 30 else 1] * per_run
            else:
                ok = [0 if rnd.random() < 0.01 else 1 for _ in range(per_run)]
            latency = [round(0.04 * math.exp(rnd.gauss(0, 0.3)), 6) for _ in range(per_run)]
            at = now - env.lookback + k * every + 1
            await store.add_probe_summary(
                "production", config.name, at, {"ok": ok, "latency": latency}, prints[config.name]
            )
    errors_only = env.model_copy(
        update={"rules": [r for r in env.rules if r.name == "probe-errors"]}
    )
    said = await registration_warnings(store, errors_only, "production", now, now + env.window)
    assert [s.split(":")[0] for s in said] == warned, said
    if warned:
        assert "cannot pass on evidence by the window's end" in said[0], said
