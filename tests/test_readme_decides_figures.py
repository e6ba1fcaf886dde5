"""The figures the README's "How Postflight decides" gives are the code's: the behaviour
tests read the constants, so a constant changed without the README (or the README without
the code) fails here."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest

from agent.analysis import Observation, Rule, exceedance_bets, rank_bets, sequential, stats
from agent.analysis.describe import change_floor
from agent.analysis.sequential import BaselineData, Kind
from agent.analysis.sketch import GAMMA
from agent.settings import AnalysisSettings
from agent.windows.checkpoint import STATE_EVERY
from agent.windows.evidence import RAW_VALUES
from tests.bench_module import bench_module
from tests.readme import README, section


def test_how_postflight_decides_figures_are_the_codes() -> None:
    said = section("How Postflight decides")
    assert f"it is stored every {STATE_EVERY} rounds" in said
    assert f"replays at most the {STATE_EVERY - 1} rounds stored after it" in said
    assert f"Stored rounds keep at most {RAW_VALUES} raw values per rule" in said
    defaults = AnalysisSettings()
    assert f"(`analysis.confidence`, default {defaults.confidence:g}," in said
    assert f"consecutive rounds, default {defaults.failure_limit}, fails the window" in section(
        "Configuration walkthrough"
    )
    assert change_floor("error_rate") == 0.001 and change_floor("latency_p95") == 0.001
    assert "(floor 0.001 for rates, 1 ms for latencies)" in said


def test_the_tests_shares_and_bets_the_section_names_are_the_codes() -> None:
    """The sequential policy's constants as the section words them (each a figure a reader
    weighs the guarantee by): the count ladder, the shares of the look, the tail and the
    detectors, the rank and exceedance tests' weights, the conformal grid."""
    said = section("How Postflight decides")
    ladder = sequential.COUNT_LADDER
    levels = [level for level, _ in ladder]
    assert f"{len(ladder)} levels from the estimate itself down to {levels[-1]:.1g}" in said
    assert all(math.isclose(b / a, sequential.COUNT_LADDER_STEP) for a, b in pairwise(levels))
    assert "in steps of x0.8, 0.3 of the weight on the first, the rest equal" in said
    assert ladder[0][1] == 0.3 and {w for _, w in ladder[1:]} == {1.0}  # relative, then scaled
    assert sequential.COUNT_LADDER_STEP == 0.8
    assert sequential.COUNT_TAIL_SHARE == 1 / 20 and "(a twentieth of the share)" in said
    assert sequential.FINAL_SHARE == 1 / 5 and "keeps a fifth of its share" in said
    assert f"gives {sequential.COUNT_START_SHARE} of its share to the test from the" in said
    assert stats.TWO_SAMPLE_DETECTOR_LEAST == 2.0 and "its bets of 2 or more per expected" in said
    densest = stats.TWO_SAMPLE_BETS[np.argsort(stats.TWO_SAMPLE_WEIGHTS)[-1]]
    assert 0.1 <= densest <= 0.4 and "0.1–0.4 per expected error" in said
    rank = sequential.RANK_MULTIPLE_WEIGHTS
    assert rank[0] == 0.6 and "(0.6 of its weight)" in said
    assert list(sequential.RANK_MULTIPLES[1:]) == [3.0, 10.0] and "3× and 10× that bet" in said
    assert sequential.EXCEEDANCE_AIMED_WEIGHT == 0.85
    assert list(sequential.EXCEEDANCE_MULTIPLE_WEIGHTS) == [0.85, 0.15]
    assert "0.85 of its weight from the deploy on its aimed bet (0.85) and 3× it (0.15)" in said
    assert exceedance_bets.TILTED_WEIGHT == 0.5 and "Half its weight is on linear bets" in said
    assert (
        exceedance_bets.TILTED_ROUND_CAP == 1.5 and "each gaining at most 1.5 nats a round" in said
    )
    assert rank_bets.EPISODE_ROUNDS + 0.5 == 3.5 and "their threshold over 3.5 a round" in said
    assert sequential.RANK_DETECTOR_SHARE == 0.3 and "gives it 0.3" in said
    assert sequential.ONSET_RATIO == 1.45 and "at most 1.45 times the evidence" in said
    assert stats.DETECTOR_BETS == 3 and "mixes only the three largest bets" in said
    assert GAMMA == 1.02 and "(conformal ranks, on a 2% log grid)" in said


