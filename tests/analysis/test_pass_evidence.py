"""Passing on evidence is an intersection-union test: each bound's evidence takes the whole
budget, so a rule needs no more samples to pass beside other rules than alone, and a deploy
that breaks any one bound still passes at most `1 - confidence` of the time."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.sequential import BaselineData
from agent.windows.evidence import observation_from_dict, observation_to_dict

HEALTH = Rule("health-latency", "checks", "latency_p95", max=0.3, check="health")
ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.05)
FEED = Rule("feed-p95", "checks", "latency_p95", max_increase=0.5, check="feed")
PROBES = 10
"""The example's `probes_per_round` a check: a round's latencies of one check."""


def latencies(values: np.ndarray) -> Observation:
    vals = tuple(float(v) for v in values)
    return Observation(float(np.percentile(vals, 95)), values=vals, quantile=0.95)


def errors(failed: int, total: int) -> Observation:
    return Observation(failed / total, count=failed, total=total)


def baselines(rng: np.random.Generator) -> dict[str, Observation]:
    """An hour of the example's background runs: 120 of 10 feed probes, 0.5% errors."""
    feed = merge([latencies(rng.lognormal(np.log(0.08), 0.2, PROBES)) for _ in range(120)])
    return {"feed-p95": feed, "probe-errors": errors(12, 2_400)}


def a_good_round(rng: np.random.Generator) -> dict[str, Observation]:
    """The example's production checks on a healthy release: health ~30 ms, feed ~80 ms."""
    return {
        "health-latency": latencies(rng.lognormal(np.log(0.03), 0.2, PROBES)),
        "probe-errors": errors(int(rng.binomial(2 * PROBES, 0.005)), 2 * PROBES),
        "feed-p95": latencies(rng.lognormal(np.log(0.08), 0.2, PROBES)),
    }


def samples_to_pass(rules: list[Rule], seed: int) -> int | None:
    """Health latencies folded in, as the daemon folds rounds, until the health rule passes
    (a 15-minute window of 30 s rounds: 30 planned)."""
    rng = np.random.default_rng(seed)
    judge = Judge(rules, baselines(rng), Policy(), horizon=30)
    state = judge.start()
    for index in range(30):
        round_ = a_good_round(rng)
        state, verdict = judge.step(state, {r.name: round_[r.name] for r in rules}, final=False)
        if next(r for r in verdict.rules if r.name == HEALTH.name).outcome == "pass":
            return (index + 1) * PROBES
    return None


def test_a_rule_needs_no_more_samples_to_pass_beside_other_rules() -> None:
    """The example's `health-latency` (p95 max 300ms) beside `probe-errors` and `feed-p95`:
    its 300 latencies a window pass at 250 as they do alone (before, at 300: a window whose
    overload guard dropped a few ended inconclusive)."""
    for seed in range(3):
        alone = samples_to_pass([HEALTH], seed)
        beside = samples_to_pass([HEALTH, ERRORS, FEED], seed)
        assert alone is not None and alone <= 250
        assert beside == alone, seed


def test_a_deploy_at_one_bound_of_three_passes_at_most_one_percent_of_the_time() -> None:
    """The guarantee passing keeps: `probe-errors` exactly at its `max 0.05` (not within
    it), the other two rules far inside theirs, 200 windows of 100 rounds of 40 probes.
    A window passes only on evidence that every rule holds, so it passes at most
    1 - confidence (1%) of the time: none did (at 0.045 error rate, 1.5% pass). With 50
    times the budget for passing, 2.5% of them passed; with 20 or 30 times, 0.5%: 400
    windows told the same (3.25%, 0.5% and 0.75%) at twice the cost. It asserts the
    README's figure, 1 of 200 (0 before a bound's reported end was the sequence's running
    intersection), which the guarantee (at most 2) holds."""
    rng = np.random.default_rng(11)
    rules = [HEALTH, ERRORS, FEED]
    judge = Judge(rules, baselines(rng), Policy(), horizon=100)
    windows, passed = 200, 0
    health = latencies(np.full(PROBES, 0.03))
    feed = latencies(np.full(PROBES, 0.08))
    for _ in range(windows):
        state = judge.start()
        failed = rng.binomial(40, 0.05, size=100)
        for index, bad in enumerate(failed):
            round_ = {
                "health-latency": health,
                "probe-errors": errors(int(bad), 40),
                "feed-p95": feed,
            }
            state = judge.advance(state, round_, in_place=True, final=index == 99)
        passed += judge.glance(state, final=True).decision == "pass"
    assert passed == 1, passed  # the README's "1 of 200"; the guarantee is at most 1%, 2


