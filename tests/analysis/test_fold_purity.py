"""The fold is pure although it shares and remembers parts of states to be quick: stepping
never changes the caller's state, and stepping any state (an old one again, one read back
from JSON, the same one twice) gives what a freshly compiled judge gives."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.analysis import Observation, Policy
from agent.analysis.judge import Judge
from tests.analysis.test_fold import POLICIES, RULES, baselines, rounds

DERANDOMIZED = settings(max_examples=25, deadline=None, derandomize=True)


@DERANDOMIZED
@given(rounds=rounds(), policy=POLICIES, horizon=st.sampled_from([0, 40]))
def test_stepping_never_changes_the_callers_state_and_any_state_steps_alike(
    rounds: list[dict[str, Observation]], policy: Policy, horizon: int
) -> None:
    base = baselines(np.random.default_rng(7))
    judge = Judge(RULES, base, policy, horizon=horizon)
    states = [judge.start()]
    stored = [json.dumps(states[0])]
    for round_ in rounds:
        new, _ = judge.step(states[-1], round_, final=False)
        states.append(new)
        stored.append(json.dumps(new))
    # every state is as it was when it was made, though later rounds were folded from it
    assert [json.dumps(s) for s in states] == stored
    # the same judge steps an old state again, and the newest one twice, as a fresh judge does
    for k in [0, len(rounds) // 2, len(rounds) - 1, len(rounds) - 1]:
        again, verdict = judge.step(states[k], rounds[k], final=True)
        fresh = Judge(RULES, base, policy, horizon=horizon)
        expected, expected_verdict = fresh.step(json.loads(stored[k]), rounds[k], final=True)
        assert json.dumps(again) == json.dumps(expected)
        assert verdict == expected_verdict
        # a round that is not the window's last steps to what was stored (the last one
        # also runs the tests that look once, at the window's end)
        assert json.dumps(judge.step(states[k], rounds[k], final=False)[0]) == stored[k + 1]
        assert [json.dumps(s) for s in states] == stored
