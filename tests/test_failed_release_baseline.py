"""A baseline never pools the background runs of a release that failed its window: those
runs probed the regression, and a hotfix compared against them looks normal."""

from __future__ import annotations

from typing import Any

import pytest

from agent.records import DeployWindow, RollbackIntent, RollbackState, WindowState
from agent.rollback.contract import skipped_intent
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import (
    LEFT_OUT_NAMED,
    ROLLBACK_SETTLE_S,
    FailedRelease,
    background_baseline,
    baseline_runs,
    left_out_words,
    registration_warnings,
)
from tests.config.test_validate_config import MINIMAL
from tests.rollback.support import make_window

RELATIVE = MINIMAL.replace(
    "        max: 0.05\n",
    "        max: 0.05\n"
    "      - {name: errors-up, source: checks, metric: error_rate, max_increase: 100%}\n",
)
T0 = 1_800_000_000.0
"""The bad release's deploy; the lookback (1 h) ends at `NEXT`, the hotfix's."""
NEXT = T0 + 1_800.0


def env() -> Any:
    return load_settings_text(RELATIVE).environments["production"]


def deploy(id_: str, version: str, at: float, state: WindowState) -> DeployWindow:
    return make_window(
        id_, version=version, state=state, deployed_at=at, ends_at=at + 300, created_at=at
    )


async def probe_every_30s(store: SqliteStore, since: float, until: float, errors: int) -> None:
    """Background runs of 10 probes every 30 s, `errors` of each run failing."""
    environment = env()
    check = environment.checks[0].name
    fingerprint = check_fingerprints(environment)[check]
    at = since
    while at < until:
        ok = [0] * errors + [1] * (10 - errors)
        summary = {"ok": ok, "latency": [0.03] * 10}
        await store.add_probe_summary("production", check, at, summary, fingerprint)
        at += 30.0


async def error_rate(store: SqliteStore) -> tuple[float | None, int]:
    environment = env()
    runs = await baseline_runs(store, "production", environment, NEXT - 3_600, NEXT)
    rule = next(r for r in environment.rules if r.name == "errors-up").to_rule()
    return background_baseline(rule, runs.periods, environment).value, len(runs.periods)


@pytest.mark.parametrize("rolled_back", [True, False], ids=["rolled-back", "dry-run"])
async def test_the_failed_releases_runs_are_left_out_of_the_next_baseline(
    store: SqliteStore, rolled_back: bool
) -> None:
    """v2 failed at T0 (its window busy for 5 min, no background runs). Rolled back: the
    webhook's 2xx at T0 + 300 s, and the environment ran v2 for `ROLLBACK_SETTLE_S` more.
    Dry run (or a rollback that never got through): v2 ran until the hotfix. Old code pooled
    those runs (30% errors each) into the hotfix's baseline: an error rate of 0.028 after
    the rollback, 0.14 on a dry run, where v1's was 0.0016."""
    delivered = T0 + 300.0
    landed = delivered + ROLLBACK_SETTLE_S if rolled_back else NEXT
    await probe_every_30s(store, NEXT - 3_600, T0, errors=0)  # v1
    await probe_every_30s(store, T0 - 15, T0 - 14, errors=1)  # one error in v1's hour
    await probe_every_30s(store, delivered, landed, errors=3)  # v2 still live
    await probe_every_30s(store, landed, NEXT, errors=0)  # v1 again (rolled back)
    await store.create_window(deploy("dep_v1", "v1", T0 - 7_200, "passed"))
    await store.create_window(deploy("dep_v2", "v2", T0, "failed"))
    if rolled_back:
        intent = RollbackIntent("dep_v2", "pending", "{}", requested_at=T0 + 60)
        assert await store.add_rollback(intent)
        intent.state, intent.finished_at = "delivered", delivered
        assert await store.settle_rollback(intent)
    else:
        assert await store.add_rollback(skipped_intent("dep_v2", "{}", T0 + 60))
    value, runs = await error_rate(store)
    clean = (T0 - (NEXT - 3_600)) / 30 + (0 if not rolled_back else (NEXT - landed) / 30)
    assert runs == clean + 1
    assert value == pytest.approx(1 / (10 * runs))
    said = await registration_warnings(store, env(), "production", NEXT, NEXT + 300)
    left = round((landed - delivered) / 30)
    fate = "which was rolled back" if rolled_back else "whose rollback was not sent"
    fate += "" if rolled_back else " (rollback.dry_run)"
    assert said[0] == (
        f"baseline: {left} background runs left out of the baseline: they probed v2 (dep_v2),"
        f" whose window failed and {fate}"
    )