def health_windows(probes: int, rounds: int, windows: int) -> tuple[list[str], int]:
    """The example's `health-latency` at `probes` a round for `rounds`: the registration's
    warnings from the background baseline, and in how many of `windows` healthy releases
    (drawn like the baseline, as the daemon folds them) the rule passed on evidence."""
    rng = np.random.default_rng(probes * 1_000 + rounds)
    base = {
        HEALTH.name: merge([latencies(rng.lognormal(np.log(0.03), 0.2, 10)) for _ in range(120)])
    }
    judge = Judge([HEALTH], base, Policy(), horizon=rounds)
    said = judge.blind_spots({HEALTH.name: float(probes)}, 30.0)  # 30 s rounds
    passed = 0
    for _ in range(windows):
        state = judge.start()
        for index in range(rounds):
            round_ = {HEALTH.name: latencies(rng.lognormal(np.log(0.03), 0.2, probes))}
            state = judge.advance(state, round_, in_place=True, final=index == rounds - 1)
        passed += judge.glance(state, final=True).decision == "pass"
    return said, passed


def test_a_window_too_short_to_pass_is_said_before_it_opens_and_the_figure_it_gives_holds() -> None:
    """3 probes a round for a 15-minute window (90 latencies): warned at registration that
    a release just like its baseline cannot show p95 <= 300ms by the window's end, with the
    samples it needs; and indeed no healthy window passes. A window that long passes."""
    said, passed = health_windows(3, 30, 20)
    (sentence,) = said
    assert sentence.startswith("rule health-latency: cannot pass on evidence by the window's end")
    assert "so the window would likely end inconclusive (`register --wait` exits 3)" in sentence
    needed = re.search(
        r"it needs about ([\d,]+) samples \((\d+) rounds of this traffic\)", sentence
    )
    assert needed is not None, sentence
    # README; 126 samples (42 rounds, 21m, 5 a round) on the uniform mixture alone, before
    # the weight on no event a short window's pass side has (`stats.no_event_weight`)
    assert needed[0] == "it needs about 93 samples (31 rounds of this traffic)"
    assert (  # README: the same in the configuration's words
        "(31 rounds of this traffic), a window of 15m30s at these rounds, or about 4 samples"
        " a round over its 30 rounds: more probes per round or a longer window"
    ) in sentence, sentence
    assert passed == 0
    rounds = int(needed[2])
    assert int(needed[1].replace(",", "")) == 3 * rounds
    said, passed = health_windows(3, rounds, 20)
    assert said == [] and passed == 20
    # and at the samples a round it names, over the window's own 30 rounds
    said, passed = health_windows(4, 30, 20)
    assert said == [] and passed > 10, passed
    # the example's own 10 a round: nothing said, and healthy windows pass
    said, passed = health_windows(PROBES, 30, 20)
    assert said == [] and passed == 20


def test_a_one_round_window_is_said_to_be_too_short_to_pass() -> None:
    """`window` equal to `interval` is allowed, and its one round is too few for any
    confidence sequence: it always ended inconclusive, with no warning (review)."""
    said, passed = health_windows(PROBES, 1, 5)
    (sentence,) = said
    assert "a window of one round shows no evidence" in sentence
    # 130 (13 rounds) before the weight on no event (`stats.no_event_weight`)
    assert "it needs about 100 samples (10 rounds of this traffic)" in sentence
    assert passed == 0


def passes_past_the_bound(whole_rounds: bool, windows: int, seed: int) -> int:
    """Windows of 30 rounds of 40 probes (`probe-errors`, max 0.05, alone) whose deploy
    fails 6% of its probes, past the bound: each probe alone, or whole rounds 6% of the
    time (a pod down for a round). How many passed on evidence."""
    rng = np.random.default_rng(seed)
    judge = Judge([ERRORS], {}, Policy(), horizon=30)
    passed = 0
    for _ in range(windows):
        state = judge.start()
        for index in range(30):
            if whole_rounds:
                bad = 40 if rng.random() < 0.06 else 0
            else:
                bad = int(rng.binomial(40, 0.06))
            state = judge.advance(
                state, {ERRORS.name: errors(bad, 40)}, in_place=True, final=index == 29
            )
        passed += judge.glance(state, final=True).decision == "pass"
    return passed


