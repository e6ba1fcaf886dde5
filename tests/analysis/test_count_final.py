"""The two-sample count test's look at the window's end (`FINAL_SHARE`) and midpoint
(`MIDWAY_SHARE`): a test looked at once keeps its level when errors come in bursts (each
side's counts divided by the inflation measured across its own units), and finds what the
e-processes, which must hold at every round, leave short of their threshold."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from agent.analysis import stats
from agent.analysis.judge import Judge, judge
from agent.analysis.sequential import COUNT_TAIL_SHARE, BaselineData, SequentialRule
from agent.analysis.types import Observation, Policy, Rule

RULE = Rule("errors", "checks", "error_rate", max_increase=0.1)
ALPHA = 0.005
"""One rule's share of the default budget with two rules (confidence 0.99)."""
LEVEL = 0.05
"""The level the null's windows are tested at: large, so 3,000 windows measure it."""


def _final_p(
    rng: np.random.Generator, rps: float, rate: float, kappa: float, *, inflate: bool = True
) -> float:
    """One window at the null's edge (the new rate exactly 1.1 x the baseline's): a
    baseline of 1,800 s in 60 periods and a window of 900 rounds, every second's error
    probability Beta-distributed around its mean (concentration `kappa`: bursts), through
    the functions the judge calls (`SequentialRule._final_p`)."""
    totals = rng.poisson(rps, 1800)
    counts = rng.binomial(totals, rng.beta(rate * kappa, (1 - rate) * kappa, 1800))
    base = BaselineData(
        value=counts.sum() / max(totals.sum(), 1),
        count=float(counts.sum()),
        total=float(totals.sum()),
        periods=60,
        dispersion=stats.intra_period_correlation(
            counts.reshape(60, 30).sum(1), totals.reshape(60, 30).sum(1)
        )
        or 0.0,
    )
    new_rate = rate * 1.1
    n = rng.poisson(rps, 900)
    c = rng.binomial(n, rng.beta(new_rate * kappa, (1 - new_rate) * kappa, 900))
    sums = _window_sums(c, n)
    assert base.count is not None and base.total is not None
    new_infl, base_infl = SequentialRule._look_inflations(base, sums, LEVEL) if inflate else (1, 1)
    return stats.rate_ratio_greater(
        sums[1], sums[2], new_infl, base.count, base.total, base_infl, 1.1
    )


def _window_sums(counts: np.ndarray, totals: np.ndarray) -> list[float]:
    """The running sums the judge keeps (`stats.add_round_sums`, its rounds with requests)
    at a window's end, in one go: sums of whole numbers, so the very floats the fold makes
    (`test_the_window_sums_are_the_judges_running_sums`), at a tenth of its cost in 3,000
    windows of 900 rounds."""
    c, n = counts[totals > 0].astype(float), totals[totals > 0].astype(float)
    return [float(len(n)), c.sum(), n.sum(), (c * c).sum(), (c * n).sum(), (n * n).sum()]


def _periods_baseline(errors: np.ndarray, requests: np.ndarray) -> BaselineData:
    """A baseline of these periods' errors and requests, its periods kept (what
    `BaselineData.from_observation` makes of the watcher's merged baseline)."""
    return BaselineData(
        value=float(errors.sum() / requests.sum()),
        count=float(errors.sum()),
        total=float(requests.sum()),
        periods=len(requests),
        dispersion=stats.intra_period_correlation(errors, requests) or 0.0,
        period_counts=tuple(zip(errors.tolist(), requests.tolist(), strict=True)),
    )


def test_the_window_sums_are_the_judges_running_sums() -> None:
    rng = np.random.default_rng(20261201)
    n = rng.poisson(10, 900)
    c = rng.binomial(n, rng.beta(0.11, 9.89, 900))
    sums = [0.0] * stats.ROUND_SUMS
    for bad, size in zip(c.tolist(), n.tolist(), strict=True):
        if size:
            sums = stats.add_round_sums(sums, float(bad), float(size))
    assert _window_sums(c, n) == sums


