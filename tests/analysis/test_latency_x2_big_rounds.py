"""A release twice as slow as its baseline, 6 rounds of 200 probes (1,200 samples), p95
`max_increase: 50%` (test_one_p95_everywhere's window with rounds of 200), judged round by
round through `observe` and `Judge.advance`, each component's e-value printed per round
against its bar (`pytest -s`).

Against the baseline the daemon keeps for such a check (a load check of 200 requests a run
runs six times per `lookback`: six periods of 200, `foresight.background_baseline`), the
rank test fails it in its third round. Against one run of 200 (what a load check's
baseline holds in the first sixth of the agent's first lookback; test_one_p95_everywhere's
set-up) the window ends inconclusive: that baseline has no periods, so the rank test has
only its linear bets, each capped at `stats.MAX_BET` (at most 0.52 nats a round), and the
release's own samples join the conformal reference, so a round's mean placement falls
from 0.95 to 0.6 of its bar as 200 baseline samples are outnumbered (gains 0.44, 0.28,
0.20, 0.16, 0.14, 0.16 nats); the exceedance test's one bet a round (D = n without
periods) fills the baseline's 10-sample tail in the first round; and the end's look reads
the falling excess across rounds as burstiness (its inflation), p 0.008 where 0.001 is
needed. There are no latency period ranks without two periods, and no ladder for latency.
Two and three runs of 200 fail only at the window's end (p 0.00038, 2.2e-05). At two runs
the sub-Gaussian bets' design effect, rho at its Student upper limit on one degree of
freedom, was near n, and the stake aimed at the window's end over-bet (every such bet lost,
-1.2 nats in the first round): under two effective samples a round they are now the linear
bets (`rank_bets.sub_gaussian_design`), the rank test's e-value 1.67 -> 6.69; three runs
keep their sub-Gaussian bets (8.71). Against six runs the rank test fails in its fourth
round: `rank_bets.episode_cap` keeps three rounds short of the threshold. A known
shortfall, pinned at its measured figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.analysis.judge import Judge
from agent.analysis.observe import merge, observe
from agent.analysis.types import Observation, Policy, Rule
from common.samples import Sample

RULE = Rule(name="latency", source="checks", metric="latency_p95", max_increase=0.5)
ROUNDS, PER_ROUND = 6, 200


def _lognormal(rng: np.random.Generator, median: float, n: int) -> list[Sample]:
    values = rng.lognormal(math.log(median), 0.15, n)
    return [Sample("api", True, round(float(v), 6)) for v in values]


def _judged(runs: int) -> tuple[str, dict[str, tuple[float, float, int | None]]]:
    """The window's decision and each component's (e-value, needed, failed at round),
    the e-values printed round by round."""
    rng = np.random.default_rng(9)
    base: Observation
    if runs == 1:
        base = observe(RULE, _lognormal(rng, 0.08, 200), 300.0)
    else:
        base = merge([observe(RULE, _lognormal(rng, 0.08, 200), 30.0) for _ in range(runs)])
    judge = Judge([RULE], {"latency": base}, Policy(), horizon=ROUNDS)
    state = judge.start()
    for index in range(ROUNDS):
        obs = observe(RULE, _lognormal(rng, 0.16, PER_ROUND), 30.0)
        state = judge.advance(state, {"latency": obs}, final=index == ROUNDS - 1)
        tests = state["rules"]["latency"]["seq"]["tests"]
        print(runs, index, {k: round(math.exp(t["peak"]), 2) for k, t in tests.items()})
    verdict = judge.verdict(state, final=True)
    found = {}
    for comp in verdict.rules[0].evidence["components"]:
        found[comp["test"].split(" on ")[-1]] = (
            comp["likelihood_ratio"],
            comp["likelihood_ratio_needed"],
            comp["failed_at_round"],
        )
        print(runs, comp)
    return verdict.decision, found


def test_against_the_daemons_six_runs_the_rank_test_fails_it_in_its_fourth_round() -> None:
    """The fourth: `rank_bets.episode_cap` keeps any three rounds short of the threshold."""
    decision, found = _judged(6)
    assert decision == "fail"
    e, needed, at = found["each round's mean placement (Mann-Whitney)"]
    assert at == 4 and e > 40 * needed, found


@pytest.mark.parametrize(
    ("runs", "decision", "rank_e"),
    [(1, "inconclusive", 3.9), (2, "fail", 6.6), (3, "fail", 8.6)],
)
def test_against_fewer_runs_the_e_processes_miss_it(
    runs: int, decision: str, rank_e: float
) -> None:
    """Pinned at the measured shortfall (module docstring): one run, inconclusive, the rank
    test's e-value 3.97 and the exceedance test's 9.73 of the 357 and 263 needed; two and
    three runs, failed by the end's look only, the rank test's e-value 6.69 and 8.71 (two
    runs: 1.67 while its sub-Gaussian bets over-bet one effective sample a round)."""
    got, found = _judged(runs)
    assert got == decision
    rank = found["each round's mean placement (Mann-Whitney)"]
    assert rank_e < rank[0] < rank[1] / 20, found
    if runs == 1:
        assert rank[2] is None and found["each round's samples past the bound"][2] is None
    else:
        assert rank[2] == ROUNDS, found  # the look at the window's end
