"""Registration's "cannot pass on evidence" clause says a rate's figures in %, as every
other free text does (`max 5%`, `error_rate 20.4% or more` beside it): it said `a release
just like its baseline (error_rate 0.025) would reach error_rate upper bound 0.115 vs max
0.05`. So does an inconclusive rule's detail and the window's reason quoting it (issue 10);
the `threshold` field keeps the bound as configured (contract)."""

from __future__ import annotations

import re

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge, judge
from agent.analysis.observe import merge

BASELINE = merge(
    [Observation((i % 4 == 0) / 10, count=int(i % 4 == 0), total=10) for i in range(40)]
)
"""40 background runs of 10 probes, one in four with a failed probe: 2.5% errors."""
BARE_FRACTION = re.compile(r"\b0\.\d+(?![\d%])")
"""A rate's figure as the judge writes it (`0.115`), not in % (`0.65%`)."""


def _clause(rule: Rule) -> str:
    judge = Judge([rule], {rule.name: BASELINE}, Policy(), horizon=10)
    (said,) = judge.blind_spots({rule.name: 10.0})
    return said[said.index("cannot pass on evidence") :]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("rule", "said"),
    [
        (
            Rule("errors", "checks", "error_rate", max=0.05),
            "a release just like its baseline (error_rate 2.5%) would reach error_rate upper"
            " bound 11.6% vs max 5%;",  # 11.5% before the weight on no event (0.07 here)
        ),
        (
            Rule("errors", "checks", "error_rate", max_increase=0.3),
            "would reach error_rate <= 3.25% (baseline 2.5% +30%), shown with room for the"
            " baseline's own error: error_rate upper bound 27.6% vs 0.65% (+30% of 0.5%, the"
            " least the baseline's rate may be on its counts)",
        ),
    ],
    ids=["max", "max_increase"],
)
def test_a_rate_bounds_cannot_pass_clause_is_in_percent(rule: Rule, said: str) -> None:
    clause = _clause(rule)
    assert said in clause, clause
    assert not BARE_FRACTION.search(clause), clause


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("rule", "said"),
    [
        (Rule("errors", "checks", "error_rate", max=0.05), "vs max 5%: not enough evidence"),
        (
            Rule("errors", "checks", "error_rate", max_increase=0.3),
            "% (+30% of 0.5%, the least the baseline's rate may be on its counts):"
            " not enough evidence",
        ),
    ],
    ids=["max", "max_increase"],
)
def test_an_inconclusive_rules_detail_says_its_bound_in_percent(rule: Rule, said: str) -> None:
    """Issue 10: an inconclusive rule says `error_rate upper bound 3.1% vs max 2%: not
    enough evidence`; it said `upper bound 0.0624 vs max 0.05`. The `threshold` field keeps
    the config's `max 0.05` (contract)."""
    rounds = [{rule.name: Observation(0.0, count=0, total=10)} for _ in range(10)]
    verdict = judge([rule], {rule.name: BASELINE}, rounds, Policy(), final=True, horizon=10)
    assert verdict.decision == "inconclusive", verdict.reason
    (detail,) = (r.detail for r in verdict.rules)
    assert said in detail, detail
    assert said in verdict.reason, verdict.reason  # the window's reason quotes it
    assert not BARE_FRACTION.search(detail[detail.index("upper bound") :]), detail
