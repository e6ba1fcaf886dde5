"""Registration's "cannot pass on evidence" clause says a rate's figures in %, as every
other free text does (`max 5%`, `error_rate 20.4% or more` beside it): it said `a release
just like its baseline (error_rate 0.025) would reach error_rate upper bound 0.115 vs max
0.05`. The verdict's `reason` and `threshold` keep the bound as configured (contract)."""

from __future__ import annotations

import re

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
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
            " bound 11.5% vs max 5%;",
        ),
        (
            Rule("errors", "checks", "error_rate", max_increase=0.3),
            "would reach error_rate <= 3.25% (baseline 2.5% +30%), shown with room for the"
            " baseline's own error: error_rate upper bound 27.4% vs 0.65% (+30% of 0.5%, the"
            " least the baseline's rate may be on its counts)",
        ),
    ],
    ids=["max", "max_increase"],
)
def test_a_rate_bounds_cannot_pass_clause_is_in_percent(rule: Rule, said: str) -> None:
    clause = _clause(rule)
    assert said in clause, clause
    assert not BARE_FRACTION.search(clause), clause
