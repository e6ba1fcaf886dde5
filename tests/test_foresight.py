"""Registration warnings for provider rules: read from the baseline the environment's latest
window stored (no provider call at registration), said like a checks rule's."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest

from agent.analysis.judge import Judge
from agent.analysis.observe import observe
from agent.analysis.types import Observation
from agent.records import DeployWindow
from agent.settings_file import load_settings, load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.evidence import observation_to_dict
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import (
    background_baseline,
    baseline_runs,
    policy_of,
    registration_warnings,
)
from agent.windows.probing import background_burst, background_every
from checks.registry import build_check
from common.samples import Sample
from tests.config.test_validate_config import MINIMAL, with_load_check

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "postflight.example.yaml"

CONFIG = (
    MINIMAL.replace(
        "environments:",
        "providers:\n  sentry: {base_url: 'http://127.0.0.1:9', org: acme, token: t0k3n}\n"
        "environments:",
    )
    .replace("    rollback:\n", "    baseline: {sentry: {project: web}}\n    rollback:\n")
    .replace(
        "        max: 0.05\n",
        "        max: 0.05\n"
        "      - {name: sentry-errors, source: sentry, metric: error_rate, max_increase: 2%}\n",
    )
)


def window(id_: str, at: float, baseline: dict[str, Observation] | None) -> DeployWindow:
    return DeployWindow(
        id=id_,
        environment="production",
        version="v1",
        previous_version=None,
        commit=None,
        labels={},
        state="passed",
        deployed_at=at,
        ends_at=at + 600,
        created_at=at,
        baseline=None
        if baseline is None
        else {k: observation_to_dict(v) for k, v in baseline.items()},
    )


async def test_a_provider_rule_below_what_it_can_detect_is_warned_at_registration(
    store: SqliteStore,
) -> None:
    env = load_settings_text(CONFIG).environments["production"]
    now = 1_800_000_000.0
    assert await registration_warnings(store, env, "production", now, now + 600) == []
    # the latest window's Sentry baseline: 1% errors of 2,000 transactions an hour
    sentry = Observation(0.01, count=20, total=2000, periods=60)
    await store.create_window(window("dep_1", now - 7200, {"sentry-errors": sentry}), None)
    said = await registration_warnings(store, env, "production", now, now + 600)
    assert len(said) == 1, said
    assert said[0].startswith("rule sentry-errors: its max_increase bound is tighter than"), said


async def test_a_provider_rule_that_can_see_its_bound_is_not_warned(store: SqliteStore) -> None:
    env = load_settings_text(CONFIG.replace("max_increase: 2%", "max_increase: 500%"))
    now = 1_800_000_000.0
    sentry = Observation(0.01, count=2000, total=200_000, periods=60)  # 100x the traffic
    await store.create_window(window("dep_1", now - 7200, {"sentry-errors": sentry}), None)
    production = env.environments["production"]
    assert await registration_warnings(store, production, "production", now, now + 600) == []


async def test_a_rule_over_every_check_is_sized_at_a_rounds_traffic(store: SqliteStore) -> None:
    """A round runs every check at once (10 health probes and 200 load requests), while each
    background run is one check: sized by the pooled baseline's samples per run (19), an
    `error_rate max 0.05` over every check was said to see only 0.093 or more; at a round's
    traffic (210) it sees its bound. A rule on the health check alone stays at its 10."""
    text = (
        with_load_check("duration: 10s")
        .replace("rate: 5/s", "rate: 20/s")
        .replace("window: 10m", "window: 15m\n    lookback: 1h")
        .replace(
            "        max: 0.05\n",
            "        max: 0.05\n"
            "      - {name: health-errors, source: checks, check: api-health,"
            " metric: error_rate, max: 0.02}\n",
        )
    )
    env = load_settings_text(text).environments["production"]
    prints = check_fingerprints(env)
    now = 1_800_000_000.0
    for run in range(120):  # a run every 30 s for the lookback, 1 in 100 probes failing
        ok = [0 if run % 10 == 0 and i == 0 else 1 for i in range(10)]
        summary = {"ok": ok, "latency": [0.03] * 10}
        at = now - 3600 + run * 30
        await store.add_probe_summary("production", "api-health", at, summary, prints["api-health"])
    for run in range(6):  # the load check six times per lookback
        summary = {"ok": [0, 0] + [1] * 198, "latency": [0.08] * 200}
        at = now - 3590 + run * 600
        await store.add_probe_summary("production", "feed", at, summary, prints["feed"])
    said = await registration_warnings(store, env, "production", now, now + 900)
    assert [s.split(":")[0] for s in said] == ["rule health-errors"], said


@pytest.mark.parametrize(
    ("window", "warned", "late", "errors_said"),
    [
        (None, [], 0.0, ""),
        (300.0, [], 0.0, ""),
        (180.0, ["rule probe-errors"], 0.0, "error_rate 9.73% or more"),
        # registered 12 minutes into its 15: the 3 minutes that run (`next_slot`), as above;
        # it was told the whole window's 30 rounds, and no warning
        (None, ["rule probe-errors"], 720.0, "error_rate 9.73% or more"),
    ],
)
async def test_the_example_configurations_checks_rules_see_their_bounds(
    store: SqliteStore,
    example_env: dict[str, str],
    window: float | None,
    warned: list[str],
    late: float,
    errors_said: str,
) -> None:
    """Issue 10's point 5, on the defaults a user gets: after one `lookback` of background
    runs as the prober makes them (`background_every`, `background_burst`) against a healthy
    service (0.5% errors, health ~40 ms, feed ~80 ms), every checks rule of the example's
    production environment can detect its own bound, and show it holds, by the window's end:
    no warning; a 5-minute window too, since the default of 40 probes a round and the look
    at the window's end that absolute bounds have (before, at 10 probes a round, it warned
    both). A 3-minute window gives `probe-errors` (max 5%) six rounds of 320 samples (40
    health probes, the load check's 200 and the login scenario's 2 steps 40 times), which
    catch an error rate of about 9.7%, near twice its bound: warned; and `health-latency`
    (p95 max 300ms) 240 latencies, where passing on evidence takes about 126 none past the
    bound (the binomial sequence, `stats.binomial_cs_end`; it was warned, at about 280 on
    the normal-mixture one)."""
    settings = load_settings(EXAMPLE)
    env = settings.environments["production"]
    prints = check_fingerprints(env)
    rnd = random.Random(7)
    now = 1_800_000_000.0
    runs = 0
    for config in env.checks:
        check = build_check(config)
        every = background_every(check, env)
        if every is None:
            continue  # smoke scenarios run only in windows
        per_run = background_burst(check, env)
        if check.once_per_round:  # a load run is its rate x duration requests
            per_run *= round(config.rate * config.duration)  # type: ignore[attr-defined]
        median = 0.08 if check.once_per_round else 0.04
        for k in range(int(env.lookback // every)):
            ok = [0 if rnd.random() < 0.005 else 1 for _ in range(per_run)]
            latency = [round(median * math.exp(rnd.gauss(0, 0.3)), 6) for _ in range(per_run)]
            at = now - env.lookback + k * every + 1
            await store.add_probe_summary(
                "production", config.name, at, {"ok": ok, "latency": latency}, prints[config.name]
            )
            runs += 1
    assert runs == 120 + 6  # health every 30 s, the load check six times, for the hour
    checks_only = env.model_copy(update={"rules": [r for r in env.rules if r.source == "checks"]})
    assert len(checks_only.rules) == 3
    ends = now + (env.window if window is None else window)
    # as the API asks (`routes._foreseen`), registered `late` after `deployed_at` (`now`)
    said = await registration_warnings(store, checks_only, "production", now, ends, now=now + late)
    assert [s.split(":")[0] for s in said] == warned, said
    if warned:
        errors = said[0]
        assert "(320 samples a round)" in errors, errors  # the round's, scenario included
        assert errors_said in errors, errors  # twice its bound of 0.05, or more
    if len(warned) > 1:
        latency_said = said[1]
        assert "cannot pass on evidence by the window's end" in latency_said
        assert "it needs about 280 samples (7 rounds of this traffic)" in latency_said, said


@pytest.mark.parametrize(("per_hour", "warned"), [(25_000, False), (15_000, True)])
async def test_the_example_sentry_rule_sees_its_bound_from_about_six_transactions_a_second(
    store: SqliteStore, example_env: dict[str, str], per_hour: int, warned: bool
) -> None:
    """The README's figure: the example's `sentry-errors` (`max_increase: 100%`, a 15-minute
    window of 30 s rounds, confidence 0.99) sees its bound at a 1% baseline from about
    22,000 transactions an hour (6 a second); below, registration says it cannot."""
    env = load_settings(EXAMPLE).environments["production"]
    sentry_only = env.model_copy(update={"rules": [r for r in env.rules if r.source == "sentry"]})
    now = 1_800_000_000.0
    baseline = Observation(0.01, count=per_hour // 100, total=per_hour, periods=60)
    await store.create_window(window("dep_1", now - 7200, {"sentry-errors": baseline}), None)
    said = await registration_warnings(store, sentry_only, "production", now, now + env.window)
    assert bool(said) is warned, said


SMOKE = """\
      - name: login-flow
        type: smoke
        steps:
          - {name: login, method: POST, path: /login, expect: {status: 200}}
          - {name: me, method: GET, path: /me, expect: {status: 200}}
