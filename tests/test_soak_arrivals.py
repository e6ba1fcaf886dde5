"""bench/soak.py's rounds as the target saw them: each load run's first request against
its window's slots (`deployed_at + k × interval`), a slot no run arrived in counted as
passed over, from the target's clock, not the agent's stored rounds."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.bench_module import bench_module


def test_late_and_passed_over_slots_are_read_from_the_load_runs_arrivals(tmp_path: Path) -> None:
    bench = bench_module("soak")
    ports = {"targets": [1, 2], "receivers": 3}
    store_url = f"sqlite:///{tmp_path / 'postflight.db'}"
    config = bench.configuration(store_url, ports, window=120.0, interval=30.0)
    (tmp_path / "postflight.yaml").write_text(config)
    db = sqlite3.connect(tmp_path / "postflight.db")
    db.execute("CREATE TABLE windows (environment, deployed_at, ended_at, ends_at)")
    # env00: 4 slots, the third passed over, the second 2.5 s late;
    # env01: cancelled at 1045 (slots 0 and 1 due), still open windows cut at `until`
    db.execute("INSERT INTO windows VALUES ('env00', 1000.0, 1121.0, 1120.0)")
    db.execute("INSERT INTO windows VALUES ('env01', 1000.0, 1045.0, 1120.0)")
    db.execute("INSERT INTO windows VALUES ('env01', 2000.0, NULL, 2120.0)")
    db.commit()
    db.close()
    runs = [(0, 1000.2), (0, 1032.5), (0, 1090.1), (1, 1000.3), (1, 1030.1), (1, 2000.4)]
    runs.append((0, 1125.0))  # a background run after the window: not the window's
    (tmp_path / "load_runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    seen = bench.arrival_lateness(tmp_path, bench.StoreReader(store_url), until=2040.0)
    assert seen["due"] == 4 + 2 + 2
    assert seen["missed"] == 1 + 0 + 1
    assert seen["first"] == pytest.approx([200.0, 300.0, 400.0])
    assert sorted(seen["later"]) == pytest.approx([100.0, 100.0, 2500.0])
    assert seen["in_target_stall"] == []


def test_a_run_the_target_read_in_its_own_stall_is_counted_apart(tmp_path: Path) -> None:
    """The target time-stamps a request when its loop reads it: one read in the target's
    own stall may have waited in the socket, lateness that is not the agent's."""
    bench = bench_module("soak")
    store_url = f"sqlite:///{tmp_path / 'postflight.db'}"
    config = bench.configuration(store_url, {"targets": [1], "receivers": 3}, 60.0, 30.0)
    (tmp_path / "postflight.yaml").write_text(config)
    db = sqlite3.connect(tmp_path / "postflight.db")
    db.execute("CREATE TABLE windows (environment, deployed_at, ended_at, ends_at)")
    db.execute("INSERT INTO windows VALUES ('env00', 1000.0, 1061.0, 1060.0)")
    db.commit()
    db.close()
    (tmp_path / "load_runs.jsonl").write_text("[0, 1000.1]\n[0, 1034.0]\n")
    (tmp_path / "target_stalls.jsonl").write_text("[1030.5, 1033.9]\n")
    seen = bench.arrival_lateness(tmp_path, bench.StoreReader(store_url), until=2000.0)
    assert seen["first"] == pytest.approx([100.0])
    assert seen["later"] == []
    assert seen["in_target_stall"] == pytest.approx([4000.0])
    assert (seen["target_stalls"], seen["target_stall_max_s"]) == (1, pytest.approx(3.4))
