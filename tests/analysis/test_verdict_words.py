"""The verdict's words on-call reads: counts of one said in the singular, two rules as both,
and a sequential test's evidence as odds against what it needed, not a bare likelihood ratio."""

from __future__ import annotations

from agent.analysis import Observation, Policy, Rule
from agent.analysis.describe import odds, odds_number
from agent.analysis.judge import judge

SEQUENTIAL = Policy("sequential", confidence=0.99)


def rate(failed: int, total: int) -> Observation:
    return Observation(failed / total, count=failed, total=total)


def test_counts_of_one_are_singular() -> None:
    latency = Rule("p95", "checks", "latency_p95", max=0.3, min_samples=5)
    one = [{"p95": Observation(0.1, values=(0.1,), total=1)}]
    verdict = judge([latency], {}, one, SEQUENTIAL, final=False)
    assert verdict.rules[0].detail == "1 sample so far, 5 needed"  # was "1 samples so far"
    fixed = judge([latency], {}, one, Policy("fixed"), final=False)
    assert fixed.rules[0].detail == "1 sample so far, 5 needed"
    relative = Rule("errors", "sentry", "error_rate", max_increase=0.2)
    alone = judge([relative], {}, [{"errors": Observation(0.01)}], SEQUENTIAL, final=False)
    # was "1 rounds with data"
    assert alone.rules[0].detail == "no baseline to compare with (1 round with data)"
    gap = Rule("gap", "checks", "latency_p95", max=0.05, min_samples=1)
    empty = [{"gap": Observation(0.1, total=0)}]  # a round that answered without a sample
    none = judge([gap], {}, empty, Policy("threshold"), final=False)
    assert none.rules[0].detail == "no round with at least 1 sample"  # was "1 samples"


def test_two_rules_within_bounds_are_both_rules() -> None:
    rules = [
        Rule("errors", "checks", "error_rate", max_increase=0.2),
        Rule("errors-again", "checks", "error_rate", max_increase=0.2),
    ]
    base = {r.name: rate(10_000, 1_000_000) for r in rules}
    rounds = [{r.name: rate(1_000, 100_000) for r in rules}] * 30
    verdict = judge(rules, base, rounds, SEQUENTIAL, final=True)
    assert verdict.decision == "pass"
    # was "all 2 rules within bounds on evidence over 30 rounds"
    assert verdict.reason == "both rules within bounds on evidence over 30 rounds"


def test_a_likelihood_ratio_reads_as_odds() -> None:
    assert odds(2343.7) == "2,344 to 1"  # was "2.34e+03"
    assert odds(526.3) == "526 to 1"
    assert odds(0.05) == "1 to 20"  # the data favour no regression: not "0.05 to 1"
    assert odds(740_630_521.0) == "741 million to 1"  # not a nine-digit false precision
    assert odds(3e12) == "more than a billion to 1"  # was "3e+12"


def test_a_bar_a_hair_below_a_thousand_reads_as_a_thousand() -> None:
    """The sequential bar 1 / 0.001 is 999.9999999999989 in floating point: `register
    --wait`, the verdict and the alerts read `454 to 1 of 1e+03`, `1e+03 needed`, beside
    `1,053 needed` for a bar just above it."""
    assert odds_number(1 / 0.001) == "1,000"  # was "1e+03"
    assert odds(999.6) == "1,000 to 1"
    assert odds_number(999.4) == "999"
    assert odds_number(999_999.7) == "1 million"  # not "1,000,000" beside "1.5 million"
    assert odds_number(999_700_000.0) == "a billion"  # was "1e+03 million"


def test_a_pass_by_the_threshold_streak_is_not_said_to_be_on_evidence() -> None:
    """Passing on evidence, a rule no sequential test covers (a bare value's `min`, one gone
    below 0) keeps the threshold streak, and passes where no streak failed it. The window's
    reason read "both rules within bounds on evidence over 20 rounds" when neither had been
    shown within its bound: it now says which rules passed by the streak alone."""
    drift = Rule("drift", "prometheus", "query", max=1.0)
    throughput = Rule("tp", "prometheus", "throughput", min=5.0)
    errors = Rule("errors", "checks", "error_rate", max_increase=0.2)
    rounds = [
        {"drift": Observation(v), "tp": Observation(10.0), "errors": rate(1_000, 100_000)}
        for v in [0.5, -0.3] * 10
    ]
    base = {"errors": rate(10_000, 1_000_000)}
    verdict = judge([drift, throughput], {}, rounds, SEQUENTIAL, final=True, horizon=20)
    assert verdict.decision == "pass"
    assert "on evidence" not in verdict.reason, verdict.reason
    assert verdict.reason == (
        "both rules passed over 20 rounds by the threshold streak alone (too few rounds in a"
        " row past the bound to fail), which is no evidence that they are within their"
        " bounds: drift, tp"
    )
    mixed = judge([errors, throughput], base, rounds, SEQUENTIAL, final=True, horizon=20)
    assert mixed.decision == "pass"
    assert mixed.reason == (
        "both rules passed over 20 rounds: 1 within bounds on evidence (errors), 1 by the"
        " threshold streak alone (too few rounds in a row past the bound to fail), which is"
        " no evidence that it is within its bound: tp"
    )
    # all on evidence: as before
    alone = judge([errors], base, rounds, SEQUENTIAL, final=True, horizon=20)
    assert alone.reason == "1 of 1 rule within bounds on evidence over 20 rounds"


def test_a_sequential_fail_says_a_rates_figures_in_percent() -> None:
    """As the inconclusive reason, the alerts and the README say them: `error_rate 31% >
    max 5%`, where the fail said `error_rate 0.31 > max 0.05` beside `48.3% past max 5%`;
    a relative bound's figures too. The `threshold` field keeps the config's `max 0.05`."""
    errors = Rule("probe-errors", "checks", "error_rate", max=0.05)
    verdict = judge([errors], {}, [{errors.name: rate(31, 100)}] * 5, SEQUENTIAL, final=False)
    assert verdict.decision == "fail"
    assert verdict.reason.startswith("probe-errors: error_rate 31% > max 5% after 500 probes:")
    [rule] = verdict.rules
    assert "; error_rate > max 5%: evidence " in rule.detail
    assert rule.threshold == "max 0.05" and rule.observed == 0.31
