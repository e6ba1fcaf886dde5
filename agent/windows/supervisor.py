"""The watcher: claims active windows from the store and watches each in its own task.

Style model: arq's worker. One small class owns the loop; each window runs as a
bounded job that can never take the process down; stopping cancels the jobs,
whose state is already in the store, and hands their leases back, so the next start
(or another replica) resumes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent.integrations.events import event_url, event_url_refused, window_base_url
from agent.metrics import Metrics
from agent.providers.base import Provider
from agent.records import DeployWindow, Fence, RollbackIntent, decided_verdict
from agent.rollback.contract import resumed_from
from agent.rollback.delivery import NEWER_LOOK_S, RollbackDelivery
from agent.settings import EnvironmentSettings, Settings
from agent.stopping import StopBudget, named_for_a_stop
from agent.store.base import Lease, Store, StoreHeld
from agent.store.outages import StoreOutageLog, store_busy, store_outage, unless_outage
from agent.windows.alert_once import WindowAlerts
from agent.windows.broken import BUG_REPEATS, bug_reason, end_broken, part_of, raised_at
from agent.windows.in_flight import WindowNews, yield_to_window
from agent.windows.lifecycle import (
    WatchServices,
    WindowWatch,
    deliver_rollback,
    give_up_unconfigured,
)
from agent.windows.markers import resume_markers
from agent.windows.probing import BackgroundProber, EnvironmentProbe
from checks.sessions import TargetSessions
from common.durations import format_duration
from common.redaction import Redactor
from common.words import counted

log = logging.getLogger("postflight.watcher")

FULL_CLAIM_EVERY = 0.25
"""How often (a fraction of the lease) a claim pass reads every lease this replica holds;
the passes in between (every second, and on each new window) read only the leases they
wrote. A claim pass stops a watch only when its lease comes back with another epoch (it
lapsed and was claimed afresh, by this replica). A window another replica took is not
among the leases read at all, so no pass stops its watch: the watch finds out at its next
write (a round stored or a lease renewed, every round at most), which the store refuses
(fenced), and stops then; nothing it did meanwhile was acted on. Reading every lease each
pass cost one row per window watched, each second and on each registration: at 5,000
windows @10 s about 4% of the agent's samples (py-spy), besides SQLite's thread reading
them."""


LAPSE_MARGIN_S = 0.05
"""How long after a rollback's lease lapses the sweep looks again (a lease is lapsed once
`lease_until < now`: at the instant itself it is still held)."""

UNWATCHED_S = 5 * NEWER_LOOK_S
"""How long after a newer deploy took effect a rollback another sender holds through a
wait, still pending, is taken over to be given up (`_replaced_unwatched`): its sender,
alive, looks every `NEWER_LOOK_S` and gives it up itself; one taken from a live but slow
sender is safe all the same (fenced: it stands down, nothing sent), only noisier."""

STORE_CLOCK_EVERY_S = 10.0
"""How often the claim passes read the store's clock, which rounds are paced by when it
has one (`agent.windows.pace`): a step of it, or this machine's drift from it, is followed
within this long."""

STORE_CLOCK_TRIES = 3
"""Readings of the store's clock a claim pass makes until one is good enough to follow."""

RELEASE_TIMEOUT_S = 1.0
"""How long a stop waits for the store to give up this replica's background leases."""


