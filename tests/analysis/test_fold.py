"""The judge as a fold: resuming from a stored (JSON) state gives the same verdicts as
folding every round in one go, and the state does not grow with the number of rounds."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge

DERANDOMIZED = settings(max_examples=30, deadline=None, derandomize=True)

RULES = (
    Rule("errors", "checks", "error_rate", max_increase=0.2, max=0.2),
    Rule("p95", "checks", "latency_p95", max_increase=0.3),
    Rule("abs-p95", "checks", "latency_p95", max=0.25),
    Rule("5xx", "prometheus", "error_rate", max=0.05),
    Rule("crash-free", "sentry", "crash_free_rate", max_increase=0.01, direction="decrease"),
    Rule("rps", "prometheus", "throughput", min=5.0),
)
POLICIES = st.sampled_from(
    [
        Policy("sequential"),
        Policy("sequential", confidence=0.9, pass_on="no_failure"),
        Policy("threshold", failure_limit=2),
        Policy("fixed", confidence=0.98),
    ]
)


def baselines(rng: np.random.Generator) -> dict[str, Observation]:
    lat = tuple(float(v) for v in rng.lognormal(-2.5, 0.5, 300))
    return {
        "errors": Observation(0.02, count=20, total=1000, periods=50, dispersion=0.05),
        "p95": Observation(float(np.percentile(lat, 95)), values=lat, quantile=0.95),
        "crash-free": Observation(0.995, count=9950, total=10_000),
    }


@st.composite
def rounds(draw: st.DrawFn) -> list[dict[str, Observation]]:
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    n = draw(st.integers(min_value=1, max_value=25))
    slow = draw(st.floats(min_value=0.5, max_value=3.0))
    bad = draw(st.floats(min_value=0.0, max_value=0.3))
    gaps = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    rng = np.random.default_rng(seed)
    out = []
    for gap in gaps:
        total = int(rng.integers(1, 60))
        count = int(rng.binomial(total, bad))
        lat = tuple(float(v) for v in slow * rng.lognormal(-2.5, 0.5, int(rng.integers(1, 40))))
        p95 = float(np.percentile(lat, 95))
        round_ = {
            "errors": Observation(count / total, count=count, total=total),
            "p95": Observation(p95, values=lat, quantile=0.95),
            "abs-p95": Observation(p95, values=lat, quantile=0.95),
            "5xx": Observation(bad * float(rng.uniform(0.5, 1.5))),
            "crash-free": Observation(1 - count / total, count=total - count, total=total),
            "rps": Observation(float(rng.uniform(0, 20))),
        }
        if gap:  # a provider outage: no data for some rules this round
            round_["5xx"] = Observation(None, error="provider answered 500")
            del round_["rps"]
        out.append(round_)
    return out


@DERANDOMIZED
@given(rounds=rounds(), policy=POLICIES, horizon=st.sampled_from([0, 10, 40]))
def test_resuming_from_any_stored_state_gives_the_same_verdicts(
    rounds: list[dict[str, Observation]], policy: Policy, horizon: int
) -> None:
    base = baselines(np.random.default_rng(7))
    judge = Judge(RULES, base, policy, horizon=horizon)
    state = judge.start()
    in_one_go = []
    states = []
    for i, round_ in enumerate(rounds):
        state, verdict = judge.step(state, round_, final=i == len(rounds) - 1)
        in_one_go.append(verdict)
        states.append(json.dumps(state))  # what the daemon stores with the round
    for k, stored in enumerate(states[:-1]):
        # a restart after round k: a new judge, compiled again, from the stored state. One
        # round resumed gives round k+1's verdict and stores round k+1's state, so by
        # induction every later round's verdict is the one folded in one go (the rounds
        # after k+1 are checked from k+1's stored state): n steps, not n²/2.
        resumed = Judge(RULES, base, policy, horizon=horizon)
        state, verdict = resumed.step(json.loads(stored), rounds[k + 1], final=k + 2 == len(rounds))
        assert verdict == in_one_go[k + 1], k
        assert json.dumps(state) == states[k + 1], k
    # and one judge resumed halfway folds on to the end as the first did (a judge keeps
    # nothing of its own between rounds that its stored state would lose)
    half = len(rounds) // 2
    resumed, state = Judge(RULES, base, policy, horizon=horizon), json.loads(states[half])
    for i in range(half + 1, len(rounds)):
        state, verdict = resumed.step(state, rounds[i], final=i == len(rounds) - 1)
        assert verdict == in_one_go[i], (half, i)


def test_the_state_does_not_grow_with_the_number_of_rounds() -> None:
    rng = np.random.default_rng(3)
    judge = Judge(RULES, baselines(rng), Policy("sequential"), horizon=2000)
    state = judge.start()
    sizes = {}
    for i in range(1, 501):
        lat = tuple(float(v) for v in rng.lognormal(-2.5, 0.5, 20))
        obs = {
            "errors": Observation(0.01, count=int(rng.binomial(100, 0.01)), total=100),
            "p95": Observation(float(np.percentile(lat, 95)), values=lat, quantile=0.95),
            "abs-p95": Observation(float(np.percentile(lat, 95)), values=lat, quantile=0.95),
            "5xx": Observation(0.01),
            "crash-free": Observation(0.99, count=99, total=100),
            "rps": Observation(10.0),
        }
        state, _ = judge.step(state, obs, final=False)
        if i in (100, 500):
            sizes[i] = len(json.dumps(state))
    # the latency sketch may gain a few buckets in the far tail (40.4 kB, then 41.5 kB);
    # nothing grows per round: 10 bytes kept a round would be 4 kB more by round 500
    assert sizes[500] < sizes[100] * 1.1, sizes
