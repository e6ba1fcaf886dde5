"""The decision benchmark's cells: larger cells extend the default run's seeds, an offset
gives others, and the filters pick exactly the cells asked for (no window is simulated)."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.bench_module import bench_module


@functools.cache
def _bench() -> ModuleType:
    """bench/decisions.py, loaded once by the first test that asks: it imports scipy.stats
    (a second of CPU), which collection, on every xdist worker, then does not pay."""
    path = Path(__file__).resolve().parents[2] / "bench" / "decisions.py"
    spec = importlib.util.spec_from_file_location("decisions_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench() -> ModuleType:
    return _bench()


def _draws(seeds: list[np.random.SeedSequence]) -> list[float]:
    return [float(np.random.default_rng(s).uniform()) for s in seeds]


def test_a_larger_cell_starts_with_the_default_runs_windows(bench: ModuleType) -> None:
    default = _draws(bench.window_seeds(7, bench.REGRESSION_WINDOWS))
    larger = _draws(bench.window_seeds(7, 100))
    assert larger[: bench.REGRESSION_WINDOWS] == default
    assert len(set(larger)) == 100


def test_a_seed_offset_gives_other_windows(bench: ModuleType) -> None:
    default = set(_draws(bench.window_seeds(7, 20)))
    other = set(_draws(bench.window_seeds(7, 20, offset=1000)))
    assert not default & other


def test_the_plan_runs_the_cells_asked_for_with_their_sizes(bench: ModuleType) -> None:
    plan = bench.Plan(
        families=frozenset({"errors_x2", "aa"}),
        rates=frozenset({10}),
        regression_windows=100,
        aa_windows=30,
        seed_offset=5,
    )
    work = bench.tasks(plan)
    cells: dict[tuple[str, int], int] = {}
    for family_index, rps, windows, _, start, offset, round_s, rules in work:
        key = (bench.FAMILIES[family_index].key, rps)
        assert offset == 5 and start < windows and round_s == bench.DAEMON_ROUND_S and rules == ""
        cells[key] = cells.get(key, 0) + min(bench.CHUNK, windows - start)
    # aa runs at two error levels (1% and 0.1%): two cells of 30
    assert cells == {("errors_x2", 10): 100, ("aa", 10): 60}


def test_the_median_counting_misses_treats_a_miss_as_never(bench: ModuleType) -> None:
    """Three of four windows found at 10, 20 and 900 s: the median over all four is that of
    (10, 20, 900, never), 460 s; the same three of six leave no median (half were missed);
    of five, 900 s, and one more found, however late, can only make it sooner."""
    median = bench.median_counting_misses
    assert median([10.0, 20.0, 900.0], 4) == 460.0
    assert median([10.0, 20.0, 900.0], 6) is None
    assert median([10.0, 20.0, 900.0], 5) == 900.0
    assert median([10.0, 20.0, 30.0, 900.0], 5) == 30.0
    assert median([10.0, 20.0, 900.0, 900.0], 5) == 900.0


def test_the_onset_ratio_comes_with_an_interval_that_holds_it(bench: ModuleType) -> None:
    """Onset found at 10-14 s, from the deploy at 7-8 s: the goal's ratio of medians, 12 / 7.5,
    lies in its bootstrap interval, which is wider than a point and within the ratios the
    windows allow; misses and rollbacks before the onset (t <= 0) are left out as the goal's
    medians leave them out; a cell with one window found has no interval."""
    times = {
        ("onset_latency_x2", 10): [10.0, 11.0, 12.0, 13.0, 14.0, None, -3.0],
        ("latency_x2", 10): [7.0, 7.0, 8.0, 8.0],
        ("onset_errors_x5", 10): [40.0, None],
        ("errors_x5", 10): [30.0, 31.0],
    }
    out = bench.onset_ratios(times)
    assert set(out) == {"onset_latency_x2@10rps"}
    cell = out["onset_latency_x2@10rps"]
    assert cell["ratio"] == 12.0 / 7.5
    assert cell["windows_detected"] == [5, 4]
    low, high = cell["ci95"]
    assert low <= cell["ratio"] <= high and low < high
    assert 10.0 / 8.0 <= low <= high <= 14.0 / 7.0


def test_rounds_at_the_daemons_interval_fold_the_same_traffic(bench: ModuleType) -> None:
    """`--round-s 30` (the daemon's default `interval`) steps the judge on 30 s of the same
    simulated requests: the 30 rounds hold every request of the 900 one-second rounds, and a
    rollback is timed at a round's end."""
    assert bench.DAEMON_ROUND_S == 30
    family = next(f for f in bench.FAMILIES if f.key == "errors_x5")
    rng = np.random.default_rng(3)
    pre, deploy = bench.window_streams(rng, 10, family)
    per_second = sum(bench.observed(deploy, k)["errors"].total for k in range(bench.ROUNDS))
    per_round = sum(bench.observed(deploy, k, 30)["errors"].total for k in range(30))
    assert per_round == per_second == int(deploy.total.sum())
    at = bench.ours(pre, deploy, 30)
    assert at is not None and at % 30 == 0


def test_a_run_judges_at_the_daemons_interval_unless_asked(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole run, one small cell, without `--round-s`: the daemon's default `interval`
    (30 s, what a user runs), the report says so and times every rollback at a round's end;
    `--round-s 1` runs the README's older 1 s rounds on the same windows."""
    argv = ["decisions.py", "--json", "--families", "errors_x5", "--rates", "10"]
    argv += ["--windows-per-cell", "1", "--goal-windows", "1", "--workers", "1"]
    assert bench.Plan().round_s == bench.DAEMON_ROUND_S == 30
    cell = "errors_x5@10rps"
    medians = {}
    for extra in ([], ["--round-s", "1"]):
        monkeypatch.setattr("sys.argv", argv + extra)
        assert bench.main() == 0
        report = json.loads(capsys.readouterr().out)
        assert bench.__file__ is not None
        assert report["commit"] == bench.commit_of(Path(bench.__file__).parent)
        medians[report["round_s"]] = report["policies"]["sequential"]["time_to_detect_s"][cell]
    assert set(medians) == {30, 1}
    ttd = medians[30]["median"]
    assert ttd is not None and ttd % 30 == 0
    assert medians[1]["median"] is not None and medians[1]["median"] < ttd


def test_a_report_names_the_commit_it_ran_on(bench: ModuleType, tmp_path: Path) -> None:
    """A run records `git rev-parse --short HEAD` and whether tracked files had uncommitted
    changes (None outside git), and the text and Markdown headers print it: a saved report
    says which judge made its figures."""
    assert bench.commit_of(tmp_path) is None
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "judge.py").write_text("v1\n")
    subprocess.run([*git, "add", "judge.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "v1"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (tmp_path / "untracked.txt").write_text("not the judge\n")
    assert bench.commit_of(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "judge.py").write_text("v2\n")
    ran = bench.commit_of(tmp_path)
    assert ran == {"commit": head, "dirty": True}
    saved = json.loads(bench.read_report(bench.RESULTS))
    for report, said in (
        (saved | {"commit": ran}, f"commit {head} + uncommitted changes"),
        (saved | {"commit": {"commit": head, "dirty": False}}, f"commit {head}:"),
        (saved | {"commit": None}, "commit no git tree"),
    ):
        assert said in bench.markdown(report).split("\n")[0]
        assert said.removesuffix(":") in bench.text(report).split("\n")[0]


def test_the_readmes_tables_print_from_a_saved_run(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--from-json FILE --markdown` prints the saved default run's tables without running:
    each policy's row (false rollbacks, then each cell's detected share and median), ours by
    traffic level, and the goals it missed."""
    monkeypatch.setattr(
        "sys.argv", ["decisions.py", "--from-json", str(bench.RESULTS), "--markdown"]
    )
    assert bench.main() == 0
    out = capsys.readouterr().out
    report = json.loads(bench.read_report(bench.RESULTS))
    ours = report["policies"]["sequential"]
    cell = ours["time_to_detect_s"]["errors_x5@10rps"]["median"]
    rate = ours["false_rollback_rate"]
    low, high = ours["false_rollback_ci95"]
    frr = f"{rate:.1%} [{low:.1%}, {high:.1%}]"
    assert f"| sequential (ours) | {frr} | 100%, {cell:g} s |" in out
    assert "| errors ×5 from minute 5 @10 rps |" in out
    assert "| Kayenta-style, calibrated to ours | " in out
    assert "| sequential (ours) | 1 rps | 10 rps | 100 rps |" in out
    missed = [name for name, ok in report["acceptance"].items() if not ok]
    assert f"Goals: {len(missed)} of {len(report['acceptance'])} false (`{missed[0]}`" in out


def test_the_warning_and_onset_benches_judge_at_the_daemons_interval() -> None:
    """`bench/breach_warnings.py` and `bench/onset_delay.py` fold a window's rounds at the
    daemon's default `interval` unless `--round-s` says otherwise: a warning bench's job
    carries it, and the onset bench's crossings are counted in its rounds (a doubled latency
    at 10 req/s is caught within the window's 30 rounds, in fewer of them than at 1 s)."""
    warnings = bench_module("breach_warnings")
    decisions = warnings.bench
    jobs = warnings.jobs(0.01)
    assert {job[3] for job in jobs} == {decisions.DAEMON_ROUND_S}
    quiet = next(job for job in jobs if job[1] == 1)
    assert warnings.window(quiet)["failed"] is None
    onset = bench_module("onset_delay")
    cell, family = onset.cell_of("latency_x2")
    rng = np.random.default_rng(decisions.window_seeds(cell, 1)[0])
    pre, deploy = decisions.window_streams(rng, onset.RATE, family)
    at_30 = onset.crossings(pre, deploy, 0, 0, decisions.DAEMON_ROUND_S)
    at_1 = onset.crossings(pre, deploy, 0, 0, 1)
    assert 1 <= at_30["e"] < at_1["e"]


def test_each_policys_verdicts_are_shared_per_cell(bench: ModuleType) -> None:
    """A peer's window is `fail` where it rolled back (before the onset too: the user saw a
    rollback) and `pass` elsewhere; ours are the judge's own verdicts, inconclusive
    included, which its rollback times alone cannot tell from a pass."""
    times = {("aa", 10): [None, None, 120.0, None], ("onset_errors_x5", 10): [-30.0, 60.0]}
    peer = bench.verdict_shares(times)
    assert peer["aa@10rps"] == {"pass": 0.75, "inconclusive": 0.0, "fail": 0.25, "windows": 4}
    assert peer["onset_errors_x5@10rps"]["fail"] == 1.0
    said = {
        ("aa", 10): ["pass", "inconclusive", "fail", "inconclusive"],
        ("onset_errors_x5", 10): ["fail", "fail"],
    }
    ours = bench.verdict_shares(times, said)
    assert ours["aa@10rps"] == {"pass": 0.25, "inconclusive": 0.5, "fail": 0.25, "windows": 4}


def test_a_run_reports_the_verdicts_users_see_in_json_and_text(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--json` has each policy's (as configured and calibrated) verdict shares per cell,
    ours the judge's window decisions (a doubled error rate failed, its rollback timed),
    and the text prints them; `--markdown`, which the README's tables are tied to, not."""
    argv = ["decisions.py", "--families", "errors_x5,aa", "--rates", "10"]
    argv += ["--windows-per-cell", "1", "--goal-windows", "1", "--aa-windows", "1"]
    argv += ["--workers", "1", "--json"]
    monkeypatch.setattr("sys.argv", argv)
    assert bench.main() == 0
    report = json.loads(capsys.readouterr().out)
    for section in (report["policies"], report["calibrated"]):
        for summary in section.values():
            cells = summary["verdicts_by_family"]
            assert set(cells) == {"aa@10rps", "errors_x5@10rps"}
            for shares in cells.values():
                assert sum(shares[v] for v in bench.VERDICTS) == pytest.approx(1.0)
    ours = report["policies"]["sequential"]["verdicts_by_family"]
    assert ours["errors_x5@10rps"] == {"pass": 0, "inconclusive": 0, "fail": 1, "windows": 1}
    assert ours["aa@10rps"]["windows"] == 2  # at its two error levels
    text = bench.text(report)
    assert "Verdicts users see: pass / inconclusive / fail, % of windows" in text
    assert "errors_x5@10rps" in text.split("Verdicts users see")[1]
    saved = json.loads(bench.read_report(bench.RESULTS))
    with_verdicts = json.loads(json.dumps(saved))
    for section in (with_verdicts["policies"], with_verdicts["calibrated"]):
        for summary in section.values():
            summary["verdicts_by_family"] = ours
    assert bench.markdown(with_verdicts) == bench.markdown(saved)
    assert "Verdicts users see" in bench.text(saved)  # the saved run keeps them


def test_judging_the_error_rule_alone_reads_what_its_samples_would_give(
    bench: ModuleType,
) -> None:
    """`--rules errors` builds the error rule's baseline and rounds from the stream's counts,
    not its samples: the same observations, the same baseline (its burstiness and period
    length included), so the same decisions; the latency rule keeps its share of the
    budget, judged without data."""
    family = next(f for f in bench.FAMILIES if f.key == "bursty_aa")
    only = frozenset({"errors"})
    for rps in (1, 100):
        pre, deploy = bench.window_streams(np.random.default_rng(rps), rps, family)
        full, lean = bench.window_judge(pre, 30), bench.window_judge(pre, 30, only)
        a, b = full.base["errors"], lean.base["errors"]
        fields = ("value", "count", "total", "periods", "dispersion")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        assert lean.base["latency"] is None and lean.alpha_rule == full.alpha_rule
        for k in (0, 7, 29):
            assert bench.observed(deploy, k, 30, only) == {
                "errors": bench.observed(deploy, k, 30)["errors"]
            }


def test_a_run_prints_its_figures(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failed before: every run raised ValueError (too many values to unpack) once its
    windows were done, since tasks carried the round's length."""
    argv = ["decisions.py", "--json", "--families", "errors_x5", "--rates", "1"]
    argv += ["--windows-per-cell", "1", "--workers", "1", "--round-s", "30", "--rules", "errors"]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rules_judged"] == ["errors"] and report["round_s"] == 30
    assert "errors_x5@1rps" in report["policies"]["sequential"]["detection"]


def test_kayentas_concurrent_baseline_drifts_with_the_deploy(bench: ModuleType) -> None:
    """Kayenta's control runs beside the deploy, the same service over the same seconds, so
    it shares the deploy's slow drift. Failed before: it drew a drift of its own, so a
    service that drifts (here +-40% over hours, no regression) put the two streams' levels
    apart by up to 2 x 40%, and the classifier failed 4 of these 10 good deploys; drifting
    together, none. The error rule alone is judged (the peers are
    unchanged by it): a second a window."""
    drifting = bench.Family("aa", 0.01, drift=0.4, aa_like=True)
    cutoff = bench.PEER_DEFAULT["kayenta"]
    high = sum(
        bench.kayenta_time(
            bench.run_window(10, drifting, seed, 30, frozenset({"errors"}))["kayenta"], cutoff
        )
        is not None
        for seed in bench.window_seeds(0, 10, offset=777)
    )
    assert high == 0


def test_the_median_goal_is_judged_on_the_windows_both_detect(bench: ModuleType) -> None:
    """Issue 10's "median time to detect below Flagger's and Kayenta's wherever both detect":
    each median over the windows both detected. Ours finds five windows Flagger misses, late,
    and the five it finds sooner: its median over its own ten (550 s) is past Flagger's
    (500 s), over the five both found it is below (300 s), so the goal holds; slower on
    those five, it does not. Failed before: judged on each policy's own detections."""
    cell = ("errors_x2", 10)
    ours = [200.0, 200.0, 300.0, 300.0, 300.0, 800.0, 800.0, 800.0, 800.0, 800.0]
    flagger: list[float | None] = [500.0] * 5 + [None] * 5
    goal = "median_ttd_below_flagger_and_kayenta_where_both_detect"

    def judged(mine: list[float]) -> bool:
        peers = {"flagger": {cell: flagger}, "kayenta": {cell: [None] * 10}}
        policies = {"sequential": bench.summarise({cell: list(mine)})} | {
            peer: bench.summarise(times) for peer, times in peers.items()
        }
        both = bench.paired({cell: list(mine)}, peers)
        assert both["errors_x2@10rps"]["flagger"]["windows"] == 5
        return bool(bench.acceptance(policies, {}, both)[goal])

    assert judged(ours)
    assert not judged([600.0] * 5 + ours[5:])


def test_every_cell_a_detection_goal_is_judged_on_runs_100_windows(bench: ModuleType) -> None:
    """A goal of 95% judged on 20 windows is a coin flip (19 of 20 has the 95% interval
    [75%, 100%]): the default run gives each cell a goal of detecting every window or 95%
    of them is judged on 100 windows, the other regression cells 20, on the same seeds
    (their first 20 are the 20-window run's). Failed before: 20 in every regression cell."""
    windows = {
        f"{bench.FAMILIES[f].key}@{rps}rps": n
        for f, rps, n, _, start, *_ in bench.tasks(bench.Plan())
        if start == 0 and not bench.FAMILIES[f].aa_like
    }
    saved = json.loads(bench.read_report(bench.RESULTS))
    judged = {
        cell
        for cell in windows
        for goal in saved["acceptance"]
        if goal.startswith(f"detect_{cell}_") and "pct" in goal
    }
    assert judged == bench.GOAL_CELLS and len(judged) == 6
    assert {c: n for c, n in windows.items() if c in judged} == dict.fromkeys(judged, 100)
    assert set(windows.values()) == {20, 100}
    fewer = bench.Plan(goal_windows=bench.REGRESSION_WINDOWS)
    assert all(n == 20 for f, _, n, *_ in bench.tasks(fewer) if not bench.FAMILIES[f].aa_like)


def test_the_onset_goals_cells_run_100_windows_and_their_interval_reads_them(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The goal of a median from minute 5 at most 1.5x the one from the deploy @10 rps is
    judged on 100 windows each side, where it compared 20 onset windows with 100 from the
    deploy (on 20 its bootstrap interval spans 1.5), the first 20 the 20-window run's seeds;
    the ratio's interval is drawn from every window found on both sides. Failed before:
    the onset cells ran 20 (2 at a tenth)."""
    sizes = {
        f"{bench.FAMILIES[f].key}@{rps}rps": n
        for f, rps, n, _, start, *_ in bench.tasks(bench.Plan())
        if start == 0
    }
    cells = [f"{key}@10rps" for key in ("onset_errors_x5", "errors_x5")]
    cells += [f"{key}@10rps" for key in ("onset_latency_x2", "latency_x2")]
    assert {cell: sizes[cell] for cell in cells} == dict.fromkeys(cells, bench.GOAL_WINDOWS)
    assert sizes["onset_errors_x5@1rps"] == sizes["onset_latency_x2@100rps"] == 20
    fewer = bench.Plan(goal_windows=bench.REGRESSION_WINDOWS)
    assert {n for f, _, n, *_ in bench.tasks(fewer) if not bench.FAMILIES[f].aa_like} == {20}
    argv = ["decisions.py", "--json", "--families", "onset_errors_x5,errors_x5", "--rates", "10"]
    argv += ["--fraction", "0.1", "--workers", "1", "--rules", "errors"]
    monkeypatch.setattr("sys.argv", argv)
    assert bench.main() == 0
    report = json.loads(capsys.readouterr().out)
    times = report["policies"]["sequential"]["verdicts_by_family"]
    assert times["onset_errors_x5@10rps"]["windows"] == times["errors_x5@10rps"]["windows"] == 10
    found = report["onset_ratio"]["onset_errors_x5@10rps"]["windows_detected"]
    assert found == [10, 10]


def test_each_goal_on_a_share_prints_its_clopper_pearson_interval(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text prints beside each goal on a share of windows that share and its 95%
    Clopper-Pearson interval (the false rollbacks' at the A/A-like cell with the most), a
    report saved before `goal_intervals` existed too; a run's `--json` carries them."""
    saved = json.loads(bench.read_report(bench.RESULTS))
    saved.pop("goal_intervals", None)  # as a run saved before them
    text = bench.text(saved)
    assert "detect_errors_x2@10rps_ge_95pct  95/100 = 95.0% [95% CI 88.7%, 98.4%]" in text
    assert "frr_le_1pct_every_aa_cell  1/200 = 0.5% [95% CI 0.0%, 2.8%] (aa@1rps)" in text
    assert "  MISS median_ttd_errors_x5@10rps_le_30s\n" in text
    argv = ["decisions.py", "--json", "--families", "errors_x2", "--rates", "10"]
    argv += ["--goal-windows", "2", "--workers", "1", "--rules", "errors"]
    monkeypatch.setattr("sys.argv", argv)
    assert bench.main() == 0
    report = json.loads(capsys.readouterr().out)
    assert report["goal_windows"] == 2
    interval = report["goal_intervals"]["detect_errors_x2@10rps_ge_95pct"]
    assert interval["cell"] == "errors_x2@10rps" and interval["windows"] == 20
    low, high = interval["ci95"]
    assert low <= interval["rate"] == interval["hits"] / 20 <= high
