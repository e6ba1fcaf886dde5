"""Folding a round into the judge's state in place (what the daemon does, one state per
window, to spare the collector a score of new containers a round) gives the very states
and verdicts of folding into copies, and leaves a copy taken before (a stored round's)
as it was."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given

from agent.analysis import Observation, Policy
from agent.analysis.judge import Judge
from tests.analysis.test_fold import DERANDOMIZED, POLICIES, RULES, baselines, rounds


@DERANDOMIZED
@given(rounds=rounds(), policy=POLICIES)
def test_in_place_folds_give_the_states_and_verdicts_of_copies(
    rounds: list[dict[str, Observation]], policy: Policy
) -> None:
    base = baselines(np.random.default_rng(3))
    judge = Judge(RULES, base, policy, horizon=30)
    copied = judge.start()
    folded = judge.start()
    for i, round_ in enumerate(rounds):
        before = json.dumps(copied, sort_keys=True)
        kept = judge.copy(folded)
        kept_json = json.dumps(kept, sort_keys=True)
        copied = judge.advance(copied, round_)
        same = judge.advance(folded, round_, in_place=True)
        assert same is folded
        assert json.dumps(folded, sort_keys=True) == json.dumps(copied, sort_keys=True), i
        final = i == len(rounds) - 1
        assert judge.verdict(folded, final=final) == judge.verdict(copied, final=final)
        assert judge.glance(folded, final=final) == judge.glance(copied, final=final)
        # the copy a stored round holds is not moved by later in-place folds
        assert json.dumps(kept, sort_keys=True) == kept_json == before
