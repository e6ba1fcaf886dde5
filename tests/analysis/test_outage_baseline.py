"""An absolute `max` on the error rate over a baseline probed while the service was down
(a README walk-through: background runs 96% errors, the release at 7-10%): the failing test
reads the release's own rounds only, and a failure the e-detector decides says why its bar
(rounds x its level) is not the 1 / alpha the page's chart showed from round 1.

Fed as the daemon feeds the judge: background runs merged (`merge`), then rounds of counts."""

from __future__ import annotations

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import RuleVerdict

RULES = [Rule("probe-errors", "checks", "error_rate", max=0.05)] + [
    Rule(f"other-{i}", "checks", "error_rate", max=0.5) for i in range(5)
]
"""The example configuration's six rules: the error budget is split six ways."""
QUIET, FAILING = 6, 21
"""Rounds: six with no failed probe, then the health probe failing one in twelve."""


def _baseline(failed: list[int]) -> Observation:
    return merge([Observation(b / 10, count=b, total=10) for b in failed])


def _window(baseline: Observation) -> list[tuple[str, str, float, float]]:
    judge = Judge(RULES, {r.name: baseline for r in RULES}, Policy(), horizon=30)
    state = judge.start()
    said: list[tuple[str, str, float, float]] = []
    for i in range(QUIET + FAILING):
        bad = 0 if i < QUIET else 1
        rounds = {r.name: Observation(0.0, count=0, total=12) for r in RULES}
        rounds["probe-errors"] = Observation(bad / 12, count=bad, total=12)
        state, verdict = judge.step(state, rounds, final=i == 29)
        rule = verdict.rules[0]
        ev = rule.evidence
        said.append((rule.outcome, rule.detail, ev["likelihood_ratio"], ev["p_value"]))
        if rule.outcome == "fail":
            break
    return said


def test_an_absolute_bound_fails_alike_over_an_outage_baseline_and_a_healthy_one() -> None:
    """No baseline figure (its 96% errors, the burstiness its runs show) moves the failing
    test of an absolute bound: the same rounds, the same evidence, the same round failed."""
    healthy = _window(_baseline([0, 0, 1, 0, 0, 0]))
    for failed in ([10, 9, 10, 10, 9, 10], [10, 10, 10, 0, 0, 0]):
        outage = _window(_baseline(failed))
        assert [(o, lr, p) for o, _, lr, p in outage] == [(o, lr, p) for o, _, lr, p in healthy]
    assert healthy[-1][0] == "fail"


def test_a_failure_the_detector_decides_says_why_its_bar_is_rounds_times_the_deploys() -> None:
    """The deploy's run needs 1 / alpha (1,500 here: what the page showed at round 1), the
    detector of a regression begun later horizon / alpha (45,000): the verdict said only
    "45,000 needed", read as the bar grown 30x over the window."""
    detail = _window(_baseline([10, 9, 10, 10, 9, 10]))[-1][1]
    assert "45,000 needed" in detail, detail
    assert "may begin at any of 30 rounds: 30 x 1,500" in detail, detail
    assert "from the deploy 1,500" in detail, detail


ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.05)
OUTAGE = [10, 10, 10, 0, 0, 0]
"""Six background runs of 10 probes, the first three while the service was down: 50%
errors, and `merge` measures their burstiness near 1 (whole runs failed, whole runs not)."""


def _alone(baseline: Observation, failed_rounds: frozenset[int] = frozenset()) -> RuleVerdict:
    """`probe-errors` alone over 30 rounds of 12 probes, none failing but `failed_rounds`
    (failing whole): its verdict at the window's end."""
    judge = Judge([ERRORS], {ERRORS.name: baseline}, Policy(), horizon=30)
    state = judge.start()
    for i in range(30):
        bad = 12 if i in failed_rounds else 0
        state, verdict = judge.step(
            state, {ERRORS.name: Observation(bad / 12, count=bad, total=12)}, final=i == 29
        )
    return verdict.rules[0]


def test_a_healthy_release_over_an_outage_baseline_passes_on_its_own_rounds() -> None:
    """No failed probe in 360: over a calm baseline it passes on evidence, and now over an
    outage baseline too, where that baseline's burstiness (the outage's) widened its upper
    end from 0.0413 to 0.143 (the normal-mixture sequence's figures; the binomial one's
    end is 0.0178 now) and it ended inconclusive; the detail says why it was not read."""
    outage = _baseline(OUTAGE)
    assert outage.dispersion is not None and outage.dispersion > 0.9
    calm = _alone(_baseline([0, 0, 1, 0, 0, 0]))
    over_outage = _alone(outage)
    assert calm.outcome == "pass", calm.detail
    assert over_outage.outcome == "pass", over_outage.detail
    assert over_outage.evidence["evidence"] == calm.evidence["evidence"]
    assert (
        "error_rate upper bound 1.78% vs max 5% (on the release's own rounds: its baseline,"
        " 50% errors, looks probed while the service was down, so the outage's bursts are"
        " not read as the release's)"
    ) in over_outage.detail, over_outage.detail


def test_a_release_failing_whole_rounds_over_an_outage_baseline_does_not_pass() -> None:
    """Two rounds of 30 failing whole (6.7%, past the bound): the window's own spread keeps
    its upper end far past the bound, over an outage baseline as over any."""
    rule = _alone(_baseline(OUTAGE), frozenset({9, 19}))
    assert rule.outcome != "pass", rule.detail
    (bound,) = rule.evidence["evidence"]
    assert not bound["holds"] and bound["reached"] > 0.1, bound