@pytest.mark.parametrize(
    ("rps", "rate", "kappa"),
    [(100, 0.01, 10.0), (10, 0.01, 10.0), (100, 0.001, 100.0), (10, 0.01, 100.0)],
    ids=["100rps-bursty", "10rps-bursty", "100rps-rare", "10rps"],
)
def test_at_the_null_edge_the_test_looked_at_once_keeps_its_level(
    rps: float, rate: float, kappa: float
) -> None:
    """3,000 windows exactly at the tolerance: rejected at most at the level, give or take
    three standard errors."""
    rng = np.random.default_rng(20261201)
    windows = 3000
    rejected = sum(_final_p(rng, rps, rate, kappa) <= LEVEL for _ in range(windows))
    assert rejected / windows <= LEVEL + 3 * (LEVEL * (1 - LEVEL) / windows) ** 0.5


def test_bursts_read_as_independent_errors_would_fail_good_deploys() -> None:
    """The same bursty windows with the inflation left out reject far past the level: the
    inflation is what keeps it."""
    rng = np.random.default_rng(20261201)
    windows = 1000
    rejected = sum(_final_p(rng, 100, 0.01, 10.0, inflate=False) <= LEVEL for _ in range(windows))
    assert rejected / windows >= 4 * LEVEL


def _baseline(errors: int) -> BaselineData:
    return BaselineData(
        value=errors / 18000, count=float(errors), total=18000.0, periods=60, dispersion=0.0005
    )


def _window_rounds(errors: int) -> list[int]:
    """900 rounds of 10 requests with `errors` spread evenly."""
    return [int(c) for c in np.diff(np.floor(np.arange(901) * errors / 900))]


def test_a_regression_the_e_processes_miss_fails_at_the_windows_end() -> None:
    """Like the benchmark's misses of rare errors x5 at 10 req/s (a baseline of 21 errors
    in 18,000 requests, 31 in the window's 9,000): no e-process crossed by the last round,
    and the look at the window's end fails the rule there, once."""
    rule = SequentialRule(RULE, _baseline(21), "proportion", ALPHA, horizon=900)
    (comp,) = rule.components
    assert comp.alpha_final > 0
    state = rule.start()
    rounds = _window_rounds(31)
    for k, count in enumerate(rounds):
        rule.step(state, Observation(value=count / 10, count=count, total=10), k)
    assert rule.failed_at(state) == (None, None)
    rule.finish(state, len(rounds) - 1)
    assert rule.failed_at(state) == (899, comp)
    assert rule.failed_at_end(state, comp)
    assert state["tests"][comp.key]["final_p"] <= comp.alpha_final


def test_a_good_window_is_not_failed_at_its_end() -> None:
    """The same baseline and a window at the baseline's own rate: the look finds nothing."""
    rule = SequentialRule(RULE, _baseline(21), "proportion", ALPHA, horizon=900)
    state = rule.start()
    for k, count in enumerate(_window_rounds(10)):
        rule.step(state, Observation(value=count / 10, count=count, total=10), k)
    rule.finish(state, 899)
    (comp,) = rule.components
    assert rule.failed_at(state) == (None, None)
    assert state["tests"][comp.key]["final_p"] > 0.5


