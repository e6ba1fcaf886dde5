"""Rounds stored without the judge's state: a restart at any round resumes from the latest
stored state plus the stored observations after it, and reaches the very state and
verdicts of the agent that never stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from agent.windows.checkpoint import (
    replays_exactly,
    resume_point,
    stored_observations,
    stores_state,
)
from agent.windows.evidence import RAW_VALUES, observation_from_dict
from tests.analysis.test_fold import DERANDOMIZED, POLICIES, RULES, baselines, rounds


def _with_big_rounds(rounds_: list[dict[str, Observation]], every: int) -> None:
    """Every `every`-th round has more latencies than a stored round keeps."""
    rng = np.random.default_rng(11)
    for i in range(0, len(rounds_), every):
        lat = tuple(float(v) for v in rng.lognormal(-2.5, 0.5, RAW_VALUES + 30))
        p95 = float(np.percentile(lat, 95))
        rounds_[i]["p95"] = Observation(p95, values=lat, quantile=0.95)


@DERANDOMIZED
@given(
    rounds=rounds(),
    policy=POLICIES,
    every=st.sampled_from([1, 3, 1000]),
    big=st.sampled_from([0, 4]),
)
def test_a_restart_after_any_round_resumes_the_same_state_and_verdicts(
    rounds: list[dict[str, Observation]], policy: Policy, every: int, big: int
) -> None:
    if big:
        _with_big_rounds(rounds, big)
    base = baselines(np.random.default_rng(7))
    judge = Judge(RULES, base, policy, horizon=40)
    state = judge.start()
    states, verdicts, stored = [], [], []
    for i, round_ in enumerate(rounds):
        state, verdict = judge.step(state, round_, final=i == len(rounds) - 1)
        with_state = stores_state(
            i + 1,
            round_,
            moving_baseline=False,
            decided=verdict.decision != "continue",
            every=every,
        )
        summary = {"observations": stored_observations(round_, exact=not with_state)}
        if with_state:
            summary["judge"] = state
        stored.append(json.dumps(summary))  # what the store keeps
        states.append(json.loads(json.dumps(state)))
        verdicts.append(verdict)
    for k in range(len(rounds)):
        resumed = Judge(RULES, base, policy, horizon=40)
        latest, replay = resume_point(json.loads(s) for s in stored[: k + 1])
        state = latest or resumed.start()
        for old in replay:
            state, _ = resumed.step(state, old, final=False)
        assert state == states[k], k
        # The judge is a pure fold, so the same state gives the same verdicts from here
        # on; the next round shows it for every k, the whole rest for the first and middle
        # restart (linear, not quadratic, in the window's rounds).
        last = len(rounds) if k in (0, len(rounds) // 2) else min(k + 2, len(rounds))
        for i in range(k + 1, last):
            state, verdict = resumed.step(state, rounds[i], final=i == len(rounds) - 1)
            assert verdict == verdicts[i], (k, i)


def test_a_state_stored_by_another_judge_version_is_replayed_not_read() -> None:
    """An upgrade mid-window: the old state's shape is unknown to the new judge, so a
    restart replays that round's observations (and every one after) from a fresh start."""
    rng = np.random.default_rng(3)
    obs = [
        {"p95": Observation(0.1, values=tuple(rng.lognormal(-2.5, 0.5, 10)), quantile=0.95)}
        for _ in range(3)
    ]
    stored = [
        {"observations": stored_observations(obs[0], exact=True)},
        {"observations": stored_observations(obs[1], exact=False), "judge": {"v": 1}},
        {"observations": stored_observations(obs[2], exact=True)},
    ]
    state, replay = resume_point(json.loads(json.dumps(stored)))
    assert state is None
    assert len(replay) == 3 and replay[0] == obs[0] and replay[2] == obs[2]
    kept = replay[1]["p95"].values  # what a round keeps of them: rounded
    assert kept == pytest.approx(obs[1]["p95"].values, abs=1e-6)
    state, replay = resume_point(json.loads(json.dumps(stored)), version=1)
    assert state == {"v": 1} and replay == [obs[2]]


