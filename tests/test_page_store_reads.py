"""bench/page.py --store-reads: the streams' store reads, counted by tracing each SQLite
connection the store opens. Its tracing stand-in for the store's `_connected` took the path
alone, and the store's open (which passes its busy timeout too) raised `TypeError`: the
bench ran nothing."""

from __future__ import annotations

import pytest

import agent.store.sqlite as sqlite_store
from tests.bench_module import bench_module


async def test_store_reads_counts_the_reads_of_one_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # the bench swaps the store's connect for its tracing one: put the real one back after
    monkeypatch.setattr(sqlite_store, "_connected", sqlite_store._connected)
    page = bench_module("page")
    results = await page.store_reads([0, 1], rounds=1, attempts=1, idle=0.1, as_page=False)
    assert [r["clients"] for r in results] == [0, 1]
    alone, streamed = results
    assert alone["events_per_client"] == []
    assert streamed["connect"] > 0  # the stream's first read, traced
    assert len(streamed["events_per_client"]) == 1