def test_the_judge_looks_only_at_the_last_round_and_says_so() -> None:
    """Through the judge: the same rounds fail only when the last one is the window's last
    (`final`), the verdict says it was the look at the window's end, with its p-value."""
    baseline = Observation(value=21 / 18000, count=21, total=18000, periods=60, dispersion=5e-4)
    rounds = [{"errors": Observation(value=c / 10, count=c, total=10)} for c in _window_rounds(31)]
    policy = Policy("sequential", confidence=0.995)
    not_yet = judge([RULE], {"errors": baseline}, rounds, policy, final=False, horizon=900)
    assert not_yet.decision == "continue"
    verdict = judge([RULE], {"errors": baseline}, rounds, policy, final=True, horizon=900)
    assert verdict.decision == "fail"
    # the README's words: `at the window's end after …: p-value …, at most … needed`
    assert re.search(
        r"at the window's end after [\d,]+ probes: p-value \S+, at most \S+ needed$", verdict.reason
    ), verdict.reason
    (rule_verdict,) = verdict.rules
    (component,) = rule_verdict.evidence["components"]
    assert component["final_p_value"] <= component["final_alpha"]
    assert component["failed_at_round"] == 900  # the last of 900 rounds
    # a relative bound's look is two-sample (it read "the count of bad events against the
    # bound", an absolute bound's words, once absolute bounds looked too)
    assert component["final_test"] == "the two-sample count test over the whole window"
    assert "the two-sample count test over the whole window gave" in rule_verdict.detail


def test_no_look_at_the_end_without_a_known_end_or_for_a_decrease() -> None:
    """A window of unknown length has no last round to look at; a decrease bound's bad
    events are the complement, which the ratio test does not cover."""
    unknown = SequentialRule(RULE, _baseline(21), "proportion", ALPHA, horizon=0)
    assert all(c.alpha_final == 0 for c in unknown.components)
    down = Rule("ok", "checks", "error_rate", max_increase=0.1, direction="decrease")
    decrease = SequentialRule(down, _baseline(21), "proportion", ALPHA, horizon=900)
    assert all(c.alpha_final == 0 for c in decrease.components)


def test_the_shares_stay_within_the_rules_budget() -> None:
    """The e-process from the deploy, the e-detector, the baseline's tail and the look at
    the end add up to the rule's share (the union bound)."""
    rule = SequentialRule(RULE, _baseline(21), "proportion", ALPHA, horizon=900)
    (comp,) = rule.components
    assert comp.alpha_midway > 0
    total = comp.alpha + comp.alpha_detector + comp.alpha_final + ALPHA * COUNT_TAIL_SHARE
    assert total + comp.alpha_midway == pytest.approx(ALPHA, rel=1e-12)


def test_a_restarted_judge_reads_the_look_from_the_stored_state() -> None:
    """The look's outcome is in the state: a judge compiled afresh after a restart reads
    the same failure from it."""
    baseline = {"errors": Observation(value=21 / 18000, count=21, total=18000, periods=60)}
    policy = Policy("sequential", confidence=0.995)
    first = Judge([RULE], baseline, policy, horizon=900)
    state = first.start()
    rounds = _window_rounds(31)
    for k, c in enumerate(rounds):
        obs = {"errors": Observation(value=c / 10, count=c, total=10)}
        state = first.advance(state, obs, final=k == len(rounds) - 1)
    again = Judge([RULE], baseline, policy, horizon=900)
    assert again.failed_round(state) == first.failed_round(state) == 899


def test_a_regression_plain_in_the_counts_fails_at_the_windows_midpoint() -> None:
    """The decision benchmark's errors x1.5 at 100 req/s at the daemon's 30 s rounds: 45
    errors in each round's 3,000 requests against a baseline of 1% in 60 periods. One bet a
    round gains at most log 2 nats, so by round 15 the e-process is short of its bar while
    the counts are plain; the look at the window's midpoint fails the rule there, and the
    verdict says so with its p-value. Failed before: `continue` at round 15 (the look at the
    end, round 30, was the first to fail it)."""
    baseline = Observation(
        value=0.01, count=1800, total=180_000, periods=60, dispersion=1e-4, seconds=1800.0
    )
    rounds = [{"errors": Observation(value=0.015, count=45, total=3000)}] * 15
    policy = Policy("sequential", confidence=0.99)
    before = judge([RULE], {"errors": baseline}, rounds[:14], policy, final=False, horizon=30)
    assert before.decision == "continue"
    verdict = judge([RULE], {"errors": baseline}, rounds, policy, final=False, horizon=30)
    assert verdict.decision == "fail", verdict.reason
    assert re.search(
        r"at the window's midpoint after 45,000 probes: p-value \S+, at most \S+ needed$",
        verdict.reason,
    ), verdict.reason
    (rule_verdict,) = verdict.rules
    assert "the two-sample count test over the window's first half gave" in rule_verdict.detail
    (component,) = [c for c in rule_verdict.evidence["components"] if c.get("failed_at_round")]
    assert component["failed_at_round"] == 15
    assert component["midway_p_value"] <= component["midway_alpha"]


