"""A release whose window ended inconclusive stays live, and the next baseline reads its
runs: a relative rule whose estimate that window put past its bound leaves them out when
`KEPT_RUNS_LEFT` other runs remain (the regression never became its reference), else
pools them; the registration says which.

Before: pooled and unsaid, so a release twice as slow that its window could not show
past `max_increase: 50%` became the reference, and the next one as slow passed (live
trial, seed 1 at 20 probes: t02, t10, t22)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agent.records import DeployWindow
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import (
    KEPT_RUNS_LEFT,
    background_baseline,
    baseline_runs,
    registration_warnings,
)
from tests.config.test_validate_config import MINIMAL
from tests.rollback.support import make_window

RELATIVE = MINIMAL.replace(
    "        max: 0.05\n",
    "        max: 0.05\n"
    "      - {name: p95, source: checks, metric: latency_p95, max_increase: 50%}\n",
)
T0 = 1_800_000_000.0
"""The slow release's deploy; its window (5 min) ended inconclusive, and the next deploy
comes at `NEXT`."""
NEXT = T0 + 600.0


def env() -> Any:
    return load_settings_text(RELATIVE).environments["production"]


def slow_window(observed: float, baseline: float) -> DeployWindow:
    window = make_window(
        "dep_v2", version="v2", state="inconclusive", deployed_at=T0, ends_at=T0 + 300
    )
    window.verdict = {
        "outcome": "inconclusive",
        "reason": "p95: not shown within max_increase 50%",
        "rules": [
            {"name": "probe-errors", "outcome": "pass", "observed": 0.0, "baseline": 0.0},
            {
                "name": "p95",
                "outcome": "inconclusive",
                "observed": observed,
                "baseline": baseline,
                "threshold": "max_increase 50%",
            },
        ],
    }
    return window


async def runs(store: SqliteStore, since: float, until: float, latency: float) -> None:
    """Background runs of 10 probes every 30 s, each `latency` seconds."""
    environment = env()
    check = environment.checks[0].name
    fingerprint = check_fingerprints(environment)[check]
    at = since
    while at < until:
        summary = {"ok": [1] * 10, "latency": [latency] * 10}
        await store.add_probe_summary("production", check, at, summary, fingerprint)
        at += 30.0


async def p95_baseline(store: SqliteStore) -> tuple[float | None, int]:
    environment = env()
    background = await baseline_runs(store, "production", environment, NEXT - 3_600, NEXT)
    rule = next(r for r in environment.rules if r.name == "p95").to_rule()
    pooled = background.of("p95")
    return background_baseline(rule, pooled, environment).value, len(pooled)


async def test_a_release_past_its_bound_is_left_out_of_that_rules_baseline(
    store: SqliteStore,
) -> None:
    """v1 at 50 ms for 50 minutes, v2 at 100 ms from T0 (its window's p95 +96%, not shown):
    p95's next baseline is v1's alone, 50 ms, where it pooled v2's 20 runs (100 ms)."""
    await runs(store, NEXT - 3_600, T0, 0.05)
    await runs(store, T0, NEXT, 0.10)
    await store.create_window(slow_window(observed=0.098, baseline=0.05))
    value, pooled = await p95_baseline(store)
    assert value == pytest.approx(0.05) and pooled == 100, (value, pooled)
    said = await registration_warnings(store, env(), "production", NEXT, NEXT + 300)
    assert said[0] == (
        "baseline: 20 background runs of the baseline probed v2 (dep_v2), whose window ended"
        " inconclusive (p95: latency_p95 not shown within max_increase 50%, +96% against its"
        " baseline, past its bound): left out of the baseline of rule p95"
    )


async def test_a_release_past_its_bound_with_too_few_others_is_kept_and_said(
    store: SqliteStore,
) -> None:
    """Past its bound with fewer than `KEPT_RUNS_LEFT` other runs in the lookback: pooled
    (a baseline of the few others could pass nothing), said with why."""
    others = KEPT_RUNS_LEFT - 1
    await runs(store, T0 - 30 * others, T0, 0.05)
    await runs(store, T0, NEXT, 0.10)
    await store.create_window(slow_window(observed=0.098, baseline=0.05))
    value, pooled = await p95_baseline(store)
    assert value == pytest.approx(0.10) and pooled == others + 20, (value, pooled)
    said = await registration_warnings(store, env(), "production", NEXT, NEXT + 300)
    assert said[0] == (
        "baseline: 20 background runs of the baseline probed v2 (dep_v2), whose window ended"
        " inconclusive (p95: latency_p95 not shown within max_increase 50%, +96% against"
        f" its baseline, past its bound): kept in the baseline of rule p95, whose lookback"
        f" holds fewer than {KEPT_RUNS_LEFT} other runs"
    )


async def test_a_release_within_its_bound_only_unproven_is_pooled_unsaid(
    store: SqliteStore,
) -> None:
    """v2's window put p95 at +30% (within the bound, not shown for want of probes, as most
    A/A windows at few probes end): its runs are v2's live reference, pooled, and nothing
    is said (before: a warning on 8 of 24 A/A second registrations at 20 probes)."""
    await runs(store, NEXT - 3_600, T0, 0.05)
    await runs(store, T0, NEXT, 0.10)
    await store.create_window(slow_window(observed=0.065, baseline=0.05))
    value, pooled = await p95_baseline(store)
    assert pooled == 120 and value is not None and value > 0.05
    said = await registration_warnings(store, env(), "production", NEXT, NEXT + 300)
    assert not [s for s in said if "ended inconclusive" in s], said
    background = await baseline_runs(store, "production", env(), NEXT - 3_600, NEXT)
    assert background.kept == [] and background.by_rule == {}


def test_the_readme_says_how_many_other_runs_a_leave_out_needs() -> None:
    """The README's baseline paragraph gives `KEPT_RUNS_LEFT` as a figure."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    said = re.search(r"leaves them\s+out of its own baseline when the lookback holds (\d+)", readme)
    assert said is not None
    assert int(said.group(1)) == KEPT_RUNS_LEFT


async def test_a_canary_compares_with_its_stable_side_and_is_not_told(store: SqliteStore) -> None:
    """With `baseline_url`, the stable side probed beside the canary is its relative
    rules' baseline: what the lookback's runs probed is not said."""
    await runs(store, NEXT - 3_600, T0, 0.05)
    await runs(store, T0, NEXT, 0.10)
    await store.create_window(slow_window(observed=0.098, baseline=0.05))
    text = RELATIVE.replace("    rules:\n", "    baseline_url: http://127.0.0.1:10\n    rules:\n")
    canary = load_settings_text(text).environments["production"]
    said = await registration_warnings(store, canary, "production", NEXT, NEXT + 300)
    assert not [s for s in said if "ended inconclusive" in s], said
