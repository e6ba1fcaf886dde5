"""A window that ends while a background slot it fell in takes the environment's lease
from a shared store (a round trip of the store's, long when the store is slow to
answer): the run the slot owed to the window is run at once, as at any window's end, not
dropped at the next slot."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from agent.metrics import Metrics
from agent.store.sqlite import SqliteStore
from agent.windows.probing import BackgroundProber, EnvironmentProbe
from checks.base import Check
from checks.sessions import TargetSessions
from tests.test_background_probing import settings


class Shared(SqliteStore):
    """A store replicas share: each environment's background is leased."""

    shared = True


async def test_a_window_that_ends_as_a_slot_takes_the_lease_has_its_owed_run_at_once(
    tmp_path: Path,
) -> None:
    """Slots every 30 s; a window probes from 100 s and ends during the slot at 120 s's
    lease, taken after the slot was owed to it. Before, the loop then waited for its slot
    at 150 s, unwoken (the window's end was told to the loops waiting already), and there
    the slot's own run took the owed one's place: one run fewer (ran 0, 30, 60, 90, 150)."""
    now = 0.0
    ended = False
    ran: list[float] = []

    class Counting(BackgroundProber):
        async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
            ran.append(now)
            if now >= 150.0:
                raise asyncio.CancelledError

        async def _hold(self, name: str, *, steal: bool = False) -> bool:
            nonlocal ended
            held = await super()._hold(name, steal=steal)
            if steal and now == 120.0:  # the window ends as its slot's lease is taken
                ended = True
                self.window_ended(name)
            return held

    async def sleep(seconds: float) -> None:
        nonlocal now
        now += seconds
        await asyncio.sleep(0)

    store = Shared(tmp_path / "pf.db")
    await store.open()
    env = settings().environments["production"]
    probe = EnvironmentProbe("production", env, TargetSessions(), Metrics())
    prober = Counting(
        {"production": probe},
        store,
        busy=lambda _: now >= 100.0 and not ended,
        clock=lambda: now,
        monotonic=lambda: now,
        sleep=sleep,
    )
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await prober._probe_forever("production", probe, probe.checks[0], 30.0)
    finally:
        await store.close()
    assert ran == [0.0, 30.0, 60.0, 90.0, 120.0, 150.0]
    assert not any(prober.owed.values())  # nothing left owed