def _looks_p(rule: SequentialRule, errors: np.ndarray, requests: np.ndarray) -> tuple[float, float]:
    """One window's p-values of the look at its midpoint (round 15 of 30) and at its end,
    each by the judge's own `_final_p` at the look's level, over this window's baseline
    (the first 60 periods of `errors` and `requests`; the window's 30 rounds follow)."""
    base_c, base_n, c, n = errors[:60], requests[:60], errors[60:], requests[60:]
    looked = copy.copy(rule)  # the judge's look over this window's baseline
    looked.baseline = _periods_baseline(base_c, base_n)
    (comp,) = [k for k in rule.components if k.alpha_midway]
    midway = {"fin": _window_sums(c[:15], n[:15])}
    end = {"fin": _window_sums(c, n)}
    return looked._final_p(comp, midway, comp.alpha_midway), looked._final_p(comp, end)


@pytest.mark.parametrize(
    ("rps", "rate", "spread", "kappa"),
    [
        (100, 0.01, "second", 100.0),
        (100, 0.01, "second", 10.0),
        (10, 0.01, "second", 10.0),
        (100, 0.001, "second", 100.0),
        (100, 0.01, "round", 400.0),
    ],
    ids=["100rps-boundary", "100rps-bursty", "10rps-bursty", "100rps-rare", "100rps-round-bursts"],
)
def test_at_the_null_edge_the_two_looks_together_keep_their_share(
    rps: float, rate: float, spread: str, kappa: float
) -> None:
    """2,000 windows exactly at the tolerance (the new rate 1.1 x the baseline's) at the
    daemon's 30 s rounds, 30 of them after a baseline of 60 periods of 30 s: the looks at
    the midpoint and at the end fail at most at the sum of their levels (the union bound
    `_two_sample` counts them in), give or take three standard errors, and each alone at
    its own. `spread` `second`: each second's error probability Beta-distributed around its
    mean (concentration `kappa`: the decision benchmark's bursts, its `boundary` and
    `bursty_aa`); `round`: each period's and round's (whole-round bursts, where a look over
    15 rounds leans on Student's correction most). The rule's share is large (0.25: looks
    at 0.013 and 0.05) so that 2,000 windows measure it. Measured: the boundary's looks
    failed 1.45% and 3.95% of windows, either 4.65%, against 1.29%, 5% and 6.29%; the other
    cases 3.45-4.2% either."""
    base = BaselineData(value=rate, count=rate * 180_000, total=180_000.0, periods=60)
    rule = SequentialRule(RULE, base, "proportion", 0.25, horizon=30)
    (comp,) = [c for c in rule.components if c.alpha_midway]
    rng = np.random.default_rng(20261206)
    windows, units = 2000, 30 if spread == "second" else 1
    means = np.array([rate] * 60 + [rate * 1.1] * 30)[None, :, None]
    requests = rng.poisson(rps, (windows, 90, 30))
    chance = rng.beta(means * kappa, (1 - means) * kappa, (windows, 90, units))
    errors = rng.binomial(requests, chance).sum(2)
    p = np.array([_looks_p(rule, e, n) for e, n in zip(errors, requests.sum(2), strict=True)])
    midway, end = p[:, 0] <= comp.alpha_midway, p[:, 1] <= comp.alpha_final

    def within(rejected: np.ndarray, level: float) -> None:
        bar = level + 3 * (level * (1 - level) / windows) ** 0.5
        assert rejected.mean() <= bar, (rejected.mean(), level)

    within(midway, comp.alpha_midway)
    within(end, comp.alpha_final)
    within(midway | end, comp.alpha_midway + comp.alpha_final)


