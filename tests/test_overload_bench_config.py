"""bench/overload.py's configuration: footprint's environments, each with a rollback
webhook to the bench's receiver (where rollbacks are counted). Its wrapper named
footprint's arguments, and broke (`TypeError`, the bench ran nothing) when footprint's
`environment` grew `probes`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.bench_module import bench_module


def test_every_environment_of_the_default_run_has_the_rollback_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = bench_module("overload")
    footprint = bench.footprint
    url = "http://127.0.0.1:9/rollback"
    monkeypatch.setattr(footprint, "environment", bench.with_rollback(footprint.environment, url))
    path = footprint.write_config(tmp_path, 1, 2, footprint.Run(3, 1.0, 60.0))
    environments = yaml.safe_load(path.read_text())["environments"]
    assert len(environments) == 3
    for env in environments.values():
        assert env["rollback"]["url"] == url
        assert env["probes_per_round"] == footprint.PROBES  # footprint's own settings kept