def test_passing_takes_a_rounds_requests_as_independent() -> None:
    """README: the sequence a bound passes on is asymptotic, on the rounds' figures with at
    least a round's binomial variance, so its `1 - confidence` holds for requests failing
    independently within a round (none of 300 such deploys past the bound passed), not for
    errors that fill whole rounds: a window with no failing round shows no spread to read,
    and passes (0.94^30, 16% of such windows: 44 of 300 here). The README said at most 1%
    without the condition; asserted as such (at most 3 of 300), this test failed."""
    assert passes_past_the_bound(False, 300, 1) == 0
    whole = passes_past_the_bound(True, 300, 2)
    assert 0.94**30 * 300 / 2 <= whole <= 0.94**30 * 300 * 1.5, whole  # 47 expected


def whole_round_windows(share: float, windows: int, seed: int) -> int:
    """`passes_past_the_bound`'s whole rounds (30 of 40 probes, `max 0.05`) with the
    baseline the daemon folds first: an hour of background runs (120 of 40 probes) of the
    same service, its rounds failing whole `share` of the time. How many windows passed."""
    rng = np.random.default_rng(seed)
    passed = 0
    for _ in range(windows):
        runs = [errors(40 if rng.random() < share else 0, 40) for _ in range(120)]
        judge = Judge([ERRORS], {ERRORS.name: merge(runs)}, Policy(), horizon=30)
        state = judge.start()
        for index in range(30):
            bad = 40 if rng.random() < share else 0
            state = judge.advance(
                state, {ERRORS.name: errors(bad, 40)}, in_place=True, final=index == 29
            )
        passed += judge.glance(state, final=True).decision == "pass"
    return passed


def test_whole_rounds_the_background_shows_do_not_pass_a_deploy_past_its_bound() -> None:
    """README: the pass side's floor is a round's binomial variance times the burstiness
    measured across the baseline's periods, so rounds failing whole 6% of the time, which
    the hour of background runs shows, pass none of 300 windows (before: 44 of 300, 15%,
    the windows whose rounds showed no failure; at most 1% asserted)."""
    assert whole_round_windows(0.06, 300, 3) == 0  # the README's 0 of 300; at most 1%: 3


def slow_round_windows(
    rule: Rule, before: float, after: float, windows: int, seed: int
) -> dict[str, int]:
    """Whole rounds slow (a 50 ms service, its slow rounds 10x) `before` of the time in an
    hour of background runs (120 of 40 probes) and `after` in the window's 30 rounds of 40:
    how many windows passed on the baseline as `merge` pools it (`kept`: each run's samples
    known) and as a baseline stored before runs were kept reads back (`stored_before`)."""
    rng = np.random.default_rng(seed)

    def a_round(share: float) -> Observation:
        scale = 10.0 if rng.random() < share else 1.0
        return latencies(rng.lognormal(np.log(0.05 * scale), 0.3, 40))

    passed = {"kept": 0, "stored_before": 0}
    for _ in range(windows):
        base = merge([a_round(before) for _ in range(120)])
        stored = {k: v for k, v in observation_to_dict(base).items() if k != "period_sizes"}
        rounds = [a_round(after) for _ in range(30)]
        for said, baseline in (("kept", base), ("stored_before", observation_from_dict(stored))):
            judge = Judge([rule], {rule.name: baseline}, Policy(), horizon=30)
            state = judge.start()
            for index, round_ in enumerate(rounds):
                state = judge.advance(state, {rule.name: round_}, in_place=True, final=index == 29)
            passed[said] += judge.glance(state, final=True).decision == "pass"
    return passed


def test_slow_whole_rounds_the_background_shows_do_not_pass_a_latency_bound() -> None:
    """README: a latency rule's pass side, a share of samples past a cutoff, takes the
    burstiness of the background runs' samples past it, as a rate's does: rounds slow whole
    6% of the time against `max: 300ms` (their samples all past it) pass none of 300 windows
    (before: 56 of 300 on the binomial floor, the windows with no slow round); and a
    baseline stored before the runs' sizes were kept judges as it did then."""
    slow = Rule("health-latency", "checks", "latency_p95", max=0.3, check="health")
    passed = slow_round_windows(slow, 0.06, 0.06, 300, 3)
    assert passed["kept"] == 0, passed  # at most 1%: 3
    assert passed["stored_before"] > 30, passed  # the binomial floor's passes, as before


