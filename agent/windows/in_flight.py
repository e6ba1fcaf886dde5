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

With replicas on one store, the run in flight may be another replica's: the one holding
the environment's background lease, not the one whose window opens (measured with two
replicas on PostgreSQL, 20 probes a 2 s round: 39-40 arrivals in the window's first
round, the other replica's 17-19 of them, its run stored 1.2-1.4 s into the round). The
window's replica tells the others over the replica news (`agent.web.pg_news`, on the
channel its rounds already go out on) as it yields, and a replica that hears of a live
window in an environment where it has a run in flight cuts it (`WindowNews`): a NOTIFY
sent at once (`PgNews.at_once`; after the 50 ms a burst of writes waits, `FLUSH_S`, only
when one is waiting already) and one read of the window: heard 1-6 ms after it was told,
cut 8 ms after, 7-22 ms before that round (which begins after the window's baseline). A
NOTIFY lost (the news connection down) is made up by the next news of the window, its
first round's store; until then the run goes on, to its own end at the latest (one
round's length), and is not stored whatever it heard: a shared store keeps a run only
while no other replica holds the environment's background lease (`add_probe_summary`'s
`holder`), which the window's replica takes as it starts. A replica alone hears no
other's news, and reads nothing more.

A run cut on another replica is owed to the window as one cut here is: the replica that
cut it tells the others (`cut_news`, at once) and the window's replica, hearing it, owes
the run to its rounds (`owe`), which stand in for it. Before, nobody stood in for it, and
the next deploy's baseline pooled one run fewer for each run a window cut on another
replica (measured with two replicas on PostgreSQL: the window stood in for no run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.records import DeployWindow
    from agent.windows.probing import BackgroundProber

log = logging.getLogger("postflight.probing")


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
        so returns as if done, one that failed as it was cut raises its error; the
        caller's own cancellation cancels it too."""
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
        if not was_cut or not task.cancelled():
            # its error (or cancellation), for the caller; one cut that failed rather than
            # stopped too, where it went unretrieved (asyncio's "Task exception was never
            # retrieved" ERROR at its collection)
            task.result()
        else:
            # its CancelledError's traceback holds the run's frames, `run_check`'s with
            # the task in a local: freed now, not by a collection
            from common.tracebacks import drop_cancellation

            drop_cancellation(task)

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


CUT_SEPARATOR = "/"
"""Between a window's id and a check's name in `cut_news`: in neither (`dep_<ULID>`, a
check's name is letters, digits and `_.:-`)."""


def cut_news(window_id: str, check: str) -> str:
    """What a replica that cut its run of `check` for another replica's window tells the
    others (on the replica news, beside the windows' ids): the run is owed to the window."""
    return f"{window_id}{CUT_SEPARATOR}{check}"


def owe(prober: BackgroundProber, environment: str, checks: list[str], deployed_at: float) -> None:
    """`checks`' runs cut for a window of `environment` here are owed to its rounds (as of
    the deploy at the earliest, so `owed_runs` counts them whatever this replica's clock
    reads against the store's)."""
    at = max(prober.clock(), deployed_at)
    for check in checks:
        prober.owe(environment, check, at)


async def yield_to_window(
    prober: BackgroundProber, environment: str, deployed_at: float, window_id: str
) -> None:
    """A window starts probing `environment`: its background runs in flight stop before
    the first round, and are owed to it (`owe`). Other replicas are told first
    (`WindowNews`): theirs stop meanwhile, and are owed to it as they hear of it."""
    if prober.tell is not None:
        prober.tell(window_id)
    cut = await prober.in_flight.cut(environment)
    if cut:
        owe(prober, environment, cut, deployed_at)


KNOWN_WINDOWS = 10_000
"""How many windows' environments `WindowNews` keeps (read once each): past it, they are
forgotten and read again when news of them comes while a run is in flight."""


class WindowNews:
    """News of windows another replica changed (`agent.web.pg_news`), cutting this
    replica's background runs in flight in the environment of a window that probes it
    (`yield_to_window` tells it as it starts; each stored round tells it again). A run
    cut here is owed to that window's rounds, which are the other replica's: it is told
    (`cut_news`), and owes the run to its window as it hears of it (`heard`)."""

    def __init__(self, prober: BackgroundProber, now: Callable[[], float]) -> None:
        self.prober = prober
        self.now = now
        """The clock windows' deploys are read by (the store's, when followed)."""
        self.environment_of: dict[str, str] = {}
        self.looking: set[asyncio.Task[None]] = set()

    def heard(self, window_id: str) -> None:
        """Another replica changed `window_id`. Read only with a run in flight (in its
        environment, once that is known): a replica between runs acts on nothing. Or
        another replica cut its run for a window (`cut_news`): read once, and owed to the
        window's rounds if they are this replica's."""
        if CUT_SEPARATOR in window_id:
            self._start(self._owe(*window_id.split(CUT_SEPARATOR, 1)))
            return
        runs = self.prober.in_flight.runs
        if not any(runs.values()):
            return
        environment = self.environment_of.get(window_id)
        if environment is not None and not runs.get(environment):
            return
        self._start(self._look(window_id))

    def _start(self, look: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(look)
        self.looking.add(task)
        task.add_done_callback(self.looking.discard)

    def stop(self) -> None:
        """The background probing stopped: no read of a window's news goes on past it."""
        for task in self.looking:
            task.cancel()

    async def _read(self, window_id: str) -> DeployWindow | None:
        try:
            window = await self.prober.store.get_window(window_id)
        except Exception:  # the store away: its run is not stored either
            log.debug("window %s not read for its news", window_id, exc_info=True)
            return None
        if window is None:
            return None
        if len(self.environment_of) >= KNOWN_WINDOWS:
            self.environment_of.clear()
        self.environment_of[window_id] = window.environment
        return window

    async def _look(self, window_id: str) -> None:
        window = await self._read(window_id)
        if window is None or window.state != "watching" or window.deployed_at > self.now():
            return  # ended, or scheduled: its deploy's own news comes when it starts
        cut = await self.prober.in_flight.cut(window.environment)
        if cut:
            log.info(
                "background run of %s cut (%s): window %s on another replica probes it",
                window.environment,
                ", ".join(sorted(cut)),
                window_id,
                extra={"environment": window.environment},
            )
            if self.prober.tell is not None:  # owed to its rounds, on that replica
                for check in cut:
                    self.prober.tell(cut_news(window_id, check))

    async def _owe(self, window_id: str, check: str) -> None:
        """Another replica cut its run of `check` for `window_id`: owed to the window's
        rounds if they run here (this replica is busy with its environment), as a run cut
        here is (`yield_to_window`); nothing on any other replica."""
        window = await self._read(window_id)
        if window is None or window.state != "watching":
            return  # ended before it heard: no round left to stand in
        if not self.prober.busy(window.environment):
            return
        owe(self.prober, window.environment, [check], window.deployed_at)
        log.info(
            "background run of %s (%s) cut on another replica for window %s: owed to its rounds",
            window.environment,
            check,
            window_id,
            extra={"environment": window.environment},
        )