def test_a_usual_round_is_stored_without_the_state_and_a_big_one_with_it() -> None:
    rng = np.random.default_rng(5)
    small = tuple(float(v) for v in rng.lognormal(-2.5, 0.5, 10))
    big = tuple(float(v) for v in rng.lognormal(-2.5, 0.5, RAW_VALUES + 1))
    usual = {"p95": Observation(0.1, values=small, quantile=0.95)}
    assert replays_exactly(usual)
    assert not stores_state(7, usual, moving_baseline=False, decided=False)
    assert stores_state(60, usual, moving_baseline=False, decided=False)
    assert stores_state(7, usual, moving_baseline=True, decided=False)
    assert stores_state(7, usual, moving_baseline=False, decided=True)
    assert not replays_exactly({"p95": Observation(0.1, values=big, quantile=0.95)})
    assert not replays_exactly({"x": Observation(float("nan"))})


def _round_trips(observations: dict[str, Observation]) -> bool:
    """The definition `replays_exactly` answers without encoding: stored, read back, equal."""
    stored = json.loads(json.dumps(stored_observations(observations, exact=True)))
    return all(observation_from_dict(stored[k]) == v for k, v in observations.items())


_numbers = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    value=_numbers,
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=RAW_VALUES + 2),
    count=st.one_of(st.none(), st.integers(0, 100)),
    quantile=st.one_of(st.none(), st.floats(0, 1)),
    seconds=_numbers,
    dispersion=_numbers,
    error=st.one_of(st.none(), st.text(max_size=5)),
)
def test_replays_exactly_is_the_json_round_trip(
    value: float | None,
    values: list[float],
    count: int | None,
    quantile: float | None,
    seconds: float | None,
    dispersion: float | None,
    error: str | None,
) -> None:
    obs = Observation(
        value,
        count=count,
        values=tuple(values),
        quantile=quantile,
        seconds=seconds,
        dispersion=dispersion,
        error=error,
    )
    assert replays_exactly({"r": obs}) == _round_trips({"r": obs})


V12_WINDOW = Path(__file__).with_name("judge_window_v12.json")
"""A window's first 12 rounds as the store kept them, the judge's whole state stored with
round 12, written by the judge of STATE_VERSION 12 (commit 93ee61b5): rules `error_rate
max: 0.05` and `latency_p95 max: 0.3`, 10 requests a round, 30 rounds planned. Its
absolute bounds' tests had no look at the window's end, so no `fin`."""
V12_RULES = (
    Rule("errors", "checks", "error_rate", max=0.05),
    Rule("p95", "checks", "latency_p95", max=0.3),
)


def test_a_window_stored_by_the_judge_of_version_12_resumes_after_the_upgrade() -> None:
    """An upgrade mid-window from 12: the restart replays the stored rounds and the window
    ends as if the new judge had judged it from the start. Saw fail before the bump to 13:
    the stored state was read, and the window's end raised KeyError 'fin'."""
    stored = json.loads(V12_WINDOW.read_text())
    assert stored[-1]["judge"]["v"] == 12
    assert "fin" not in stored[-1]["judge"]["rules"]["errors"]["seq"]["tests"]["max:proportion"]
    rng = np.random.default_rng(54)
    rest = []
    for _ in range(18):  # 25 errors in 180 requests (31 of 300 in all): caught at the end
        lat = tuple(float(v) for v in rng.lognormal(-2.5, 0.5, 10))
        c = int(rng.binomial(10, 0.14))
        rest.append(
            {
                "errors": Observation(c / 10, count=c, total=10),
                "p95": Observation(float(np.percentile(lat, 95)), values=lat, quantile=0.95),
            }
        )

    def to_the_end(judge: Judge, state: Any) -> tuple[Any, Any]:
        verdict = None
        for i, round_ in enumerate(rest):
            state, verdict = judge.step(state, round_, final=i == len(rest) - 1)
        return state, verdict

    resumed = Judge(V12_RULES, {}, Policy("sequential"), horizon=30)
    latest, replay = resume_point(stored)  # as the window's lifecycle resumes
    state = latest or resumed.start()
    for old in replay:
        state, _ = resumed.step(state, old, final=False)
    state, verdict = to_the_end(resumed, state)
    assert latest is None and len(replay) == 12

    never_stopped = Judge(V12_RULES, {}, Policy("sequential"), horizon=30)
    again = never_stopped.start()
    for old in replay:
        again, _ = never_stopped.step(again, old, final=False)
    assert (state, verdict) == to_the_end(never_stopped, again)
    test = state["rules"]["errors"]["seq"]["tests"]["max:proportion"]
    assert (verdict.decision, test["crossed"]) == ("fail", 29)  # by the look at the end
    assert test["final_p"] < 0.001
