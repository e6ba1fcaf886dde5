"""A rule that had no data for the whole window (its provider down throughout) leaves the
window `inconclusive` under every policy: the contract's "no data, or a provider could not
be reached" is never a pass. `threshold`, `fixed` and `pass_on: no_failure` passed such a
window on its other rules ("1 of 2 rules passed ... 1 inconclusive"). A rule that had data,
even one round of it, and merely lacked evidence is still what `no_failure` passes."""

from __future__ import annotations

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from agent.analysis.observe import NO_SAMPLES

PROBES = Rule("probe-errors", "checks", "error_rate", max=0.5)
SENTRY = Rule("sentry-errors", "sentry", "error_rate", max=0.05)
RULES = (PROBES, SENTRY)
POLICIES = {
    "threshold": Policy("threshold"),
    "threshold-no_failure": Policy("threshold", pass_on="no_failure"),
    "sequential": Policy("sequential"),
    "no_failure": Policy("sequential", pass_on="no_failure"),
    "fixed": Policy("fixed"),
}
ROUNDS = 10
DOWN = Observation(None, error="Sentry answered 503 (after 3 attempts)")


def clean_probes() -> Observation:
    return Observation(0.0, count=0, total=50)


def sentry_rate(rate: float) -> Observation:
    return Observation(rate, count=int(rate * 20_000), total=20_000)


def end_of(policy: Policy, sentry: list[Observation]) -> tuple[str, str, str]:
    """The window's decision and reason from its verdict, and its glance's decision."""
    judge = Judge(RULES, {}, policy, horizon=ROUNDS)
    state = judge.start()
    for k in range(ROUNDS):
        final = k == ROUNDS - 1
        state = judge.advance(state, {PROBES.name: clean_probes(), SENTRY.name: sentry[k]})
    verdict = judge.verdict(state, final=final)
    return verdict.decision, verdict.reason, judge.glance(state, final=final).decision


@pytest.mark.parametrize("name", list(POLICIES))
def test_a_provider_down_the_whole_window_leaves_it_inconclusive(name: str) -> None:
    decision, reason, glanced = end_of(POLICIES[name], [DOWN] * ROUNDS)
    assert (decision, glanced) == ("inconclusive", "inconclusive"), reason
    # the reason names the rule without data and why (the end alert's "Why:")
    assert "sentry-errors: no data (Sentry answered 503 (after 3 attempts))" in reason, reason
    assert "passed" not in reason, reason


@pytest.mark.parametrize("name", ["threshold", "no_failure", "fixed"])
def test_a_rule_with_data_that_lacks_evidence_still_passes_on_no_failure(name: str) -> None:
    """One round of Sentry's figures, then an outage: the rule had data (it is judged on
    it, passing what did not fail), so these policies pass the window as before."""
    decision, reason, glanced = end_of(POLICIES[name], [sentry_rate(0.01)] + [DOWN] * 9)
    assert (decision, glanced) == ("pass", "pass"), reason
    assert reason.startswith("2 of 2 rules passed over 10 rounds"), reason


def test_a_window_whose_every_rule_had_no_data_names_them() -> None:
    """It said "no rule had data to judge over 3 rounds", naming none (nor why)."""
    judge = Judge((SENTRY,), {}, POLICIES["threshold"])
    state = judge.start()
    for _ in range(3):
        state = judge.advance(state, {SENTRY.name: DOWN})
    verdict = judge.verdict(state, final=True)
    assert verdict.decision == "inconclusive"
    assert verdict.reason == (
        "no rule had data to judge over 3 rounds: sentry-errors: no data (Sentry answered 503"
        " (after 3 attempts))"
    )


@pytest.mark.parametrize("name", list(POLICIES))
def test_a_round_with_nothing_in_it_keeps_the_reason_an_earlier_round_gave(name: str) -> None:
    """A provider down for 8 rounds, then 2 whose answer was not in yet (no value, no
    error: nothing new): the reason said `sentry-errors: no data (no data)`, the last
    round's, where the provider's error is why the rule had none. The generic words stay
    for a rule that never had more (`no samples`: no run of its check at all)."""
    decision, reason, _ = end_of(POLICIES[name], [DOWN] * 8 + [Observation(None)] * 2)
    assert decision == "inconclusive", reason
    assert "sentry-errors: no data (Sentry answered 503 (after 3 attempts))" in reason, reason
    judge = Judge((PROBES,), {}, POLICIES[name])
    state = judge.start()
    for said in ("no latencies", NO_SAMPLES, None):
        state = judge.advance(state, {PROBES.name: Observation(None, error=said)})
    assert judge.verdict(state, final=True).rules[0].detail == "no data (no latencies)"
    state = judge.advance(judge.start(), {PROBES.name: Observation(None, error=NO_SAMPLES)})
    state = judge.advance(state, {})
    assert judge.verdict(state, final=True).rules[0].detail == "no data (no samples)"