def test_an_outage_baseline_keeps_its_burstiness_for_a_relative_bound() -> None:
    """Only an absolute bound reads the window's own spread alone: a `max_increase` is
    measured against the baseline, its burstiness included."""
    rule = Rule("probe-errors", "checks", "error_rate", max=0.05, max_increase=0.5)
    base = BaselineData.from_observation(_baseline(OUTAGE))
    tests = {t.bound: t for t in SequentialRule(rule, base, "proportion", 0.01).passes}
    assert tests["max"].outage == 0.5 and tests["max"].dispersion == 0.0
    assert tests["max_increase"].outage is None and tests["max_increase"].dispersion > 0.9


def _words(baseline: Observation) -> tuple[list[str], str]:
    """What registration says of `probe-errors` alone at 12 probes a round over 30 rounds
    (`blind_spots`), and what its first round's verdict says it can detect."""
    judge = Judge([ERRORS], {ERRORS.name: baseline}, Policy(), horizon=30)
    spots = judge.blind_spots({ERRORS.name: 12.0})
    _, verdict = judge.step(
        judge.start(), {ERRORS.name: Observation(0.0, count=0, total=12)}, final=False
    )
    return spots, verdict.rules[0].evidence["detectable"]["text"]


def test_what_an_absolute_bound_can_detect_over_an_outage_baseline_is_its_own_rounds() -> None:
    """The failing side reads the release's own probes over any baseline, and the pass side
    no longer reads an outage's burstiness: so what the bound can detect is said as over a
    calm baseline. It was read with the outage's rho (near 1) and as a fall from its 50%:
    'can detect error_rate 0.279 or more' with no warning where a calm baseline's words
    said 0.106, tighter than `max 0.05` can see, and registration said it could not pass,
    'a release just like its baseline (error_rate 0.5)'."""
    calm_spots, calm_can = _words(_baseline([0, 0, 1, 0, 0, 0]))
    spots, can = _words(_baseline(OUTAGE))
    assert can == calm_can == "can detect error_rate 10.6% or more by the window's end", can
    # what it can see (its first clause): the same; whether it can pass is its own reach
    assert [s.partition("; and")[0] for s in spots] == [
        s.partition("; and")[0] for s in calm_spots
    ], spots
    assert "its max bound is tighter than the smallest change it can detect" in spots[0]


def test_a_bound_over_an_outage_baseline_reaches_as_a_release_with_no_error_would() -> None:
    """Whether a bound can pass by the window's end is said of the best release judged on
    its own rounds (no error), not of one 'just like its baseline', the outage."""
    rule = SequentialRule(
        ERRORS, BaselineData.from_observation(_baseline(OUTAGE)), "proportion", 0.01, horizon=30
    )
    (reach,) = rule.pass_reach(12.0, 30)
    assert reach.test.outage == 0.5 and reach.mean == 0.0
    assert reach.rounds_needed is not None and reach.rounds_needed <= 30, reach


@pytest.mark.parametrize("source", ["sentry", "newrelic"])
def test_a_provider_baseline_of_the_previous_release_down_is_judged_as_a_checks_one(
    source: str,
) -> None:
    """A Sentry or New Relic `error_rate` baseline of the previous release's period, its
    60 minute buckets (200 spans each) half failed whole: a healthy release, 1 error a
    round of 200 events, passes on its own rounds and its detail says why. It ended
    inconclusive, its upper end 0.147 against 0.05 for the buckets' rho near 1, the
    outage's (Sentry's `events-timeseries` measures it; New Relic's one row gives none)."""
    rule = Rule("errors", source, "error_rate", max=0.05)
    base = merge([Observation(b / 200, count=b, total=200) for b in [200] * 30 + [1] * 30])
    judge = Judge([rule], {rule.name: base}, Policy(), horizon=30)
    state = judge.start()
    for i in range(30):
        state, verdict = judge.step(
            state, {rule.name: Observation(1 / 200, count=1, total=200)}, final=i == 29
        )
    (judged,) = verdict.rules
    assert judged.outcome == "pass", judged.detail
    assert (
        "its baseline, 50% errors, looks measured over the previous release while the service"
        " was down"
    ) in judged.detail, judged.detail


def test_registration_names_the_release_an_outage_baselines_reach_was_asked_of() -> None:
    """Over an outage baseline a bound's reach is asked of the best release on its own
    rounds (`pass_reach`): for a `min` on the error rate, one with every probe failed (its
    mean 1.0). Registration said 'a release with no probes failed would reach error_rate
    lower bound 0.962 vs min 0.99', the words of a `max`'s best release, whose lower bound
    is near 0, not 0.962."""
    rule = Rule("probe-errors", "checks", "error_rate", min=0.99)
    judge = Judge([rule], {rule.name: _baseline(OUTAGE)}, Policy(), horizon=30)
    (spot,) = judge.blind_spots({rule.name: 3.0})
    assert (
        "cannot pass on evidence by the window's end at the baseline's traffic (3 samples a"
        " round, 30 rounds), so the window would likely end inconclusive (`register --wait`"
        " exits 3): a release with all probes"
        " failed would reach error_rate lower bound 94.9% vs min 99%"
    ) in spot, spot
    assert "no probes failed" not in spot, spot
