"""Background runs in flight, and a window's start cutting them short.

A background run spreads its probes over a round, so one that began just before a
deploy went on beside the window's first round: measured at the target with the real
daemon (a window registered at its start, 40 probes a 1 s round), 75-78 arrivals in
that round instead of 40, the agent probing twice at once and its own load read as the
service's. And the run, stored at its end (after the deploy), probed mostly the new
release beside that round: a half sample of neither version, pooled into the next
deploy's baseline. A window that starts probing an environment now cancels its runs in
flight (nothing of them is stored) and its round stands in for them, as for a slot that
falls in a window (`BackgroundProber.owed_runs`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.windows.probing import BackgroundProber


CUT_WAIT_S = 1.0
"""How long a window's first round waits for the runs it cut to stop: a cancelled probe
stops at once; only a store write cut mid-way may take longer, and must not hold the
round (a run not stopped by then is not owed to it)."""


class InFlight:
    """The background runs running now, per environment and check."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, asyncio.Task[None]]] = {}
        self.cut_runs: set[asyncio.Task[None]] = set()
        """Runs a window cut, until their `run` returns: any other cancellation of a
        run is its caller's, and raised."""

    async def run(self, environment: str, check: str, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (one background run) where a window can cancel it (`cut`): a run cut
        so returns as if done; the caller's own cancellation cancels it too."""
        task = asyncio.create_task(work)
        self.runs.setdefault(environment, {})[check] = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        finally:
            if self.runs.get(environment, {}).get(check) is task:
                del self.runs[environment][check]
            was_cut = task in self.cut_runs
            self.cut_runs.discard(task)
        if not was_cut:
            task.result()  # its error (or cancellation), for the caller

    async def cut(self, environment: str) -> list[str]:
        """Cancel `environment`'s runs in flight and wait until they stopped (their
        probes cancelled, nothing stored), `CUT_WAIT_S` at most: the checks they ran."""
        tasks = self.runs.pop(environment, {})
        for task in tasks.values():
            if task.cancel():
                self.cut_runs.add(task)
        if tasks:
            await asyncio.wait(tasks.values(), timeout=CUT_WAIT_S)
        return [check for check, task in tasks.items() if task.cancelled()]


async def yield_to_window(prober: BackgroundProber, environment: str, deployed_at: float) -> None:
    """A window starts probing `environment`: its background runs in flight stop before
    the first round, and are owed to it (as of the deploy at the earliest, so
    `owed_runs` counts them whatever this replica's clock reads against the store's)."""
    cut = await prober.in_flight.cut(environment)
    if cut:
        at = max(prober.clock(), deployed_at)
        owed = prober.owed.setdefault(environment, {})
        for check in cut:
            owed[check] = at