def test_rare_errors_x5_at_10_rps_are_found_by_the_look_at_the_windows_end() -> None:
    """The decision benchmark's rare errors x5 at 10 req/s (0.1% errors, each second's
    chance Beta-distributed, concentration 100; 60 periods of 30 s, then 30 rounds at
    0.5%), at the judge's own share (0.005) and look (`_final_p`, level 0.001), over 400
    windows: the look alone fails 378. Failed before (369, 92%): each side's inflation was
    Student-corrected at its own degrees of freedom (the baseline's from its ~15 periods
    that hold errors, `measured_periods`), which pays the t deviate's excess twice; now once
    for their difference (`stats.welch_inflations`)."""
    rng = np.random.default_rng(20261206)
    windows = 400
    requests = rng.poisson(10, (windows, 90, 30))
    means = np.array([0.001] * 60 + [0.005] * 30)[None, :, None]
    errors = rng.binomial(requests, rng.beta(means * 100, (1 - means) * 100, requests.shape))
    found = 0
    for e, n in zip(errors.sum(2), requests.sum(2), strict=True):
        base = _periods_baseline(e[:60], n[:60])
        rule = SequentialRule(RULE, base, "proportion", ALPHA, horizon=30)
        comp = next((c for c in rule.components if c.alpha_final), None)
        if comp is not None:
            p = rule._final_p(comp, {"fin": _window_sums(e[60:], n[60:])})
            found += p <= comp.alpha_final
    print(f"found {found} of {windows}")
    assert found >= 376


@pytest.mark.parametrize(
    ("periods", "rps", "kappa"),
    [(10, 10, 20.0), (20, 10, 20.0), (10, 100, 5.0), (30, 3, 5.0)],
    ids=["10-periods-10rps", "20-periods-10rps", "10-periods-100rps", "30-periods-3rps"],
)
def test_a_short_bursty_baseline_keeps_the_looks_level(
    periods: int, rps: int, kappa: float
) -> None:
    """4,000 windows exactly at the tolerance after a short baseline whose errors burst for
    whole periods (each 30 s period's and round's error rate Beta-distributed, concentration
    `kappa`; 1% errors), where one side's inflation is read from few periods that hold
    errors: the look at the end (the judge's `_final_p`, level 0.02) fails at most at its
    level, give or take three standard errors. Measured: 1.58%, 0.98%, 1.00%, 0.38% (each
    side Student-corrected at its own degrees of freedom: 0.98%, 0.88%, 0.83%, 0.20%); at
    the judge's level 0.001, 40,000 windows of 20 periods at 10 req/s: 0.088% (0.048%)."""
    rng = np.random.default_rng([20261206, periods, rps])
    windows, level = 4000, 0.02
    means = np.array([0.01] * periods + [0.011] * 30)[None, :]
    requests = rng.poisson(rps * 30, (windows, periods + 30))
    chance = rng.beta(means * kappa, (1 - means) * kappa, requests.shape)
    errors = rng.binomial(requests, chance)
    failed = 0
    for e, n in zip(errors, requests, strict=True):
        be, bn = e[:periods], n[:periods]
        if not be.sum():
            continue
        base = _periods_baseline(be, bn)
        sums = _window_sums(e[periods:], n[periods:])
        new_infl, base_infl = SequentialRule._look_inflations(base, sums, level)
        p = stats.rate_ratio_greater(
            sums[1], sums[2], new_infl, base.count or 0.0, base.total or 0.0, base_infl, 1.1
        )
        failed += p <= level
    print(f"failed {failed} of {windows}")
    assert failed / windows <= level + 3 * (level * (1 - level) / windows) ** 0.5
