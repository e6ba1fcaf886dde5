"""bench/footprint.py's `--window`: windows short enough to end within a run, so memory a
window holds shows as freed when it ends (a 150 s window let session 38 tell per-window
data from a leak), while the default run keeps its one-hour windows."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[1]


def footprint() -> ModuleType:
    path = ROOT / "bench" / "footprint.py"
    spec = importlib.util.spec_from_file_location("footprint_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def bench_db(directory: Path) -> sqlite3.Connection:
    """A `postflight.db` in `directory` with the rounds' and windows' columns the bench
    reads (`read_rounds`), empty."""
    db = sqlite3.connect(directory / "postflight.db")
    db.execute("CREATE TABLE rounds (window_id, number, started_at, summary)")
    db.execute(
        "CREATE TABLE windows (deployed_at, state, ended_at, environment, verdict, baseline)"
    )
    return db


def windows(path: Path) -> set[str]:
    config = yaml.safe_load(path.read_text())
    return {env["window"] for env in config["environments"].values()}


def test_the_default_run_keeps_one_hour_windows_and_window_shortens_them(tmp_path: Path) -> None:
    bench = footprint()
    default = bench.write_config(tmp_path, 1, 2, bench.Run(3, 1.0, 600.0))
    assert windows(default) == {"1h"}
    longer = bench.write_config(tmp_path, 1, 2, bench.Run(3, 1.0, 7200.0))
    assert windows(longer) == {"2h5m"}
    short = bench.write_config(tmp_path, 1, 2, bench.Run(3, 1.0, 600.0, window=150.0))
    assert windows(short) == {"2m30s"}


def test_a_failed_window_is_reported_with_its_reason_and_figures(tmp_path: Path) -> None:
    """An A/A window the agent failed is printed with why (the verdict), not only counted."""
    bench = footprint()
    db = bench_db(tmp_path)
    rule = {"name": "errors", "outcome": "fail", "observed": 0.2, "baseline": None}
    rule |= {"threshold": "max 0.05", "detail": "20 of 100 probes failed"}
    verdict = {"reason": "errors failed at round 10", "rules": [rule, {"outcome": "pass"}]}
    baseline = {"latency": {"value": 0.002, "values": [0.001, 0.002]}}
    db.execute(
        "INSERT INTO windows VALUES (100, 'failed', 110, 'env0001', ?, ?)",
        (json.dumps(verdict), json.dumps(baseline)),
    )
    none = {"latency": {"value": None, "error": "no samples"}}
    db.execute(
        "INSERT INTO windows VALUES (100, 'watching', NULL, 'env0002', NULL, ?)",
        (json.dumps(none),),
    )
    db.commit()
    db.close()
    rounds = bench.read_rounds(tmp_path / "postflight.db", 100.0, 1.0, 200.0, 205.0)
    assert rounds.ended == {"failed": 1}
    assert rounds.with_baseline == 1  # what the failed count is out of
    assert rounds.failed == [
        {
            "environment": "env0001",
            "after_s": 10.0,
            "deployed_at": 100,
            "ended_at": 110,
            "reason": "errors failed at round 10",
            "rules": [
                {k: rule[k] for k in ("name", "observed", "baseline", "threshold", "detail")}
            ],
        }
    ]


def test_the_target_s_own_stalls_are_read_from_its_file(tmp_path: Path) -> None:
    bench = footprint()
    assert bench.target_stalls(tmp_path / "none.txt") == []
    (tmp_path / "s.txt").write_text("100.5 0.080\n101.0 0.120\n")
    assert bench.target_stalls(tmp_path / "s.txt") == [(100.5, 0.08), (101.0, 0.12)]


def test_the_probes_kept_latencies_are_read_by_minute(tmp_path: Path) -> None:
    """Beside the light client's, so a rise both share shows as the target's."""
    bench = footprint()
    db = bench_db(tmp_path)
    for n, (started, values) in enumerate([(100.5, [0.001, 0.002]), (161.0, [0.03]), (99, [9])]):
        summary = {"observations": {"latency": {"values": values}}, "lag_s": 0.0}
        db.execute("INSERT INTO rounds VALUES ('w', ?, ?, ?)", (n, started, json.dumps(summary)))
    db.execute("INSERT INTO rounds VALUES ('w', 9, 130, ?)", (json.dumps({"lag_s": 0.0}),))
    db.commit()
    db.close()
    rounds = bench.read_rounds(tmp_path / "postflight.db", 100.0, 1.0, 200.0, 205.0, 30.0)
    assert rounds.latencies_by_minute == {0: [1.0, 2.0], 2: [30.0]}


def test_the_target_and_its_light_client_run_at_a_raised_priority(tmp_path: Path) -> None:
    """The target stands in for a service on a machine of its own: on the shared machine
    at its default priority it answered slower as the others' load rose during a run, and
    A/A windows failed on latency against their earlier baselines (session 40)."""
    import os
    import time

    bench = footprint()
    target, port, _ = bench.start_target(tmp_path)
    light = None
    try:
        light = bench.Reference(None, bench.LIGHT_CLIENT_PY, str(port), raise_nice=True)
        light.start()
        expected = bench.TARGET_NICE if os.geteuid() == 0 else 0
        assert bench.nice_of(target.pid) == expected
        assert bench.nice_of(light.proc.pid) == expected
        for _ in range(600):  # its timings are read as they come (ms each)
            if len(light.timings) >= 3:
                break
            time.sleep(0.05)
        assert len(light.timings) >= 3
        assert all(ms > 0 for _, ms in light.timings)
        at = [a for a, _ in light.timings]
        assert light.between(at[0], at[-1], 0.95) == round(max(ms for _, ms in light.timings), 2)
    finally:  # the target stopped however the test ended
        if light is not None:
            light.stop()
        target.terminate()
        target.wait(timeout=10)