class Watcher:
    """Implements `agent.appkeys.WindowEvents` for the API."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics,
        *,
        alerts: WindowAlerts,
        delivery: RollbackDelivery,
        providers: Mapping[str, Provider],
        sessions: TargetSessions,
        owner: str,
        secrets: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.0,
        background_probing: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.poll_interval = poll_interval
        self.services = WatchServices(
            store=store,
            metrics=metrics,
            alerts=alerts,
            delivery=delivery,
            providers=providers,
            owner=owner,
            lease_s=settings.store.lease,
            clock=clock,
            redact=Redactor(secrets),
        )
        self.probes = {
            name: EnvironmentProbe(name, env, sessions, metrics, secrets)
            for name, env in settings.environments.items()
        }
        self._sessions = sessions
        self._secrets = secrets
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.environments: dict[str, str] = {}
        self._by_environment: dict[str, set[str]] = {}
        """The windows watched per environment (`busy` is asked per environment)."""
        self._published: dict[str, int] = {}
        """`postflight_windows_active` as last set, per environment."""
        self.deployed_at: dict[str, float] = {}
        self.claims: dict[str, tuple[int, float]] = {}
        """Per window watched here: the epoch of our claim, and until when it holds."""
        self.watched: dict[str, DeployWindow] = {}
        """Per window watched here: the window its watch holds (whose `lease_until` the
        watch moves on each lease renewal the store accepted)."""
        self._watches: dict[str, WindowWatch] = {}
        """Per window watched here: its watch (whose round being stored a stop waits for
        before it hands the window's lease back, `_hand_back`)."""
        self._failed: dict[str, tuple[tuple[str, str], int, int]] = {}
        """Per window whose watch failed (but for a store outage): how (the exception's
        type and the line that raised it), the rounds stored then, and how many times in a
        row (`_bug_ends`)."""
        self._watch_outage = StoreOutageLog(log, "watching the window")
        self._ending_outage = StoreOutageLog(log, "ending the window as a bug")
        self._away_at: dict[str, int] = {}
        """Per window whose watch (or its end as a bug) found the store away: the rounds
        stored then. One that stored a round since ends the outage (`_watches_answered`)."""
        self._claimed_once = False
        self._full_claim_at = -math.inf
        """When the latest claim pass read every lease held (see `_claim`)."""
        self._store_clock_at = -math.inf
        """When the store's clock was last read (monotonic: see `_follow_store_clock`)."""
        self.resuming: set[str] = set()
        """Rollbacks this process took over and is sending."""
        self.marking: set[tuple[str, str]] = set()
        """Rollback markers (window, provider) this process took over and is writing."""
        self.next_lapse = math.inf
        """When the soonest lease on a pending rollback lapses, as this turn's sweep read
        it: the loop's next turn comes no later (`_turn_wait`)."""
        self._wake = asyncio.Event()
        self.prober = BackgroundProber(self.probes, store, self.busy, clock, owner=owner)
        self.background_probing = background_probing
        if background_probing:
            self.services.owed_runs = self.prober.owed_runs
            self.services.next_background_run = self.prober.next_run
            self.services.take_background = self.prober.take_for_window
            self.services.yield_background = functools.partial(yield_to_window, self.prober)
        now = functools.partial(self.services.pace.now_or, clock)  # as `busy` reads it
        self.window_news = WindowNews(self.prober, now)
        for environment in settings.environments:  # 0 while nothing is watched
            self._publish_active(environment)

    def hear_replicas(self, tell: Callable[[str], None]) -> Callable[[str], None] | None:
        """Replicas share the store and hear each other's news of windows: a window here
        tells them (`tell`) as it starts, and what this one hears (the callable returned,
        None without background probing) cuts its background runs in flight
        (`agent.windows.in_flight.WindowNews`)."""
        if not self.background_probing:
            return None
        self.prober.tell = tell
        return self.window_news.heard

    def name_replica(self, owner: str) -> None:
        """Name this replica `owner` in every lease it takes: the id the store let it
        hold at start, decided before any of its loops run."""
        self.services.owner = owner
        self.services.delivery.owner = owner
        self.prober.owner = owner

    # WindowEvents ----------------------------------------------------------

    def window_opened(self, window_id: str) -> None:
        self._wake.set()

    def window_ended(self, window_id: str) -> None:
        self._failed.pop(window_id, None)
        task = self.tasks.get(window_id)
        if task is not None:
            task.cancel()

    def busy(self, environment: str) -> bool:
        """An environment with a live window is probed by it; before a scheduled window's
        `deployed_at` the background probes go on, since they are its baseline. Read by
        the clock the window's rounds are paced by (the store's, when followed): by this
        replica's own, 3 s behind, background runs probed the new release 3 s beside its
        rounds, stored as runs before its deploy."""
        now = self.services.pace.now_or(self.clock)
        return any(
            self.deployed_at.get(window_id, now) <= now
            for window_id in self._by_environment.get(environment, ())
        )

    # the loop --------------------------------------------------------------

    async def run(self) -> None:
        prober = (
            asyncio.create_task(self.prober.run(), name="background-probing")
            if self.background_probing
            else None
        )
        outage = StoreOutageLog(log, "claiming windows")
        started = False
        try:
            while True:
                # cleared as the turn begins: a window opened or a watch ended during the
                # turn (a pass of seconds with a store slow to answer) wakes the next one
                # at once, where clearing after the turn lost that news, and a window
                # registered meanwhile waited a whole poll to be watched
                self._wake.clear()
                try:
                    if not started:
                        # in the loop, retried as a claim is: a store that did not answer
                        # at this first look once ended the loop, and with it all watching
                        await unless_outage(
                            self._resume_rollbacks(startup=True),
                            log,
                            "resuming this replica's rollbacks at startup",
                        )
                        await unless_outage(
                            self._resume_markers(startup=True), log, "resuming rollback markers"
                        )
                        started = True
                    self.next_lapse = math.inf  # a turn that fails waits a whole poll
                    await self._claim()
                    # a write, each turn whatever the load: what says the store is up
                    # again, and an idle agent's outage within a turn (`store_up`)
                    self.metrics.store_up.set(1)
                    await self._resume_rollbacks(startup=False)
                    await unless_outage(
                        self._resume_markers(startup=False), log, "resuming rollback markers"
                    )
                    outage.answered()
                    self._watches_answered()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    outage.failed(exc)
                    if store_outage(exc) and not store_busy(exc):
                        self.metrics.store_up.set(0)
                    self._wake.clear()  # a turn that failed waits a whole poll
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._turn_wait()):
                        await self._wake.wait()
        finally:
            if prober is not None:
                prober.cancel()
                self.window_news.stop()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await prober
            held = self._held_leases()
            await self._stop_windows()
            # after the windows, both at once, and bounded: a store that cannot answer
            # must not hold a stop past `shutdown_timeout` (else they lapse: a gap, no harm)
            releases = [self._hand_back(held)]
            if prober is not None:
                releases.append(self._release_background())
            await asyncio.gather(*releases)
            await self._close_checks()

    async def _release_background(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self.prober.release()

    async def _close_checks(self) -> None:
        """Close what checks keep across runs (a load check's connections), once nothing
        runs them. Every window's probe shares its environment's check configs, and with
        them these pools."""
        for probe in self.probes.values():
            await probe.close_checks()

    def _turn_wait(self) -> float:
        """Until the loop's next turn: `poll_interval`, or less when a rollback's lease
        lapses sooner. A sender killed mid-attempt left its rollback to the first sweep
        after its lease, up to a whole poll later (`bench/ha_chaos.py`'s sender_killed:
        picked up 10.3-11.1 s after the kill, of which up to 1 s was this wait)."""
        lapse = self.next_lapse + LAPSE_MARGIN_S - self.clock()
        return max(0.0, min(self.poll_interval, lapse))

    async def _follow_store_clock(self) -> None:
        """Pace the rounds by the store's clock, when it has one, read every
        `STORE_CLOCK_EVERY_S`: every replica then agrees on which slot is due and when a
        window ends, whatever its own clock says."""
        monotonic, pace = self.services.monotonic, self.services.pace
        if monotonic() - self._store_clock_at < STORE_CLOCK_EVERY_S:
            return
        # until a reading is good enough to follow, a few at once (a busy pool's is slow):
        # a watch started meanwhile would go by this replica's clock
        for _ in range(1 if pace.anchored else STORE_CLOCK_TRIES):
            sent = monotonic()
            reference = await self.store.store_time()
            answered = self._store_clock_at = monotonic()
            if reference is None:
                self._store_clock_at = math.inf  # none to follow: each watch its own pace
                return
            if pace.anchor(reference, sent, answered):
                log.info(
                    "rounds are paced by the store's clock, %+.3fs from this replica's",
                    pace() - self.clock(),
                )
            if pace.anchored:
                return

    async def _claim(self) -> None:
        await self._follow_store_clock()
        now = self.clock()
        # Before claiming anything: stop every watch whose claim may have lapsed (this
        # process was paused, or the store unreachable). Its writes would be refused
        # anyway; a window still ours is claimed again below and watched afresh.
        # One whose writes wait for a SQLite file refusing them (held, full) is not: no
        # other agent takes it meanwhile, and its rounds are kept, not refused.
        lapsed = [wid for wid in self.claims if self._held(wid) < now and not self._kept(wid)]
        if lapsed:
            # said: on-call otherwise sees only the resumed watch's "slots passed over"
            log.warning(
                "stopped watching %s (%s): %s lease may have lapsed %.1fs ago (this agent was"
                " paused or could not reach the store); one still this agent's is claimed and"
                " watched again at once, its slots meanwhile counted as passed over",
                counted(len(lapsed), "window"),
                ", ".join(sorted(lapsed)[:5]) + (", …" if len(lapsed) > 5 else ""),
                "its" if len(lapsed) == 1 else "their",
                now - min(self._held(wid) for wid in lapsed),
            )
        await self._stop(lapsed)
        if kept := sum(map(self._kept, self.claims)):
            # their lease renewed before any claim: one of a lease that lapsed meanwhile
            # took it afresh, and the rounds kept were refused as another claim's
            raise StoreHeld(
                f"the rounds of {counted(kept, 'window')} wait for the SQLite file to take"
                " writes again; claims go on once they are stored"
            )
        if not self._claimed_once:
            windows = await self.store.claim_windows(
                self.services.owner, now, self.services.lease_s, fresh=True
            )
            self._claimed_once = True
            full = True
            leases = [Lease(w.id, w.lease_epoch, self._held_until(w, now)) for w in windows]
            unwatched = {w.id: w for w in windows}
        else:
            # every second: only the leases this claim wrote (new windows, lapsed or
            # half-spent leases); which windows are held, all of them, every
            # `FULL_CLAIM_EVERY` of a lease. A new window is read in full.
            full = now - self._full_claim_at >= self.services.lease_s * FULL_CLAIM_EVERY
            if full:
                self._full_claim_at = now
            leases = await self.store.claim_leases(
                self.services.owner, now, self.services.lease_s, written_only=not full
            )
            unwatched = {}
        held = {lease.window_id: lease.epoch for lease in leases}
        if full:  # every lease held was read: the failures of a window that
            # left this watcher (cancelled or taken by another replica between its tries,
            # its watch ended) are forgotten, where they stayed until a restart
            for gone in [w for w in self._failed if w not in held and w not in self.tasks]:
                del self._failed[gone]
            for gone in [w for w in self._away_at if w not in held and w not in self.tasks]:
                del self._away_at[gone]
        await self._stop(
            wid for wid, (epoch, _) in self.claims.items() if held.get(wid, epoch) != epoch
        )
        new = [lease.window_id for lease in leases if lease.window_id not in self.tasks]
        if missing := [wid for wid in new if wid not in unwatched]:
            # in one trip: one `get_window` each kept thousands of new windows waiting
            unwatched |= {w.id: w for w in await self.store.get_windows(missing)}
        for lease in leases:
            if lease.window_id in self.tasks:
                self.claims[lease.window_id] = (lease.epoch, lease.until)
                continue
            window = unwatched.get(lease.window_id)
            # one taken or ended since the claim is left to the next poll
            if (
                window is not None
                and window.state == "watching"
                and window.lease_epoch == lease.epoch
            ):
                self._start(window, now)

    def _publish_active(self, environment: str) -> None:
        """`postflight_windows_active` of `environment`, set as one of its watches starts
        or ends (no store read): set at the end of the next claim pass, it counted a watch
        ended during a pass (seconds long with a store slow to answer) until the pass
        after, a poll later."""
        count = len(self._by_environment.get(environment, ()))
        if self._published.get(environment) != count:
            self.metrics.windows_active.labels(environment).set(count)
            self._published[environment] = count

    def _kept(self, window_id: str) -> bool:
        """Whether the window's watch has writes waiting for a SQLite file that refuses
        them for now (held by another process, its disk full: `agent.windows.held`)."""
        watch = self._watches.get(window_id)
        return watch is not None and watch.held.waiting > 0

    def _held(self, window_id: str) -> float:
        """Until when our claim on a watched window surely holds: the later of what the
        latest claim read and what its watch's own renewals stored since. A watch renews
        its lease itself; reading only the claims made this stop healthy watches whenever
        one pass of `_claim` took longer than half a lease (thousands of windows starting),
        and start them again from scratch, each losing its round in progress."""
        _, until = self.claims[window_id]
        window = self.watched.get(window_id)
        renewed = window.lease_until if window is not None else None
        return until if renewed is None else max(until, renewed)

    def _held_until(self, window: DeployWindow, now: float) -> float:
        """Until when our claim holds, as stored (a claim renews only a lease less than
        half left; the watch renews its own meanwhile)."""
        return window.lease_until if window.lease_until is not None else now + self.services.lease_s

    def _start(self, window: DeployWindow, now: float) -> None:
        task = asyncio.create_task(self._watch(window), name=f"window-{window.id}")
        self.tasks[window.id] = task
        self.environments[window.id] = window.environment
        self._by_environment.setdefault(window.environment, set()).add(window.id)
        self.deployed_at[window.id] = window.deployed_at
        self.claims[window.id] = (window.lease_epoch, self._held_until(window, now))
        self.watched[window.id] = window
        self._publish_active(window.environment)

        def done(_: asyncio.Task[None]) -> None:
            if self.tasks.get(window.id) is task:
                del self.tasks[window.id]
                self.environments.pop(window.id, None)
                watched = self._by_environment.get(window.environment, set())
                watched.discard(window.id)
                if not watched:
                    self._by_environment.pop(window.environment, None)
                    self.prober.window_ended(window.environment)  # what it owes, at once
                self.deployed_at.pop(window.id, None)
                self.claims.pop(window.id, None)
                self.watched.pop(window.id, None)
                self._watches.pop(window.id, None)
                self._publish_active(window.environment)
            self._wake.set()

        task.add_done_callback(done)

    async def _stop(self, window_ids: Iterable[str]) -> None:
        """Cancel these windows' watches and wait until they are gone."""
        tasks = [self.tasks[wid] for wid in list(window_ids) if wid in self.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, window: DeployWindow) -> None:
        env = self.settings.environments.get(window.environment)
        if env is None:
            reason = f"environment {window.environment!r} is no longer configured"
            verdict = decided_verdict("inconclusive", reason, self.clock())
            if await self.store.finish_window(
                window.id, "inconclusive", verdict, self.clock(), fence=window.fence
            ):
                self.metrics.windows_total.labels(window.environment, "inconclusive").inc()
                # the configuration changed since it was registered: said, as every end is
                log.warning(
                    "window inconclusive: %s (the configuration changed since it was registered)",
                    reason,
                    extra={"deploy_id": window.id, "environment": window.environment},
                )
            return
        watch: WindowWatch | None = None
        try:  # its making too: a bug there raised out of this task, and came back at each claim
            watch = WindowWatch(window, env, self._probe_for(window, env), self.services)
            self._watches[window.id] = watch
            await watch.run()
        except asyncio.CancelledError:
            self._failed.pop(window.id, None)
            raise
        except Exception as exc:
            # an outage of the store, or a bug: the window is kept, and retried after a
            # pause; a bug that raises alike, making no progress, ends it (`_bug_ends`)
            if await self._bug_ends(window, env, watch, exc):
                return
            await asyncio.sleep(min(env.interval, 5.0))
            with contextlib.suppress(Exception):
                await self.store.release_lease(window.id, window.fence)
        else:
            self._failed.pop(window.id, None)
            self._away_at.pop(window.id, None)

    async def _bug_ends(
        self,
        window: DeployWindow,
        env: EnvironmentSettings,
        watch: WindowWatch | None,
        exc: Exception,
    ) -> bool:
        """Log a watch's failure; True once it ended the window as a bug: the
        `BUG_REPEATS`th time in a row it failed alike (the same exception type raised by
        the same line, its message maybe naming an object or an instant; no more than one
        round stored since). A store's outage is retried for as long as it lasts, said
        once; a bug's traceback is logged once, at its first failure (each retry of it
        is one line)."""
        where = {"deploy_id": window.id, "environment": window.environment}
        rounds = (watch.window if watch is not None else window).rounds  # stored so far
        if store_outage(exc):
            self._watch_outage.failed(exc, extra=where)
            self._away_at[window.id] = rounds
            if not store_busy(exc):  # a refused transaction: the store is up
                self.metrics.store_up.set(0)
            return False
        how = (type(exc).__name__, raised_at(exc))
        before, at, times = self._failed.get(window.id, (None, 0, 0))
        # a try may store the round under way before it raises (in what the round calls
        # for: its alerts), so one round more between two tries is still no progress
        times = times + 1 if before == how and rounds - at <= 1 else 1
        self._failed[window.id] = how, rounds, times
        if times == 1:
            StoreOutageLog(log, "watching the window").failed(exc, extra=where)
            return False
        if times < BUG_REPEATS:
            log.warning(
                "watching the window failed again as before (%s: %s), %d times in a row"
                " with %s stored; retrying (at %d it ends inconclusive as a bug)",
                type(exc).__name__,
                exc,
                times,
                counted(rounds, "round"),
                BUG_REPEATS,
                extra=where,
            )
            return False
        when = f"with {counted(rounds, 'round')} stored"
        reason = bug_reason(part_of(exc), exc, self.services.redact, when)
        try:
            await end_broken(window, env, self.services, reason, exc, traced=False)
        except Exception as failed:  # the end's own write: retried as any failure
            self._ending_outage.failed(failed, extra=where)
            if store_outage(failed):
                self._away_at[window.id] = rounds
            return False
        self._failed.pop(window.id, None)
        self._away_at.pop(window.id, None)
        return True

    def _watches_answered(self) -> None:
        """The watches' outage ended once one the store was away for stored a round since,
        or none is left (ended, or gone from this replica): said once, as its start was (a
        `StoreOutageLog` made at each failure said that again at each retry of each
        window, and never its end)."""
        if any(
            (watch := self._watches.get(window_id)) is not None and watch.window.rounds > rounds
            for window_id, rounds in self._away_at.items()
        ):
            self._away_at.clear()
        if not self._away_at:
            self._watch_outage.answered()
            self._ending_outage.answered()

    def _probe_for(self, window: DeployWindow, env: EnvironmentSettings) -> EnvironmentProbe:
        """The environment's probe, or one aimed at the deployment's own URL when a deploy
        event gave one and the environment's source asks for it (§7)."""
        url = window_base_url(window.labels, env.sources)
        if url is None:
            given = event_url(window.labels, env.sources)
            why = event_url_refused(given) if given is not None else None
            if why is not None:  # once a watch: a window's each claim
                log.warning(
                    "the deploy event's URL is not probed (%s): probing base_url instead",
                    why,
                    extra={"deploy_id": window.id, "environment": window.environment},
                )
            return self.probes[window.environment]
        aimed = env.model_copy(update={"base_url": url})
        return EnvironmentProbe(
            window.environment, aimed, self._sessions, self.metrics, self._secrets
        )

    async def _resume_rollbacks(self, *, startup: bool) -> None:
        """Rollbacks whose sender is gone go on here (same body and key): those whose
        lease lapsed, and at startup also those leased to this replica's name (its
        previous process). A lease another sender still holds is left to it."""
        now = self.clock()
        pending = await self.store.pending_rollbacks()
        self.next_lapse = min(
            (i.lease_until for i in pending if i.lease_until is not None and i.lease_until >= now),
            default=math.inf,
        )
        for intent in pending:
            if intent.window_id in self.resuming:
                continue
            lapsed = intent.lease_owner is None or (intent.lease_until or 0.0) < now
            if not lapsed and not (startup and intent.lease_owner == self.services.owner):
                replaced = await self._replaced_unwatched(intent, now)
                if replaced is None:
                    continue
                intent = replaced
            window = await self.store.get_window(intent.window_id)
            if window is None:
                log.error("cannot resume rollback of %s: its window is gone", intent.window_id)
                continue
            env = self.settings.environments.get(window.environment)
            if env is None or env.rollback is None or env.rollback.dry_run:
                # nobody can send it any more, or must not: it ends failed (skipped for a
                # dry run turned on since), and pages, once
                self.resuming.add(window.id)
                task = self.services.spawn(give_up_unconfigured(window, intent, env, self.services))
                task.add_done_callback(functools.partial(self._resumed, window.id))
                continue
            log.info(
                "%s",
                resumed_from(intent, self.services.owner, startup=startup),
                extra={"deploy_id": window.id, "environment": window.environment},
            )
            self.resuming.add(window.id)
            task = self.services.spawn(deliver_rollback(window, intent, env, self.services))
            task.add_done_callback(functools.partial(self._resumed, window.id))

    async def _replaced_unwatched(
        self, intent: RollbackIntent, now: float
    ) -> RollbackIntent | None:
        """`intent`, taken from another sender that holds it through a wait
        (`Store.take_replaced_rollback`), when a newer deploy of its environment took effect
        `UNWATCHED_S` ago and it is still pending: its sender no longer looks (killed, or
        stopped under an id no agent runs any more), and its lease lasts the wait, up to
        ten minutes and a lease, all that while reading pending and paging nothing. The
        delivery then gives it up at once, as its own sender would have (or finds the
        attempt it may have taken delivered, for a target asked whether it took it)."""
        if intent.lease_owner == self.services.owner or intent.next_attempt_at is None:
            return None
        if await self.store.newer_deploy(intent.window_id, now - UNWATCHED_S) is None:
            return None  # a read first: most polls find none, and take nothing
        taken = await self.store.take_replaced_rollback(
            intent.window_id, self.services.owner, now + self.services.lease_s, now - UNWATCHED_S
        )
        if taken is not None:
            log.warning(
                "rollback for %s: a newer deploy of its environment took effect over %s ago"
                " and its sender (%s) has not given it up: taken over to give it up here",
                intent.window_id,
                format_duration(UNWATCHED_S),
                intent.lease_owner,
                extra={"deploy_id": intent.window_id},
            )
        return taken

    async def _resume_markers(self, *, startup: bool) -> None:
        """Rollback markers claimed with a window's end and left unwritten by a sender that
        died (`agent.windows.markers`); at startup also this replica's own at once."""
        owner = self.services.owner if startup else None
        await resume_markers(
            self.services, self.settings, self.services.spawn, self.marking, owner=owner
        )

    def _resumed(self, window_id: str, _: asyncio.Task[Any]) -> None:
        self.resuming.discard(window_id)

    def _held_leases(self) -> list[tuple[str, Fence, asyncio.Task[Any] | None]]:
        """At a stop, before its watches are cancelled: each window's lease as this agent
        holds it, and the write of its round in flight (or None)."""
        held = []
        for window_id, (epoch, _) in self.claims.items():
            watch = self._watches.get(window_id)
            settling = watch.settling if watch is not None else None
            held.append((window_id, Fence(self.services.owner, epoch), settling))
        return held

    async def _hand_back(self, held: list[tuple[str, Fence, asyncio.Task[Any] | None]]) -> None:
        """A clean stop gives its windows' leases back, each only while still this agent's
        (fenced), so that an agent under another replica id (a rolling update's new pod)
        claims them at its next sweep, where it waited `store.lease` for each. A window
        whose round is being stored is handed back once that write (and what it acts on)
        is done, in the drain's grace: a round stored after another agent took the window
        would be refused, and made again by it. One the stop cuts is left to lapse."""
        now = [(wid, fence) for wid, fence, settling in held if settling is None or settling.done()]
        if now:
            # bounded: a store that cannot answer must not hold a stop past its bound
            with contextlib.suppress(Exception):
                async with asyncio.timeout(RELEASE_TIMEOUT_S):
                    await self.store.release_leases(now)
        for wid, fence, settling in held:
            if settling is not None and not settling.done():
                self.services.spawn(self._hand_back_after(wid, fence, settling))

    async def _hand_back_after(
        self, window_id: str, fence: Fence, settling: asyncio.Task[Any]
    ) -> None:
        named_for_a_stop(
            f"handing back the lease of {window_id} once its round is stored (left to lapse:"
            " the next agent takes it after `store.lease`)"
        )
        await asyncio.wait({settling})
        with contextlib.suppress(Exception):  # a store away: the lease lapses, no harm
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self.store.release_leases([(window_id, fence)])

    async def _stop_windows(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self, grace: float, stop: StopBudget | None = None, keep: float = 0.0) -> None:
        """Let alerts and rollback deliveries in flight finish, within `grace` seconds
        (and `stop`'s time less `keep`: `WatchServices.drain`)."""
        await self.services.drain(grace, stop, keep)
