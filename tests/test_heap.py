"""The daemon's heap settings: the collector tuned once, its pauses counted, growth traced."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.metrics import Metrics
from agent.windows import heap


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, whatever a test changed."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _pauses(metrics: Metrics, which: str) -> float:
    return metrics.registry.get_sample_value(f"postflight_{which}_seconds_count") or 0.0


def test_tuning_freezes_what_lives_and_raises_the_thresholds(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(heap.GC_THRESHOLDS_ENV, raising=False)
    gc.unfreeze()
    kept = [object() for _ in range(10)]  # alive now: frozen, never walked again
    heap.tune_collector()
    assert gc.get_threshold() == heap.THRESHOLDS
    assert gc.get_freeze_count() > len(kept)


def test_tuning_off_leaves_cpython_defaults(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(heap.GC_THRESHOLDS_ENV, "off")
    gc.unfreeze()
    before = gc.get_threshold()
    heap.tune_collector()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_every_collection_pause_is_counted_while_the_daemon_runs(collector: None) -> None:
    metrics = Metrics()
    async with heap.daemon_heap(metrics):
        before = {which: _pauses(metrics, which) for which in ("gc_pause", "gc_full_pause")}
        gc.collect()  # a full collection: counted in both
        gc.collect(0)  # a young one: only among every collection's
        assert _pauses(metrics, "gc_full_pause") == before["gc_full_pause"] + 1
        assert _pauses(metrics, "gc_pause") >= before["gc_pause"] + 2
        counted = {which: _pauses(metrics, which) for which in before}
    gc.collect()  # the callback is gone with the daemon
    assert {which: _pauses(metrics, which) for which in before} == counted
    assert not any(isinstance(cb, heap.GcPauses) for cb in gc.callbacks)


def test_growth_between_two_snapshots_names_the_line(tmp_path: Path) -> None:
    tracemalloc.start(4)
    try:
        first = tracemalloc.take_snapshot()
        grown = [bytearray(1000) for _ in range(1000)]  # about 1 MB, on this line
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    path = heap.write_growth(tmp_path / "trace", first, second, (1.0, 2.0), 4)
    text = path.read_text()
    assert len(grown) == 1000
    assert "from 1s to 2s" in text
    assert "test_heap.py" in text.split("## by lineno")[1].split("## by traceback")[0]
    total_mb = float(text.split("total: ")[1].split(" MB")[0])
    assert total_mb >= 1.0


def test_growth_tracer_reads_its_directory_and_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(heap.TRACEMALLOC_ENV, raising=False)
    assert heap.growth_tracer() is None
    monkeypatch.setenv(heap.TRACEMALLOC_ENV, "/tmp/where")
    monkeypatch.setenv(heap.TRACEMALLOC_AT_ENV, "60,120")
    assert heap.growth_tracer() == (Path("/tmp/where"), (60.0, 120.0))
