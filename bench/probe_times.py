"""Each probe's times inside the agent, for `bench/footprint.py --probe-times`: when it
was due, when it started, when its request was written, when its answer's last bytes
landed (the kernel's stamp: where its kept latency ends) and when the agent read them.

Not a test, and never in the agent itself: `probe_times_site/sitecustomize.py` installs
it in the agent's process when `POSTFLIGHT_PROBE_TIMES` names a file. Why: a probe's kept
latency counts from just before its write to the kernel's stamp, so an agent that reads
late adds nothing to it; what it can add is in the steps before (the write) and in how
its probes reach the target (a stalled loop starts what fell due meanwhile together, and
a target queues a bunch behind itself). Session 40: at 100 windows, 1 s, the agent's own
part before the write was 10 µs at p99; the 21% of probes started 10 ms or more late made
67% of the latencies over the p95 (their p95 7-23 ms, the on-time probes' 1.8 ms).
"""

from __future__ import annotations

import array
import atexit
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ENV = "POSTFLIGHT_PROBE_TIMES"
FIELDS = ("due", "started", "written", "landed", "read")
"""One row per answered probe, on `time.perf_counter()`'s clock: when the probe was due
on the grid (NaN: started at once, not from the grid), when the lean client started it
(`Sending.started`, where its latency counts from), when its write returned, when its
answer landed (`Parsed.done_at`: the kernel's stamp, or the read where none) and when
the agent read it (`Parsed.read_at`)."""
LATE_S = 0.010
"""Started this much after its due moment: out of a stall (the grid's own resolution,
`checks.ticks.TICK_S`, is half of it)."""
FLUSH_S = 15.0


def install(path: str) -> None:
    """Record every lean probe's answered times in `path`.<pid> (flat float64 rows)."""
    import checks.ticks as ticks
    import checks.wire as wire

    rows = array.array("d")
    due_now = [math.nan]
    start_at = ticks.Ticks.start_at

    def at_recording(self: Any, due: float, fn: Any, arg: Any) -> None:
        """A probe's start (`probing`), its due moment kept: a stall may move it on."""

        def fired(arg: Any) -> None:
            due_now[0] = due
            try:
                fn(arg)
            finally:
                due_now[0] = math.nan

        return start_at(self, due, fired, arg)

    class Conn(wire._Conn):
        __slots__ = ("written",)

        def send(self, *args: Any) -> None:
            super().send(*args)
            self.written = time.perf_counter()

    class Sending(wire.Sending):
        __slots__ = ("due",)

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            # the grid's due moment, on the loop's clock (uvloop's: milliseconds) to perf's
            self.due = due_now[0] + time.perf_counter() - self.client.loop.time()

        def _answer(self, parsed: Any, exc: BaseException | None) -> None:
            conn = self.conn
            if parsed is not None and conn is not None:
                written = getattr(conn, "written", math.nan)
                rows.extend((self.due, self.started, written, parsed.done_at, parsed.read_at))
            super()._answer(parsed, exc)

    # instrumentation: the agent's own classes swapped, in this process only, for recording ones
    ticks.Ticks.start_at = at_recording  # type: ignore[method-assign,assignment]
    wire._Conn = Conn  # type: ignore[misc]
    wire.Sending = Sending  # type: ignore[misc,assignment]
    out = Path(f"{path}.{os.getpid()}")
    done = [0]

    def flush() -> None:
        n = len(rows) // len(FIELDS) * len(FIELDS)
        if n > done[0]:
            with out.open("ab") as f:
                rows[done[0] : n].tofile(f)
            done[0] = n

    def flushing() -> None:
        while True:
            time.sleep(FLUSH_S)
            flush()

    threading.Thread(target=flushing, daemon=True).start()
    atexit.register(flush)


def read(path: str) -> np.ndarray:
    """Every row `install` wrote for `path` (from every process), as an (n, 5) array."""
    parts = []
    for file in sorted(Path(path).parent.glob(Path(path).name + ".*")):
        raw = file.read_bytes()
        width = 8 * len(FIELDS)
        parts.append(np.frombuffer(raw[: len(raw) // width * width], dtype="<f8"))
    return np.concatenate(parts).reshape(-1, len(FIELDS)) if parts else np.empty((0, 5))


def _ms(x: np.ndarray, q: float) -> float | None:
    x = x[~np.isnan(x)]
    return round(float(np.percentile(x, q)) * 1e3, 3) if len(x) else None


def summary(rows: np.ndarray) -> dict[str, Any]:
    """What the kept latencies are made of: the agent's part before the request was in
    the target's socket (at most: to when its write returned; a loopback write can return
    after the answer), the wait of the answers for the agent (not in them), how late
    probes started, how many of the agent's own requests each was written behind
    (`in_flight`), and the kept latencies of probes started on time beside those started
    `LATE_S` or more late."""
    if not len(rows):
        return {"probes": 0}
    rows = rows[np.argsort(rows[:, 2])]  # by write
    due, started, written, landed, read_at = rows.T
    kept = landed - started
    late = started - due
    in_flight = np.arange(len(rows)) - np.searchsorted(np.sort(landed), written, "right")
    tail = kept > np.percentile(kept, 95)
    timed = ~np.isnan(late)
    out: dict[str, Any] = {
        "probes": len(rows),
        "kept_ms": [_ms(kept, q) for q in (50, 95, 99)],
        "to_written_ms_p99": _ms(written - started, 99),
        "read_wait_ms_p95": _ms(read_at - landed, 95),
        "started_late_ms": [_ms(late, q) for q in (50, 95, 99)],
    }
    for name, part in (
        ("on_time", timed & (late < LATE_S)),
        ("late", timed & (late >= LATE_S)),
    ):
        out[name] = {
            "share": round(float(part.sum() / max(timed.sum(), 1)), 3),
            "share_of_tail": round(float((part & tail).sum() / max(tail.sum(), 1)), 3),
            "kept_ms_p95": _ms(kept[part], 95),
            "in_flight_p95": float(np.percentile(in_flight[part], 95)) if part.any() else None,
        }
    return out
