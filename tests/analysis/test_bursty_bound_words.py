"""A rate's bound on the pass side over a baseline whose errors came in bursts says why it
is wide: the baseline's measured burstiness divides each round's counts, so 19 errors of
1,200 probes (1.6%) read `error_rate upper bound 0.0559 vs max 0.05` and nothing said
why, in the verdict's detail and reason, and so in every alert, `status` and the page that
show them. A calm baseline's bound says nothing of bursts."""

from __future__ import annotations

import numpy as np

from agent.analysis.describe import BURSTS_WIDEN, BURSTS_WIDEN_BOTH
from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.sequential import BaselineData
from agent.analysis.types import Observation, Policy, Rule

ERRORS_MAX = Rule("probe-errors", "checks", "error_rate", max=0.05)
ERRORS_GROWTH = Rule("probe-errors", "checks", "error_rate", max_increase=1.0)


def _baseline(bursty: bool) -> Observation:
    """60 background runs of 40 probes at 2% errors: every run alike, or in bursts (one
    run in eight fails 16% of its probes, the others none)."""
    rng = np.random.default_rng(1)
    if bursty:
        counts = [int(rng.binomial(40, 0.16)) if rng.uniform() < 0.125 else 0 for _ in range(60)]
    else:
        counts = [int(rng.binomial(40, 0.02)) for _ in range(60)]
    return merge([Observation(value=c / 40, count=c, total=40) for c in counts])


def _detail(rule: Rule, base: Observation) -> tuple[str, str]:
    """A window of 30 rounds of 40 probes at 2% errors, judged at its end."""
    rng = np.random.default_rng(2)
    judge = Judge([rule], {rule.name: base}, Policy(), horizon=30)
    state = judge.start()
    for i in range(30):
        k = int(rng.binomial(40, 0.02))
        seen = {rule.name: Observation(value=k / 40, count=k, total=40)}
        state = judge.advance(state, seen, in_place=True, final=i == 29)
    verdict = judge.verdict(state, final=True)
    (rule_verdict,) = verdict.rules
    return rule_verdict.detail, verdict.reason


def test_a_bursty_baselines_wide_bound_says_its_errors_came_in_bursts() -> None:
    base = _baseline(bursty=True)
    data = BaselineData.from_observation(base)
    assert data is not None and data.shows_bursts
    detail, reason = _detail(ERRORS_MAX, base)
    assert f"vs max 5% ({BURSTS_WIDEN})" in detail, detail
    assert BURSTS_WIDEN in reason, reason
    detail, reason = _detail(ERRORS_GROWTH, base)
    assert f"on its counts; {BURSTS_WIDEN_BOTH})" in detail, detail
    assert BURSTS_WIDEN_BOTH in reason, reason


def test_a_calm_baselines_bound_says_nothing_of_bursts() -> None:
    base = _baseline(bursty=False)
    data = BaselineData.from_observation(base)
    assert data is not None and not data.shows_bursts
    for rule in (ERRORS_MAX, ERRORS_GROWTH):
        detail, reason = _detail(rule, base)
        assert "bursts" not in detail and "bursts" not in reason, detail


def test_registration_says_so_of_a_bound_a_bursty_baseline_leaves_out_of_reach() -> None:
    """Registration's `cannot pass on evidence` warning reads the same bound, with why."""
    (said,) = Judge(
        [ERRORS_MAX], {"probe-errors": _baseline(bursty=True)}, Policy(), horizon=30
    ).blind_spots({"probe-errors": 40.0})
    assert BURSTS_WIDEN in said, said
