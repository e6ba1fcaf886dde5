"""Registration's advice on a sub-millisecond baseline, in the daemon's form (background
runs stored as the prober stores them, read back through `registration_warnings`): its
figures in three significant digits, where they read `0ms` (a 0.19 ms nginx baseline in
bench/footprint.py: "share of samples above 0ms (baseline 0ms +20%)")."""

from __future__ import annotations

import math
import random
import re

from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import registration_warnings
from tests.test_foresight import EXAMPLE


async def test_a_sub_millisecond_baseline_is_said_in_its_own_digits(
    store: SqliteStore, example_env: dict[str, str]
) -> None:
    """The example's `api-health` at ~0.19 ms over an hour of background runs (10 probes
    every 30 s), its `health-latency` rule made `max_increase: 20%`: 1,200 samples cannot
    show a release like them within 20% in the 15-minute window; the warning's bound, its
    baseline, its cutoff and the least p95 read as figures whose arithmetic adds up."""
    text = EXAMPLE.read_text().replace("max: 300ms           #", "max_increase: 20%  #")
    env = load_settings_text(text).environments["production"]
    prints = check_fingerprints(env)
    rnd = random.Random(7)
    now = 1_800_000_000.0
    for k in range(int(env.lookback // 30)):
        latency = [round(0.00019 * math.exp(rnd.gauss(0, 0.3)), 7) for _ in range(10)]
        summary = {"ok": [1] * 10, "latency": latency}
        at = now - env.lookback + k * 30 + 1
        await store.add_probe_summary("production", "api-health", at, summary, prints["api-health"])
    only = env.model_copy(update={"rules": [r for r in env.rules if r.name == "health-latency"]})
    said = await registration_warnings(store, only, "production", now, now + env.window)
    assert len(said) == 1 and "cannot pass on evidence" in said[0], said
    assert not re.search(r"(?<![\d.])0ms", said[0]), said  # no figure rounded to nothing
    found = re.search(
        r"latency_p95 <= ([\d.]+)ms \(baseline ([\d.]+)ms \+20%\), shown with room for the"
        r" baseline's own error: share of samples above ([\d.]+)ms \(\+20% of ([\d.]+)ms,"
        r" the least the baseline's p95 may be on its 1200 samples\)",
        said[0],
    )
    assert found, said
    bound, p95, cutoff, least = (float(found.group(i)) for i in (1, 2, 3, 4))
    assert 0.2 < p95 < 0.5 and least < p95  # lognormal(0.19 ms, 0.3)'s p95: ~0.31 ms
    # three significant digits at most
    assert all(len(found.group(i).removeprefix("0.")) <= 3 for i in (1, 2, 3, 4))
    assert abs(bound - 1.2 * p95) <= 0.002 and abs(cutoff - 1.2 * least) <= 0.002
