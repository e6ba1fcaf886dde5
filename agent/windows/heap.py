"""The agent's heap: when the garbage collector runs, how long it pauses, and where memory goes.

Hundreds of windows each allocate thousands of short-lived objects a round (probe
results, observations, the judge's next state, the round's summary). With CPython's
default thresholds (700, 10, 10) a young collection runs every few hundred allocations,
so whatever a round holds for a few milliseconds (a summary waiting for its batch, an
answer waiting for its round) is promoted to the oldest generation, and a full
collection, which walks every long-lived object of every window, follows every few
seconds: pauses of hundreds of milliseconds that make every round due meanwhile late.
Larger young thresholds let round-lived objects die young; the objects that live as
long as the process (settings, imports, environments) are frozen out of the walk.

Must not change what any window does: only when the collector runs. Diagnostics
(`POSTFLIGHT_TRACEMALLOC`) are off unless asked for; they slow every allocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.metrics import Metrics

log = logging.getLogger("postflight.heap")

THRESHOLDS = (500_000, 20, 10)
"""Young generation: a collection every 500,000 net allocations (a round's objects die
before it: at 200 windows a young collection every several seconds instead of dozens a
second); middle: every 20 young ones; the oldest after 10 middle ones, and only when a
quarter of its objects are new (CPython's own rule), so cyclic garbage still goes within
the hour. At 5,000 windows @10 s the young generation holds the hundreds of thousands of
objects the rounds under way keep, and each young collection walks them all, a pause of
50-150 ms that makes the rounds due meanwhile late: the fewer young collections, the
fewer late rounds (600 s runs, README "Scale": lag p99 127 ms at 200,000, 17 ms at
500,000; 50,000 gave 190 overruns in a minute)."""

TRACEMALLOC_ENV = "POSTFLIGHT_TRACEMALLOC"
"""A directory: trace allocations from the start and write the growth between two
snapshots there (`tracemalloc-diff.txt`), to tell a leak from a warm-up."""
TRACEMALLOC_AT_ENV = "POSTFLIGHT_TRACEMALLOC_AT"
"""When the two snapshots are taken, seconds after the start (default `300,600`)."""
GC_THRESHOLDS_ENV = "POSTFLIGHT_GC_THRESHOLDS"
"""Three integers instead of `THRESHOLDS`, or `off` for CPython's defaults and nothing
frozen (for measuring; not a setting)."""


def gc_thresholds() -> tuple[int, int, int] | None:
    """`THRESHOLDS`, or those `POSTFLIGHT_GC_THRESHOLDS` gives (None for `off`); a value
    it cannot use is a ValueError naming the variable (`run` says it and exits 2)."""
    raw = os.environ.get(GC_THRESHOLDS_ENV)
    if not raw:
        return THRESHOLDS
    if raw.strip() == "off":
        return None
    try:
        values = tuple(int(x) for x in raw.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 0:
        example = ",".join(str(t) for t in THRESHOLDS)
        raise ValueError(
            f"{GC_THRESHOLDS_ENV}={raw!r}: write `off` or three integers (default {example})"
        )
    return values[0], values[1], values[2]


def diagnostic_problems() -> list[str]:
    """What `run` cannot use of the heap's diagnostic variables, said before it starts:
    read only once it was up, a mistyped one stopped it with a traceback, exit 1."""
    problems = []
    for read in (gc_thresholds, lambda: growth_tracer(make=True)):
        try:
            read()
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def tune_collector() -> None:
    """Once, when the agent has loaded its settings and built its parts: collect what
    start-up left behind, freeze the rest (it lives as long as the process, and a frozen
    object is never walked again), and raise the thresholds."""
    thresholds = gc_thresholds()
    if thresholds is None:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


class GcPauses:
    """`postflight_gc_pause_seconds`: every collection's pause, and the full ones' in
    `postflight_gc_full_pause_seconds` too, from `gc.callbacks` (two calls a collection:
    a few microseconds)."""

    def __init__(self, metrics: Metrics) -> None:
        self.every, self.full = metrics.gc_pause_seconds, metrics.gc_full_pause_seconds
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        pause = time.perf_counter() - self.started
        self.every.observe(pause)
        if info["generation"] == 2:  # the oldest: a full collection
            self.full.observe(pause)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


async def trace_growth(directory: Path, at: tuple[float, float], frames: int = 8) -> None:
    """Snapshot the traced heap at `at[0]` and `at[1]` seconds and write the 40 largest
    growths between them, by line and by call stack, to `directory`."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    await asyncio.sleep(at[0])
    first = tracemalloc.take_snapshot()
    await asyncio.sleep(at[1] - at[0])
    second = tracemalloc.take_snapshot()
    try:
        path = write_growth(directory, first, second, at, frames)
    except OSError as exc:  # a task's error would surface only at the stop, as the stop's
        log.warning("traced heap growth not written to %s: %s", directory, exc)
        return
    log.info("traced heap growth written to %s", path)


def write_growth(
    directory: Path,
    first: tracemalloc.Snapshot,
    second: tracemalloc.Snapshot,
    at: tuple[float, float],
    frames: int,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"traced heap growth from {at[0]:g}s to {at[1]:g}s after the start"]
    total = sum(s.size_diff for s in second.compare_to(first, "filename"))
    lines.append(f"total: {total / 1e6:+.2f} MB")
    for key in ("lineno", "traceback"):
        lines.append(f"\n## by {key}")
        for stat in second.compare_to(first, key)[:40]:
            lines.append(f"{stat.size_diff / 1e3:+10.1f} kB {stat.count_diff:+8d} blocks")
            shown = stat.traceback.format(limit=frames if key == "traceback" else 1)
            lines += [f"    {line}" for line in shown]
    path = directory / "tracemalloc-diff.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def growth_tracer(*, make: bool = False) -> tuple[Path, tuple[float, float]] | None:
    """Where and when `POSTFLIGHT_TRACEMALLOC` asks for the heap's growth, if it does;
    with `make`, its directory made (at start: a path it cannot write is said then)."""
    directory = os.environ.get(TRACEMALLOC_ENV)
    if not directory:
        return None
    if make:
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"{TRACEMALLOC_ENV}={directory!r}: not a directory it can write"
                f" ({exc.strerror or exc})"
            ) from None
    raw = os.environ.get(TRACEMALLOC_AT_ENV, "300,600")
    try:
        first, second = (float(x) for x in raw.split(","))
    except ValueError:
        first = second = math.nan
    if not 0 <= first < second < math.inf:
        raise ValueError(
            f"{TRACEMALLOC_AT_ENV}={raw!r}: write two times in seconds after the start,"
            " the first before the second (default 300,600)"
        )
    return Path(directory), (first, second)


@contextlib.asynccontextmanager
async def daemon_heap(metrics: Metrics) -> AsyncIterator[None]:
    """`postflight run`'s heap, once it is up: the collector tuned, its pauses measured,
    and the growth traced when asked; the callback and the tracer gone at the end."""
    pauses = GcPauses(metrics)
    pauses.install()
    tune_collector()  # its full collection is the first pause counted
    tracer = None
    if (asked := growth_tracer()) is not None:
        tracer = asyncio.create_task(trace_growth(*asked), name="heap-growth-trace")
    try:
        yield
    finally:
        pauses.remove()
        if tracer is not None:
            tracer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tracer
