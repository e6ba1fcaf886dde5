"""What a rule can detect costs its searches once (`SequentialRule.detectable`, worded every
round): the figures are those the judge gave before its searches were made cheaper, to the
last bit, and a search asked again at a traffic alike works out no round again. Counts, not
time: `bench/judge_cost.py` measures the time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.analysis import sequential, stats
from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Rule
from tests.analysis import detectable_corpus
from tests.analysis.latency_rules import lognormal_rule


def test_every_kind_of_rule_can_detect_what_it_could_to_the_last_bit() -> None:
    """150 rules of every kind at three traffics each (`detectable_corpus`), against the
    figures stored before: the detectable effect's bound, value and effect, and each bound's
    reach, as exact hex floats."""
    stored = detectable_corpus.load()
    new = detectable_corpus.figures()
    assert len(new) == len(stored) == 450
    differ = [(old, now) for old, now in zip(stored, new, strict=True) if old != now]
    assert differ == []


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls = [0]
    real = getattr(stats, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(stats, name, counted)
    return calls


def test_a_count_rule_built_again_works_out_no_round_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error-rate bound (a count test against a fixed level): a rule built again alike
    (a restart, a replica, another window of the same rule) at a traffic that rounds to the
    same samples a round tries the same shares, and finds them worked out."""
    monkeypatch.setattr(sequential, "_ALIKE", {}, raising=False)
    calls = _counting(monkeypatch, "round_log_factor_moments")
    rule = Rule("errors", "checks", "error_rate", max=0.05)
    base = BaselineData(0.01, count=180.0, total=18000.0, periods=1800)
    first = SequentialRule(rule, base, "proportion", 0.005, horizon=900)._easiest(10.0)
    searched = calls[0]
    again = SequentialRule(rule, base, "proportion", 0.005, horizon=900)._easiest(10.0)
    assert searched >= 5
    assert (calls[0] - searched, again) == (0, first)


def test_the_rank_test_places_each_scale_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative latency bound's rank test: its look and its e-process search the same
    scales (2, 4, 8, then halvings), at this traffic and the next; each moved baseline is
    placed once."""
    placed: list[bytes] = []
    real = stats.placements

    def counted(sorted_base: Any, values: Any) -> Any:
        placed.append(np.asarray(values).tobytes())
        return real(sorted_base, values)

    monkeypatch.setattr(stats, "placements", counted)
    tests = lognormal_rule(np.random.default_rng(3), base_n=600, rounds=900)
    for per_round in (9.0, 10.0, 11.0):
        tests._easiest(per_round)
    assert len(placed) >= 30
    assert len(placed) == len(set(placed))


def test_the_kept_moments_of_rounds_alike_are_not_given_for_rounds_that_differ() -> None:
    """`_moments_alike` keeps one share's figures for rounds that all have it; rounds whose
    shares differ, first share and number alike, are worked out, not given those."""
    lambdas = np.array([0.1, 0.3, 0.6])
    alike = np.full(4, 0.02)
    differ = np.array([0.02, 0.05, 0.08, 0.11])
    sequential._ALIKE.clear()
    sequential._moments_alike(lambdas, 50, alike, 0.02)  # kept
    mean, var = sequential._moments_alike(lambdas, 50, differ, 0.02)
    want_mean, want_var = stats.round_log_factor_moments(lambdas, 50, differ, 0.02)
    assert np.array_equal(mean, want_mean) and np.array_equal(var, want_var)
    sequential._ALIKE.clear()
