"""A watch's batched round write on SQLite: the process's CPU per batch (SQLite's thread
included), for a watch's batch (`WATCH_BUSY_TIMEOUT_MS`, the rounds' `_Batched`) beside
the same batch written as any other change (no brief wait). Each watch batch sent
`PRAGMA busy_timeout` twice (250 ms, then back) until the writer kept the latest one; the
gap between the two columns is what that cost.

    python bench/batch_write.py [--windows 1] [--batches 200] [--reps 4] [--json]

`--windows`: rounds a batch (one per window, all handed at once, as at a round's start
with every window on one schedule; 1: each round alone). Runs alternate the two kinds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.records import DeployWindow, RoundRecord  # noqa: E402
from agent.store.sqlite import SqliteStore  # noqa: E402


async def batches_cpu(path: Path, windows: int, batches: int, watch: bool) -> list[float]:
    """CPU seconds of each of `batches` batches of `windows` rounds."""
    store = SqliteStore(path)
    await store.open()
    try:
        if not watch:
            store._rounds.busy_ms = None  # written as any other change
        for i in range(windows):
            await store.create_window(
                DeployWindow(f"w{i}", f"e{i}", "v1", None, None, {}, "watching", 0.0, 1e12, 0.0)
            )
        fences = {w.id: w.fence for w in await store.claim_windows("bench", 0.0, 1e12)}
        spent = []
        for n in range(1, batches + 1):
            began = time.process_time()
            await asyncio.gather(
                *(
                    store.record_round(RoundRecord(wid, n, float(n), {"n": n}), None, fence)
                    for wid, fence in fences.items()
                )
            )
            spent.append(time.process_time() - began)
        return spent
    finally:
        await store.close()


async def measured(windows: int, batches: int, reps: int) -> dict[str, float]:
    spent: dict[str, list[float]] = {"watch": [], "other": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            kinds = ("watch", "other") if rep % 2 == 0 else ("other", "watch")
            for kind in kinds:
                path = Path(tmp) / f"{kind}{rep}.db"
                spent[kind] += await batches_cpu(path, windows, batches, kind == "watch")
    figures = {f"{k}_cpu_ms_median": statistics.median(v) * 1e3 for k, v in spent.items()}
    figures["gap_us"] = (figures["watch_cpu_ms_median"] - figures["other_cpu_ms_median"]) * 1e3
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=1)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(measured(args.windows, args.batches, args.reps))
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.windows} round(s) a batch, CPU a batch (median):")
    print(f"  watch batch {figures['watch_cpu_ms_median']:.3f} ms")
    print(f"  other       {figures['other_cpu_ms_median']:.3f} ms")
    print(f"  gap         {figures['gap_us']:.0f} us")


if __name__ == "__main__":
    main()