"""


async def test_registration_and_the_windows_progress_say_the_same_can_detect(
    store: SqliteStore,
) -> None:
    """A rule over every check, one of them a smoke scenario (never run between windows):
    registration sized a round at the background runs' traffic alone (5 health probes)
    and warned `error_rate 0.0931 or more`, while the window's own round (5 probes and 5
    runs of the scenario's 2 steps, 15 samples) had its `progress`, and the log at its
    first round, say `error_rate 0.0516 or more` of the same rule (on a daemon: 5 and 10
    a round, 0.147 and 0.0999). Registration now counts the scenario's samples as a
    round runs them, and says the same figure the window does."""
    text = (
        MINIMAL.replace("        path: /health\n", "        path: /health\n" + SMOKE)
        .replace("    interval: 30s\n", "    interval: 30s\n    probes_per_round: 5\n")
        .replace("        max: 0.05\n", "        max: 0.01\n")
    )
    env = load_settings_text(text).environments["production"]
    prints = check_fingerprints(env)
    now = 1_800_000_000.0
    for run in range(120):  # the health check every 30 s for the lookback, all ok
        summary = {"ok": [1] * 5, "latency": [0.03] * 5}
        at = now - 3600 + run * 30
        await store.add_probe_summary("production", "api-health", at, summary, prints["api-health"])
    ends = now + env.window
    (said,) = await registration_warnings(store, env, "production", now, ends)
    registered = re.search(r"\(([\d.]+) samples a round\): (error_rate [\d.]+% or more)", said)
    assert registered is not None, said

    # the window as the daemon opens it: the same background runs pooled as its baseline,
    # and a round of every check (5 health probes, 5 scenario runs of 2 steps)
    rule = env.rules[0].to_rule()
    periods = (await baseline_runs(store, "production", env, now - env.lookback, now)).periods
    baseline = background_baseline(rule, periods, env)
    horizon = math.ceil(env.window / env.interval)
    judge = Judge([rule], {rule.name: baseline}, policy_of(env), horizon=horizon)
    round_ = [Sample("api-health", True, 0.03)] * 5 + [Sample("login-flow", True, 0.05)] * 10
    state = judge.advance(judge.start(), {rule.name: observe(rule, round_, env.interval)})
    (progress,) = judge.verdict(state, final=False).rules
    detectable = progress.evidence["detectable"]
    assert detectable["text"] == f"can detect {registered[2]} by the window's end", (
        said,
        detectable,
    )
    assert float(registered[1]) == len(round_)


async def test_a_relative_bound_over_a_negative_provider_baseline_is_warned_at_registration(
    store: SqliteStore,
) -> None:
    """A Prometheus delta's `max_increase` over the latest window's baseline of -1: the
    limit is the baseline itself, judged by the threshold streak, and registration says so."""
    text = CONFIG.replace(
        "providers:\n", "providers:\n  prometheus: {url: 'http://127.0.0.1:9'}\n"
    ).replace(
        "      - {name: sentry-errors",
        "      - {name: drift, source: prometheus, query: 'deriv(queue[5m])',"
        " max_increase: 50%}\n      - {name: sentry-errors",
    )
    env = load_settings_text(text).environments["production"]
    now = 1_800_000_000.0
    await store.create_window(window("dep_1", now - 7200, {"drift": Observation(-1.0)}), None)
    said = await registration_warnings(store, env, "production", now, now + 600)
    assert [s for s in said if s.startswith("rule drift: max_increase 50% over a baseline of -1")]
    assert not [s for s in said if s.startswith("rule sentry-errors")], said


@pytest.mark.parametrize(("load_runs", "warned"), [(1, ["rule feed-p95"]), (2, [])])
async def test_a_young_baseline_is_said_as_such_where_its_rule_cannot_see_its_bound(
    store: SqliteStore, example_env: dict[str, str], load_runs: int, warned: list[str]
) -> None:
    """An agent started minutes ago has one load run of the example's `feed-latency` (its
    runs are 10 minutes apart): `feed-p95` (`max_increase: 50%`) can then catch only +143%
    or more, and was warned of at every registration of its first 10 minutes, as if the
    rule could never see its bound; with the second run (400 requests) it does. The
    warning now says the lookback holds 1 of the 6 runs a full one holds, so more come."""
    env = load_settings(EXAMPLE).environments["production"]
    prints = check_fingerprints(env)
    rnd = random.Random(7)
    now = 1_800_000_000.0
    for k in range(20):  # health every 30 s for the agent's first 10 minutes
        latency = [round(0.04 * math.exp(rnd.gauss(0, 0.3)), 6) for _ in range(10)]
        summary = {"ok": [1] * 10, "latency": latency}
        at = now - 600 + k * 30
        await store.add_probe_summary("production", "api-health", at, summary, prints["api-health"])
    for k in range(load_runs):
        latency = [round(0.08 * math.exp(rnd.gauss(0, 0.3)), 6) for _ in range(200)]
        at = now - 590 + k * 300
        summary = {"ok": [1] * 200, "latency": latency}
        await store.add_probe_summary(
            "production", "feed-latency", at, summary, prints["feed-latency"]
        )
    checks_only = env.model_copy(update={"rules": [r for r in env.rules if r.source == "checks"]})
    said = await registration_warnings(store, checks_only, "production", now, now + env.window)
    assert [s.split(":")[0] for s in said] == warned, said
    if warned:
        assert said[0].endswith(
            "; the lookback holds 1 of the 6 background runs of feed-latency a full one"
            " holds (the agent or the check is newer than the lookback, or runs were left"
            " out): it sees more as they come"
        ), said


@pytest.mark.parametrize("probes", [10, 40])
async def test_a_heavier_latency_tail_is_warned_after_a_full_lookback(
    store: SqliteStore, example_env: dict[str, str], probes: int
) -> None:
    """The README's heavier tail: latencies of a 5 ms median, lognormal spread 1.6 (p95
    about 70 ms, 0.5% past 300 ms), a full lookback of them (120 health runs of `probes`,
    six load runs of 200): at 10 probes a round `health-latency` (p95 max 300ms) can only
    catch a p95 of about 700 ms, and `feed-p95` (+50%) about +110%: both warned, honestly
    (the judge's figures, not the baseline's size: it is full); at the default 40,
    `health-latency` sees its bound, `feed-p95` (its load check's traffic) is still warned."""
    env = load_settings(EXAMPLE).environments["production"]
    env = env.model_copy(update={"probes_per_round": probes})
    prints = check_fingerprints(env)
    rnd = random.Random(7)
    now = 1_800_000_000.0
    for name, every, size in (("api-health", 30, env.probes_per_round), ("feed-latency", 600, 200)):
        for k in range(3600 // every):
            latency = [round(0.005 * math.exp(rnd.gauss(0, 1.6)), 6) for _ in range(size)]
            summary = {"ok": [1] * size, "latency": latency}
            at = now - 3600 + k * every + 1
            await store.add_probe_summary("production", name, at, summary, prints[name])
    checks_only = env.model_copy(update={"rules": [r for r in env.rules if r.source == "checks"]})
    said = await registration_warnings(store, checks_only, "production", now, now + env.window)
    if probes == 40:
        assert [s.split(":")[0] for s in said] == ["rule feed-p95"], said
        said = ["", *said]
    else:
        assert [s.split(":")[0] for s in said] == ["rule health-latency", "rule feed-p95"], said
        figure = re.search(r"latency_p95 (\d+)ms or more$", said[0].partition("; and")[0])
        assert figure is not None and 500 <= int(figure[1]) <= 900, said
        assert figure[1] == "614", said  # the README's figure, at 10 probes
    increase = re.search(r"latency_p95 \+(\d+)% or more$", said[-1].partition("; and")[0])
    assert increase is not None and 90 <= int(increase[1]) <= 130, said
    if probes == 40:
        assert increase[1] == "108", said  # the README's figure, at the default 40
    assert "background runs" not in " ".join(said), said  # a full lookback: not young


async def test_a_check_without_a_run_in_the_lookback_yet_counts_at_a_rounds_traffic(
    store: SqliteStore, example_env: dict[str, str]
) -> None:
    """The example's `feed-latency` load check runs between windows every 10 minutes (six a
    lookback): a deploy registered within minutes of the agent's start has health runs in
    its lookback and no load run yet. In a 5-minute window, registration sized
    `probe-errors` (every check) at the health probes and the scenario alone, 120 samples
    a round, and warned `error_rate 0.0918 or more`, near twice its `max 0.05` over a 1%
    baseline, while every round of the window runs the load check's 200 requests too (320
    samples: 0.0744, as the window's `progress` says). A check the rule reads with no run
    in the lookback counts as a round runs it."""
    env = load_settings(EXAMPLE).environments["production"]
    checks_only = env.model_copy(update={"rules": [r for r in env.rules if r.source == "checks"]})
    prints = check_fingerprints(env)
    rnd = random.Random(7)
    now = 1_800_000_000.0
    for k in range(10):  # the agent started 5 minutes ago: health runs only, 1% failing
        ok = [0 if k in (1, 3, 6, 8) and i == 0 else 1 for i in range(env.probes_per_round)]
        latency = [round(0.04 * math.exp(rnd.gauss(0, 0.3)), 6) for _ in ok]
        summary = {"ok": ok, "latency": latency}
        at = now - 300 + k * 30 + 1
        await store.add_probe_summary("production", "api-health", at, summary, prints["api-health"])
    said = await registration_warnings(store, checks_only, "production", now, now + 300)
    assert said and not [s for s in said if s.startswith("rule probe-errors")], said


@pytest.mark.parametrize("runs", [16, 120])
async def test_an_absolute_bound_too_tight_is_not_said_to_see_more_as_runs_come(
    store: SqliteStore, runs: int
) -> None:
    """A new user's `probe-errors` (`max: 0.05`) in a 5-minute window of 40 probes a round,
    registered 8 minutes after the agent's start (16 of the lookback's 120 background runs
    of 1% errors): warned it can detect only 0.116, and told "the lookback holds 16 of the
    120 background runs … it sees more as they come", where a full lookback's 120 runs give
    the same figure: its bound is absolute, the window's own probes limit it. Said of a
    relative bound only (`test_a_young_baseline_is_said_as_such_…`)."""
    text = MINIMAL.replace("window: 10m", "window: 5m\n    background_interval: 30s")
    env = load_settings_text(text).environments["production"]
    prints = check_fingerprints(env)
    rnd = random.Random(3)
    now = 1_800_000_000.0
    for k in range(runs):
        ok = [0 if rnd.random() < 0.01 else 1 for _ in range(env.probes_per_round)]
        summary = {"ok": ok, "latency": [0.05] * len(ok)}
        at = now - 30 * runs + k * 30 + 1
        await store.add_probe_summary("production", "api-health", at, summary, prints["api-health"])
    said = await registration_warnings(store, env, "production", now, now + 300)
    assert said == [
        "rule probe-errors: its max bound is tighter than the smallest change it can detect"
        " by the window's end at the baseline's traffic (40 samples a round): error_rate"
        " 11.6% or more"
    ], said


@pytest.mark.parametrize(("window", "said"), [("30s", "1 round is"), ("1m", "2 rounds are")])
async def test_a_window_too_short_for_a_latency_bounds_tests_is_said_so_at_registration(
    store: SqliteStore, window: str, said: str
) -> None:
    """A p95 `max_increase: 10%` in a window of one or two 30 s rounds, 40 probes a round
    over a full lookback of health runs: its rank and exceedance tests gain at most a 3.5th
    of their threshold a round (so that a slow minute or two cannot fail a good release),
    so they cannot fail in fewer than 4 rounds, and registration says so, and what would
    help. Failed before: one round was read as a window of unknown length, and the warning
    said only that it could not pass on evidence, as if it could see its bound; two said
    "too little data by then", which sent users to more probes. Two rounds are enough for
    its rounds' ranks among the 120 runs (`latency_period_ranks`), whose figure it says."""
    rule = "      - {name: p95, source: checks, metric: latency_p95, max_increase: 10%}\n"
    text = MINIMAL.replace("window: 10m", f"window: {window}").replace(
        "        max: 0.05\n", "        max: 0.05\n" + rule
    )
    env = load_settings_text(text).environments["production"]
    env = env.model_copy(update={"rules": [r for r in env.rules if r.name == "p95"]})
    prints = check_fingerprints(env)
    rnd = random.Random(5)
    now = 1_800_000_000.0
    for k in range(120):
        latency = [round(0.08 * math.exp(rnd.gauss(0, 0.6)), 6) for _ in range(40)]
        summary = {"ok": [1] * 40, "latency": latency}
        at = now - 3600 + k * 30 + 1
        await store.add_probe_summary("production", "api-health", at, summary, prints["api-health"])
    warned = await registration_warnings(store, env, "production", now, now + env.window)
    assert [w.split(":")[0] for w in warned] == ["rule p95"], warned
    if window == "1m":  # two rounds above every one of the 120 runs fail it
        figure = r"latency_p95 \+\d+% or more, by its rounds' ranks among the baseline's periods;"
        assert re.search(rf"can detect by the window's end .*: {figure}", warned[0]), warned
        return
    assert (
        f"no regression of any size four times in five (the window's {said} too few for its"
        " tests from the deploy to fail: they need at least 4 rounds, so that a slow minute"
        " or two cannot fail a good release; a longer `window` or a shorter `interval` gives"
        " them the rounds" in warned[0]
    ), warned