def test_slow_whole_rounds_more_often_do_not_pass_a_relative_latency_bound() -> None:
    """The same past a relative bound: whole rounds slow 3% of the time before the deploy,
    7% after (its p95 among the slow rounds, past +50%; about 7% of its samples past the
    baseline's p95 + 50%): 0 of 100 windows pass (before: 10 of 100)."""
    passed = slow_round_windows(FEED, 0.03, 0.07, 100, 4)
    assert passed["kept"] <= 1 and passed["stored_before"] > 5, passed


def test_period_sizes_that_do_not_add_up_are_not_read() -> None:
    """A baseline's `period_sizes` count its values by period; sizes that do not add up to
    its values (a plugin's own) measure nothing, rather than a wrong burstiness."""
    values = (0.1, 0.1, 0.1, 0.1, 0.9, 0.9)
    kept = BaselineData.from_observation(
        Observation(0.9, values=values, quantile=0.95, period_sizes=(2, 2, 2))
    )
    wrong = BaselineData.from_observation(
        Observation(0.9, values=values, quantile=0.95, period_sizes=(2, 2, 3))
    )
    assert kept is not None and wrong is not None
    assert kept.share_dispersion(0.5, below=False) == 1.0  # the slow run: all its samples
    assert wrong.share_dispersion(0.5, below=False) == 0.0


def test_a_calm_latency_background_keeps_a_calm_release_passing() -> None:
    """No slow rounds before or after: the few samples past the cutoff are scattered, and
    the windows pass as on a baseline whose runs are not known (100 of 100 each)."""
    passed = slow_round_windows(FEED, 0.0, 0.0, 100, 5)
    assert passed["kept"] == passed["stored_before"] >= 95, passed


def test_a_calm_background_keeps_a_calm_release_passing() -> None:
    """The same window on a release failing 2% of probes one by one, its background alike:
    the burstiness measured is near none, and the windows pass as they do on a baseline
    whose burstiness is not known (48 of 50 each)."""
    rng = np.random.default_rng(5)
    passed = {"measured": 0, "unknown": 0}
    for _ in range(50):
        runs = [errors(int(rng.binomial(40, 0.02)), 40) for _ in range(120)]
        rounds = [errors(int(rng.binomial(40, 0.02)), 40) for _ in range(30)]
        base = merge(runs)
        for said, baseline in (("measured", base), ("unknown", replace(base, dispersion=None))):
            judge = Judge([ERRORS], {ERRORS.name: baseline}, Policy(), horizon=30)
            state = judge.start()
            for index, round_ in enumerate(rounds):
                state = judge.advance(
                    state, {ERRORS.name: round_}, in_place=True, final=index == 29
                )
            passed[said] += judge.glance(state, final=True).decision == "pass"
    assert passed["measured"] == passed["unknown"] >= 45, passed


def said_and_passed(bursty: bool, windows: int, seed: int) -> tuple[list[str], int]:
    """What registration says of `max 0.05` on errors at 1% (30 rounds of 40 probes, an
    hour of background runs of 40 as baseline), and how many windows of a release just
    like that background then pass: its errors filling whole rounds (`bursty`) or one by
    one."""
    rng = np.random.default_rng(seed)

    def a_round() -> Observation:
        if bursty:
            return errors(40 if rng.random() < 0.01 else 0, 40)
        return errors(int(rng.binomial(40, 0.01)), 40)

    judge = Judge(
        [ERRORS], {ERRORS.name: merge([a_round() for _ in range(120)])}, Policy(), horizon=30
    )
    said = judge.blind_spots({ERRORS.name: 40.0})
    passed = 0
    for _ in range(windows):
        state = judge.start()
        for index in range(30):
            state = judge.advance(state, {ERRORS.name: a_round()}, in_place=True, final=index == 29)
        passed += judge.glance(state, final=True).decision == "pass"
    return said, passed


def test_registration_says_a_bursty_background_cannot_pass_as_the_judge_then_does() -> None:
    """Registration's reach takes the design effect the judge's floor takes: whole rounds
    failing 1% of the time, an hour of background showing them, pass none of 100 windows,
    and registration says the rule cannot pass on evidence (before: it said nothing, its
    reach on the binomial floor, promising a pass the judge did not give)."""
    said, passed = said_and_passed(True, 100, 3)
    assert passed == 0, passed
    assert len(said) == 1 and "cannot pass on evidence by the window's end" in said[0], said


def test_registration_keeps_quiet_on_a_calm_background_that_passes() -> None:
    """The same errors one by one: registration says nothing, and the windows pass."""
    said, passed = said_and_passed(False, 50, 3)
    assert said == [], said
    assert passed >= 40, passed
