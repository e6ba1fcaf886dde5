"""The README from "How many windows one agent watches" to its end: each figure it gives of
what `bench/footprint.py` runs (its defaults, its goals, its search) and of the agent's
paces (claims, retention, verdict words, the collector, the sketch) is the code's, and each
test or bench it names is there. The measured figures are the benches' (run by hand:
never as tests); what they run and how often the agent does what is checked here."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import yaml

from agent.analysis import sketch
from agent.app import build_app
from agent.retention import PRUNE_EVERY_S
from agent.settings import AnalysisSettings, EnvironmentSettings
from agent.store.sql import WINDOWS_PER_QUERY
from agent.windows import heap, lifecycle
from tests.bench_module import bench_module

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "README.md").read_text()
SECTIONS = TEXT.split("\n## How many windows one agent watches\n", 1)[1]
SAID = " ".join(SECTIONS.split())


def says(*phrases: str) -> None:
    for phrase in phrases:
        assert phrase in SAID, phrase


def test_the_footprint_runs_the_configuration_and_paces_the_readme_gives(tmp_path: Path) -> None:
    bench = bench_module("footprint")
    says(
        "`python bench/footprint.py` (default 200 windows, 600 s)",
        "(sequential policy, 10 probes per round: `--probes`, where the default is 40, an "
        "`error_rate max` and a `latency_p95 max_increase 20%` rule) at a 1 s interval",
        "`--dozen` runs 12 windows each with 10 probes and a 20/s 1 s load check per 1 s round",
    )
    assert bench.DEFAULT_WINDOWS == 200 and bench.PROBES == 10
    assert EnvironmentSettings.model_fields["probes_per_round"].default == 40
    assert AnalysisSettings.model_fields["policy"].default == "sequential"
    assert "(default 600;" in " ".join(bench.parser().format_help().split())
    by_default = bench.settled(bench.parser().parse_args([]))
    assert (by_default.windows, by_default.seconds, by_default.interval) == (200, 600.0, 1.0)
    assert bench.settled(bench.parser().parse_args(["--dozen"])).windows == 12
    for dozen in (False, True):
        run = bench.Run(3, 1.0, 600.0, dozen=dozen)
        config = yaml.safe_load(bench.write_config(tmp_path, 1, 2, run).read_text())
        for env in config["environments"].values():
            assert "analysis" not in env  # the default policy
            assert env["interval"] == "1s" and env["probes_per_round"] == 10
            rules = {(r["metric"], r.get("max"), r.get("max_increase")) for r in env["rules"]}
            assert rules == {("error_rate", 0.05, None), ("latency_p95", None, "20%")}
            loads = [c for c in env["checks"] if c["type"] == "load"]
            assert loads == ([{**loads[0], "rate": "20/s", "duration": "1s"}] if dozen else [])


def test_the_search_and_the_goals_are_the_ones_written() -> None:
    bench = bench_module("footprint")
    says(
        "p99 ≤ 100 ms with no overrun on one core, at 1 s and at 10 s",
        "20 s trials from the goal (500 at 1 s, 5,000 at 10 s;",
        "a bisection to within 15%, then a 60 s confirming run",
        "10% fewer windows until one holds, at most six",
        "and a 5 s pause",
        "at under 50 a second (at least 60 s allowed)",
        "goals: lag p99 ≤ 100 ms and no overrun, and at 200 windows RSS ≤ 150 MB, growth ≤ "
        "10 MB/h and the last minute's CPU within 10% of the first",
    )
    assert bench.LAG_GOAL_MS == 100 and bench.SEARCH_GOALS == {1.0: 500, 10.0: 5000}
    assert (bench.SEARCH_TRIAL_S, bench.SEARCH_CONFIRM_S) == (20, 60)
    assert bench.SEARCH_PRECISION == 0.15 and bench.SEARCH_CONFIRM_TRIES == 6
    assert bench.TRIAL_SETTLE_S == 5 and bench.SEARCH_REGISTER_PER_S == 50
    assert bench.register_within(500) == 60 and bench.register_within(5000) == 100
    assert bench.SEARCH_CONFIRM_STEP == 0.9
    assert (bench.RSS_GOAL_MB, bench.GROWTH_GOAL_MB_PER_H, bench.CPU_DRIFT_GOAL) == (150, 10, 0.1)


def test_the_measuring_beside_the_agent_is_the_one_written() -> None:
    bench = bench_module("footprint")
    says(
        "every 15 s meanwhile, as `config/prometheus-scrape.yml` asks (`--scrape-every`",
        "a small process times a fixed piece of pure Python every 10 s",
        "The target runs at nice -10 where the bench may (root)",
        "a light client times it 20 times a second",
        "background runs (default 120: a deploy's baseline on the defaults, an hour at 30 s,",
    )
    scrape = yaml.safe_load((ROOT / "config" / "prometheus-scrape.yml").read_text())
    assert scrape["global"]["scrape_interval"] == "15s" and bench.SCRAPE_EVERY_S == 15
    assert bench.REFERENCE_EVERY_S == 10 and bench.TARGET_NICE == -10
    assert "time.sleep(0.05)" in bench.LIGHT_CLIENT_PY
    assert bench.DEFAULT_BASELINE_RUNS == 120 == bench.LOOKBACK_S // bench.BACKGROUND_S
    assert (bench.LOOKBACK_S, bench.BACKGROUND_S) == (3600, 30)


def test_the_agents_paces_are_the_ones_written() -> None:
    says(
        "The verdict's words are rebuilt only every 30 s or 5 rounds",
        "New windows are claimed every second and read 500 per query",
        "Retention's pass (once a minute,",
        "collects the young generation every 500,000 net allocations",
        "its latency sketch (2% buckets:",
    )
    assert (lifecycle.VERDICT_REFRESH_S, lifecycle.VERDICT_REFRESH_ROUNDS) == (30, 5)
    assert inspect.signature(build_app).parameters["poll_interval"].default == 1.0
    assert WINDOWS_PER_QUERY == 500 and PRUNE_EVERY_S == 60
    assert heap.THRESHOLDS[0] == 500_000 and sketch.GAMMA == 1.02


def test_the_load_checks_rate_bench_runs_the_rates_written() -> None:
    says(
        "(`python bench/load_accuracy.py --json`: arrivals counted and time-stamped at the "
        "target, in its own process, a 10 ms target, 10 s a rate;",
        "50, 200 and 1,000 requests/s arrived at",
    )
    by_default = bench_module("load_accuracy").parser().parse_args([])
    assert (by_default.rates, by_default.duration, by_default.delay_ms) == ("50,200,1000", 10, 10)


def test_the_bounds_of_own_observability_and_where_to_add_are_the_ones_written() -> None:
    from agent.observability import NEWRELIC_SHUTDOWN_S
    from checks.registry import DEADLINE_GRACE_S

    says(
        "a stop then gives it 2 s for its last harvest",
        "otherwise the registry stops it half a second after",
    )
    assert NEWRELIC_SHUTDOWN_S == 2 and DEADLINE_GRACE_S == 0.5


def test_the_hooks_where_to_add_names_beside_those_tests_test_import_contracts_reads() -> None:
    """`CheckContext.room`, `target_errors` and `bare_value(rule)`: named by "Where to add…"
    and not among the names `test_the_names_where_to_add_points_at_are_there` looks for."""
    from agent.providers.provider_settings import ProviderSettings
    from checks.base import Check, CheckContext

    says(
        "`CheckContext.room`",
        "names its errors in `target_errors`",
        "an optional `bare_value(rule)`",
    )
    assert "room" in CheckContext.__dataclass_fields__
    assert Check.target_errors == () and callable(ProviderSettings.bare_value)


NAMED = sorted(
    set(
        re.findall(r"`(?:python )?((?:tests|bench)/[\w/]+\.py)((?: -k \w+)?)(?: --\w+)*`", SECTIONS)
    )
)


def functions_defined_in(path: str) -> set[str]:
    """The functions a file defines at module or class level (where pytest collects tests):
    parsed, so a name only in a comment, a docstring or a string does not count."""
    tree = ast.parse((ROOT / path).read_text(), path)
    found = set()
    for node in tree.body:
        within = node.body if isinstance(node, ast.ClassDef) else [node]
        found |= {f.name for f in within if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
    return found


@pytest.mark.parametrize(("path", "k"), NAMED, ids=[p + k for p, k in NAMED])
def test_each_test_and_bench_named_is_there(path: str, k: str) -> None:
    file = ROOT / path
    assert file.is_file(), path
    if k:
        keyword = k.split()[-1]
        tests = [n for n in functions_defined_in(path) if n.startswith("test_") and keyword in n]
        assert tests, (path, k)


def test_a_test_named_by_its_function_is_in_the_file_named_beside_it() -> None:
    pairs = re.findall(r"`(tests/[\w/]+\.py)`, `(test_\w+)`", SAID)
    assert pairs, "the README names no test function beside its file any more"
    for path, name in pairs:
        assert name in functions_defined_in(path), (path, name)