def test_a_bounds_share_is_split_as_the_section_says() -> None:
    """Halves for a bare value's `max` and for an absolute count bound once the look takes
    its fifth; a relative count bound: a twentieth for the baseline's tail, a fifth for the
    look, the rest 0.86 from the deploy (0.08 of it for a look at the window's midpoint) and
    0.14 to the detector."""
    said = section("How Postflight decides")
    assert "(halves for values, and for counts under a `max`/`min` once the look at" in said
    base = BaselineData.from_observation(Observation(0.01, count=100, total=10_000, periods=50))
    alpha = 0.01

    def split(rule: Rule, kind: Kind, baseline: BaselineData | None) -> tuple[float, ...]:
        (c,) = sequential.SequentialRule(rule, baseline, kind, alpha, horizon=30).components
        return c.alpha, c.alpha_detector, c.alpha_final

    value = split(Rule("q", "prometheus", "query", max=5.0), "value", None)
    assert value == pytest.approx((alpha / 2, alpha / 2, 0.0))
    count = split(Rule("e", "checks", "error_rate", max=0.05), "proportion", None)
    assert count == pytest.approx((0.4 * alpha, 0.4 * alpha, 0.2 * alpha))
    relative = split(Rule("e", "checks", "error_rate", max_increase=1.0), "proportion", base)
    rest = alpha * (1 - 1 / 20 - 1 / 5)
    assert relative == pytest.approx((0.92 * 0.86 * rest, 0.14 * rest, 0.2 * alpha))
    assert sequential.MIDWAY_SHARE == 0.08
    assert "looks once at the window's midpoint, with 0.08 of its test from the deploy" in said


def test_the_decision_benchmarks_setup_is_the_benchs() -> None:
    """The setup the section gives `bench/decisions.py` (its windows, their rounds, traffic
    and baseline, the peers' cadence, the cells' sizes) is the bench's own default run: a
    default changed there, `--round-s` to the daemon's 30 s above all, fails here until the
    sentences (and the tables they head) say the run they came from."""
    bench = bench_module("decisions")
    said = section("How Postflight decides")
    plan = bench.Plan()
    windows = sum(n for _, _, n, _, start, *_ in bench.tasks(plan) if start == 0)
    aa_like = sum(
        n for f, _, n, _, start, *_ in bench.tasks(plan) if start == 0 and bench.FAMILIES[f].aa_like
    )
    minutes = bench.ROUNDS * bench.ROUND_S / 60
    assert plan.round_s == bench.DAEMON_ROUND_S  # what a user runs
    runs = f"replays {windows:,} simulated {minutes:g}-minute windows ({plan.round_s:g} s rounds,"
    assert f"{runs} the daemon's default `interval`; `--round-s 1` for 1 s rounds;" in said
    assert f"`python bench/decisions.py` {runs}" in said
    rates = ", ".join(f"{r}" for r in bench.TRAFFIC[:-1]) + f" and {bench.TRAFFIC[-1]}"
    assert f"from minute {bench.ONSET_S // 60:g}, at {rates} requests/s" in said
    assert f"the baseline pooled from {bench.PERIOD_S} s periods" in said
    interval = f"{bench.KAYENTA_CONFIDENCE:.0%} interval"
    assert bench.KAYENTA_FRACTION == 0.25  # "a quarter"
    assert f"the {interval} of the shift lies above a quarter of its Hodges-Lehmann" in said
    kayenta = bench.KAYENTA_INTERVAL // 60
    assert f"the allowed +{bench.TOLERANCE:.0%}, judged every {kayenta} minutes" in said
    assert f"Kayenta-style (MW {bench.KAYENTA_CONFIDENCE:g} vs a concurrent baseline," in said
    assert f"every {kayenta} min)" in said
    flagger = f"Flagger-style ({bench.PEER_INTERVAL} s × {bench.FLAGGER_THRESHOLD},"
    assert flagger in said and f"Argo-style ({bench.PEER_INTERVAL} s, failureLimit 0)" in said
    rules = [(r.metric, r.max_increase, r.max, r.min) for r in bench.RULES]
    tolerance = bench.TOLERANCE
    assert rules == [("error_rate", tolerance, None, None), ("latency_p95", tolerance, None, None)]
    assert (
        f"Rules: error rate and p95, each `max_increase {tolerance:.0%}`;"
        f" confidence {bench.CONFIDENCE:g}." in said
    )
    # the older 1 s tables ran before the goals' cells had windows of their own
    older = bench.Plan(goal_windows=bench.REGRESSION_WINDOWS)
    before = sum(n for _, _, n, _, start, *_ in bench.tasks(older) if start == 0)
    assert (
        f"({before:,} windows: {bench.AA_WINDOWS} per A/A-like cell,"
        f" {bench.REGRESSION_WINDOWS} per regression cell;" in said
    )
    goals = (
        "each cell a goal of detecting every window or 95% of them is judged on runs "
        f"{bench.GOAL_WINDOWS} windows, as do both cells of each goal on the median from minute "
        f"{bench.ONSET_S // 60} @10 rps, the other regression cells {bench.REGRESSION_WINDOWS}."
    )
    assert goals in said
    assert f"False rollbacks: 1 of {aa_like:,} A/A-like windows" in said


