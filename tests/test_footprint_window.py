"""bench/footprint.py's `--window`: windows short enough to end within a run, so memory a
window holds shows as freed when it ends (a 150 s window let session 38 tell per-window
data from a leak), while the default run keeps its one-hour windows."""

from __future__ import annotations

import importlib.util
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
