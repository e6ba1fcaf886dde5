"""A window's stand-ins (`WindowWatch.stand_ins`: its rounds that stand in for the background
runs it paused, kept until its end for the next deploy's baseline) are kept compact.

An hour of them at the default `background_interval` (30 s) is 120 runs a check; as lists
of numbers (a dict of two lists of 10 probes each) they held 104 KB a window, a fifth of
the traced growth of a shortened `bench/footprint.py` run (40 windows at 1 s, 300 s with
`POSTFLIGHT_TRACEMALLOC`). Kept as their JSON text, they read back as the same numbers.

Measured in a fresh interpreter: traced memory counts every thread's allocations, and in a
long-lived xdist worker a loop an earlier test left running in a thread allocates (and
logs, into the running test's capture) meanwhile: 115,074 bytes in a full run, where the
stand-ins hold 35,361."""

from __future__ import annotations

import gc
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any

import numpy as np

from agent.metrics import Metrics
from agent.settings import EnvironmentSettings
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.lifecycle import WindowWatch
from agent.windows.probing import summarize
from alerting.notifier import Notifier
from checks.base import CheckResult, Sample
from common.redaction import Redactor
from tests.alerting.test_window_alerts import services, window
from tests.fresh_interpreter import in_a_fresh_interpreter

RUNS = 120
PROBES = 10


def stand_ins_of_an_hour(directory: str) -> dict[str, Any]:
    """An hour of a window's stand-ins (`RUNS` rounds of `PROBES` probes) made in this
    process: the memory they hold (traced), and what they read back as beside what the
    rounds were, JSON-able for the test that runs this in a fresh interpreter."""
    metrics = Metrics()
    env = EnvironmentSettings.model_validate(
        {
            "base_url": "http://127.0.0.1:9",
            "interval": "1s",
            "checks": [{"name": "health", "type": "http", "path": "/health"}],
            "rules": [{"name": "errors", "source": "checks", "metric": "error_rate", "max": 0.05}],
        }
    )
    store = SqliteStore(Path(directory) / "w.db")
    s = services(
        store,
        WindowAlerts(store, Notifier([], timeout=1.0, redact=Redactor(), metrics=metrics)),
        metrics,
    )
    s.owed_runs = lambda environment, since: ["health"]  # each round stands in for a run
    watch = WindowWatch(window(), env, types.SimpleNamespace(env=env), s)  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    rounds = []
    for _ in range(RUNS):
        oks = (rng.uniform(size=PROBES) > 0.01).tolist()
        latencies = rng.uniform(0.001, 0.02, PROBES).tolist()
        rounds.append(
            [
                CheckResult(
                    "health", "http", ok, (Sample("health", ok=ok, latency_s=lat),), "m", lat
                )
                for ok, lat in zip(oks, latencies, strict=True)
            ]
        )
    now = time.time()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k, results in enumerate(rounds):
            watch._stand_in(results, now + 30.0 * k)
        watch.new_stand_ins = []
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    kept = watch._kept_stand_ins()
    return {
        "count": len(watch.stand_ins),
        "held": held,
        "summaries": [run.summary for run in kept],
        "rounds": [summarize([s for r in results for s in r.samples]) for results in rounds],
        "at": [run.at for run in kept],
        "now": now,
    }


HOUR = """
import json, sys
from tests.test_stand_in_memory import stand_ins_of_an_hour
print(json.dumps(stand_ins_of_an_hour(sys.argv[1])))
"""


def test_an_hours_stand_ins_are_kept_compact_and_read_back_alike(tmp_path: Path) -> None:
    taken = in_a_fresh_interpreter(HOUR, str(tmp_path))
    assert taken["count"] == RUNS
    assert taken["held"] < 60_000, taken["held"]  # 109,007 as lists of numbers (the old way)
    assert taken["summaries"] == taken["rounds"]
    assert taken["at"] == [taken["now"] + 30.0 * k for k in range(RUNS)]