def test_the_default_runs_tables_are_the_saved_reports() -> None:
    """The section's tables at the daemon's 30 s rounds are what `--markdown` prints from the
    saved default run (`bench/results/decisions.json.gz`), and the sentences around them
    give its figures: a new run saved there (after a change to the judge) fails here until
    the README's tables are printed again from it."""
    bench = bench_module("decisions")
    said = section("How Postflight decides")
    report = json.loads(bench.read_report(bench.RESULTS))
    assert report["round_s"] == bench.Plan().round_s == bench.DAEMON_ROUND_S
    assert report["seed_offset"] == 0 and report["windows_per_cell"] == {
        "regression": bench.REGRESSION_WINDOWS,
        "aa_like": bench.AA_WINDOWS,
    }
    printed = bench.markdown(report).split("\n")
    tables = "\n".join(line for line in printed if line.startswith("|"))
    assert " ".join(tables.split()) in said
    assert f", {report['elapsed_s']:,.0f} s, saved as" in said
    assert "`bench/results/decisions.json.gz`; `python bench/decisions.py --from-json" in said
    ours = report["policies"]["sequential"]
    windows = sum(t["windows"] for t in ours["false_rollback_by_traffic"].values())
    false_rollbacks = round(ours["false_rollback_rate"] * windows)
    assert f"False rollbacks: {false_rollbacks} of {windows:,} A/A-like windows, 0% in" in said
    aa_like = ours["false_rollback_by_family"]
    assert len(aa_like) == 9 and max(aa_like.values()) <= 0.01  # the goal: at most 1% each
    above = {cell: rate for cell, rate in aa_like.items() if rate > 0}
    assert above == {"aa@1rps": 0.005}
    assert "0% in eight of the nine cells" in said and "0.5% (1 of 200) in `aa` @1 rps" in said
    goals = report["acceptance"]
    missed = sum(not ok for ok in goals.values())
    assert f"{missed} of the benchmark's {len(goals)} goals are false at these defaults" in said
    detail = report["acceptance_detail"]
    pairs = len(detail["slower_than_peer"])
    both = len(detail["slower_than_peer_on_windows_both_detect"])
    assert f"({pairs} cell-peer pairs, {both} on the windows both detected:" in said
    onset = report["onset_ratio"]
    low, high = onset["onset_latency_x2@10rps"]["ci95"]
    ratio = onset["onset_latency_x2@10rps"]["ratio"]
    assert f"{ratio:.2g}× [95% bootstrap {low:.2g}, {high:.3g}]; errors ×5: " in said
    assert f"errors ×5: {onset['onset_errors_x5@10rps']['ratio']:.3g}×)" in said

    def medians(key: str) -> list[float]:
        return [ours["time_to_detect_s"][f"{key}@{rps}rps"]["median"] for rps in bench.TRAFFIC]

    round_s = bench.DAEMON_ROUND_S
    assert medians("errors_x5")[1:] == [2 * round_s, 2 * round_s]  # 10 and 100 rps
    assert f"finds errors ×5 in two rounds, {2 * round_s} s, @10 and @100 rps" in said
    assert medians("latency_x2")[1:] == [2 * round_s, 2 * round_s]
    assert f"finds latency ×2 in two rounds, {2 * round_s} s, @10 and @100 rps" in said
    opening = " ".join(README.read_text().split("\n## ")[0].split())
    assert "at the default 30 s rounds and 10 requests a second or more, five times the" in opening
    assert "errors or a doubled latency in the second round" in opening


def test_the_markdown_gives_each_a_a_like_cells_false_rollbacks_to_a_tenth_of_a_percent() -> None:
    """`--markdown`'s line of false rollbacks per A/A-like cell: 1 of 200 is 0.5%, which a
    whole percent rounded to 0% (read as no false rollback at all)."""
    bench = bench_module("decisions")
    report = json.loads(bench.read_report(bench.RESULTS))
    printed = bench.markdown(report)
    for cell, rate in report["policies"]["sequential"]["false_rollback_by_family"].items():
        family, rps = cell.split("@")
        assert f"`{family}` @{rps.removesuffix('rps')} rps {rate * 100:.1f}%" in printed