async def test_a_release_that_passed_or_a_later_deploy_ends_the_span(store: SqliteStore) -> None:
    """Only failed releases are left out, and only until the next deploy: the hotfix's own
    background runs (after its window passed) are the next baseline's."""
    await probe_every_30s(store, NEXT - 3_600, NEXT, errors=0)
    await store.create_window(deploy("dep_v2", "v2", T0, "failed"))
    await store.create_window(deploy("dep_v3", "v3", T0 + 600, "passed"))
    value, runs = await error_rate(store)
    assert value == 0.0
    # v2's span is [T0, T0 + 600): 20 runs of the 120 left out
    assert runs == 100


async def test_a_cancelled_deploy_ends_the_span_and_a_manual_rollback_is_said_as_one(
    store: SqliteStore,
) -> None:
    """Review: a window cancelled after going live was left off the timeline (cancelling
    stops the watch; the deploy happened), so v2's span ran on through v3's runs; and a
    passed window rolled back on request was said to have failed."""
    await probe_every_30s(store, NEXT - 3_600, NEXT, errors=0)
    await store.create_window(deploy("dep_v2", "v2", T0, "failed"))
    await store.create_window(deploy("dep_v3", "v3", T0 + 600, "watching"))
    await store.cancel_window("dep_v3", T0 + 700)
    assert (await error_rate(store))[1] == 100  # v2's [T0, T0 + 600) only: 20 runs
    passed = deploy("dep_v4", "v4", NEXT - 300, "passed")
    passed.verdict = {"outcome": "pass", "reason": "all rules passed"}
    await store.create_window(passed)
    assert await store.set_state("dep_v4", "rolled_back", "passed")  # on request
    said = await registration_warnings(store, env(), "production", NEXT, NEXT + 300)
    assert said[0] == (
        "baseline: 20 background runs left out of the baseline: they probed v2 (dep_v2),"
        " whose window failed and for which no rollback was asked; 10 background runs left out"
        " of the baseline: they probed v4 (dep_v4), which was rolled back on request (its"
        " window: pass)"
    )


def test_one_run_left_out_is_said_in_the_singular() -> None:
    """A first run on the example config: one background run of a failed staging release
    was `1 background run left out of the baseline: they probed v2.4.1`."""
    release = FailedRelease("v2.4.1", "dep_v241", T0, T0 + 40, rolled_back=False)
    assert left_out_words([(release, 1)]) == (
        "1 background run left out of the baseline: it probed v2.4.1 (dep_v241),"
        " whose window failed and for which no rollback was asked"
    )


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ("pending", "whose rollback is still being tried"),
        ("failed", "whose rollback failed"),
        ("skipped", "whose rollback was not sent (rollback.dry_run)"),
        (None, "for which no rollback was asked"),
    ],
)
async def test_a_failed_releases_rollback_is_said_as_the_store_holds_it(
    store: SqliteStore, state: RollbackState | None, words: str
) -> None:
    """A failed window stays `failed` while its rollback is retried: it was said "was not
    rolled back" then, and when its rollback failed, as when none was asked
    (tests/e2e/test_failed_release_rollback_words_e2e.py drives the first two through
    the daemon)."""
    await probe_every_30s(store, T0 + 300, NEXT, errors=3)
    await store.create_window(deploy("dep_v2", "v2", T0, "failed"))
    if state is not None:
        intent = RollbackIntent("dep_v2", state, "{}", requested_at=T0 + 60)
        if state == "skipped":
            intent = skipped_intent("dep_v2", "{}", T0 + 60)
        assert await store.add_rollback(intent)
    said = await registration_warnings(store, env(), "production", NEXT, NEXT + 300)
    assert said[0] == (
        "baseline: 50 background runs left out of the baseline: they probed v2 (dep_v2),"
        f" whose window failed and {words}"
    )


def test_many_releases_left_out_are_named_up_to_a_few_then_counted() -> None:
    """A live sweep's register after 12 rollbacks in the lookback warned ~1,900 characters,
    one clause per release, in every registration: the first few are named, the rest
    counted with their runs."""
    releases = [
        (FailedRelease(f"v{n}", f"dep_v{n}", T0 + n, T0 + n + 1, rolled_back=False), 10)
        for n in range(12)
    ]
    said = left_out_words(releases)
    assert said.count("probed") == LEFT_OUT_NAMED
    assert said.endswith("; and 90 background runs of 9 more releases, left out alike")
    assert "v2 (dep_v2)" in said and "dep_v3" not in said
    assert len(said) < 600, len(said)
