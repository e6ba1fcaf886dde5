"""Running an environment's checks: a round's probes, and background probing between
windows that builds the pre-deploy baseline.

I/O at the edge: checks reach the target; everything returned is typed samples.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

import aiohttp

from agent.logs import log_context
from agent.metrics import Metrics
from agent.settings import EnvironmentSettings
from agent.store.base import Store, StoredProbes
from agent.store.outages import StoreOutageLog
from agent.windows.carried import CarriedProbes
from agent.windows.fingerprint import check_fingerprints
from agent.windows.in_flight import InFlight
from agent.windows.schedule import probe_step
from checks.base import Check, CheckContext, CheckResult, Sample, Target
from checks.lag import (
    SLACK_S,
    UNANSWERED,
    Dropped,
    LoopLag,
    agents_part,
    without_latency,
)
from checks.registry import Started, build_check, deadline_s, run_check, start_check
from checks.sessions import TargetSessions
from checks.ticks import ticks
from common.durations import format_duration
from common.redaction import Redactor, truncate
from common.sleeps import unless_set
from common.tracebacks import drop_cancellation
from common.words import counted

log = logging.getLogger("postflight.probing")


class EnvironmentProbe:
    """One environment's checks, built once, run against the deploy or its baseline."""

    def __init__(
        self,
        name: str,
        env: EnvironmentSettings,
        sessions: TargetSessions,
        metrics: Metrics,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.env = env
        self.sessions = sessions
        self.metrics = metrics
        self.secrets = secrets
        self.checks: list[Check] = [build_check(c) for c in env.checks]
        self._limit = Limit(env.max_concurrency)
        # Per-probe costs paid once: the session by (URL, TLS mode) and the metric children.
        self._session_of: dict[tuple[str, bool], aiohttp.ClientSession] = {}
        self._runs: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}
        self._contexts: dict[tuple[Check, Target], CheckContext] = {}
        self._dropped: dict[Dropped, Any] = {}
        self.not_sent = 0
        """Probes of a round never sent: a place under `max_concurrency` came only after
        their round's checks had ended (`run_in_round`)."""

    async def close_checks(self) -> None:
        """Close what its checks keep across runs (a load check's own connections,
        `checks.load.LoadPool`), once nothing runs them: their owner closes them, the agent
        at its stop and `postflight check` on its way out. A check whose close fails is
        logged and the rest are closed all the same."""
        for check in self.checks:
            aclose = getattr(check, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    log.exception("closing check %s failed", check.name)

    def _context(
        self, check: Check, target: Target, deadline: float | None = None, room: float = 0.0
    ) -> CheckContext:
        base_url = self.env.baseline_url if target == "baseline" else self.env.base_url
        assert base_url is not None
        verify = bool(getattr(check.config, "verify_tls", True))
        session = self._session_of.get((base_url, verify))
        if session is None or session.closed:
            session = self._session_of[base_url, verify] = self.sessions.get(base_url, verify)
        return CheckContext(
            base_url=base_url,
            session=session,
            environment=self.name,
            target=target,
            secrets=self.secrets,
            deadline=deadline,
            room=room,
        )

    async def run_once(
        self,
        check: Check,
        target: Target = "deploy",
        end: float | None = None,
        room: float = 0.0,
        late: float = 0.0,
    ) -> CheckResult:
        """One run of `check`; with an `end` (loop time), over by then whatever the target
        does — or `room` seconds after it got going, if later: when the agent itself runs
        late (a busy loop, its own concurrency limit), the target still gets its `room`, and
        the lateness shows as the agent's overrun, never as the target's timeout. `late`:
        how late its grid started it (`Ticks.late_s`; past `SLACK_S`, its latency is the
        agent's: `checks.lag.late_start`)."""
        async with self._limit:
            return await self._run_held(check, target, end, room, late)

    async def _run_held(
        self, check: Check, target: Target, end: float | None, room: float, late: float
    ) -> CheckResult:
        """`run_once`'s run, its place under `max_concurrency` held."""
        deadline = None if end is None else max(end, asyncio.get_running_loop().time() + room)
        lag = ticks().lag
        mark = lag.total()
        result = await run_check(check, self._context(check, target, deadline, room))
        result = self._attributed(result, lag, mark, late)
        self._count(check, target, result)
        return result

    async def run_in_round(
        self,
        check: Check,
        target: Target,
        end: float,
        room: float,
        late: float = 0.0,
        *,
        cut: bool = True,
    ) -> CheckResult | None:
        """`run_once` for a round's probe that found no free place under `max_concurrency`:
        None, and nothing sent, when its place comes only after the round's checks have
        ended (`end`). Why: each such probe still gets its `room` from when it goes (the
        wait is the agent's, never the target's timeout), so a target slower than the round
        lets its probes answer at that concurrency sent them out in waves past the slot, and
        the next slot was passed over (a hung target at the default 40 probes and 16 places,
        1 s rounds: round 1 ended 0.9-1.1 s late, a 3 s window ran 2 rounds and
        `failure_limit: 3` failed none). Not sending it keeps the round to its slot; the
        target's other probes of the round are its evidence. `cut` False: once sent, it
        waits its own timeout, not the round's end (a window's round: `CarriedProbes`)."""
        deadline = end if cut else None
        if self._limit.take():  # a place came free since `start_once` looked
            try:
                return await self._run_held(check, target, deadline, room, late)
            finally:
                self._limit.give()
        async with self._limit:
            if asyncio.get_running_loop().time() < end:
                return await self._run_held(check, target, deadline, room, late)
        self.not_sent += 1
        if self.not_sent == 1:
            log.warning(
                "probes of %s not sent: %d places (max_concurrency) stayed taken until their"
                " round's checks ended, by probes of a target slower than its %s rounds"
                " let %d probes answer; they are not counted either way, and more are not"
                " logged (raise max_concurrency or lower probes_per_round to keep them)",
                self.name,
                self.env.max_concurrency,
                format_duration(self.env.interval),
                self.env.probes_per_round,
                extra={"environment": self.name, "check": check.name},
            )
        return None

    def start_once(
        self,
        check: Check,
        target: Target,
        end: float | None,
        room: float,
        done: Callable[[CheckResult], None],
        late: float = 0.0,
    ) -> Started | None:
        """`run_once` without a task when the run can go at once (a free place under
        `max_concurrency`, and a check that starts from callbacks: `start_check`); `done`
        gets its result. None, and nothing started: run `run_once` instead. Stop it with
        `stop_started` (what cancelling `run_once`'s task does)."""
        if not self._limit.take():
            return None
        deadline = None if end is None else max(end, asyncio.get_running_loop().time() + room)
        lag = ticks().lag
        finished = functools.partial(self._finished, check, target, done, lag, lag.total(), late)
        # a round's probes of one check share one context (the same deadline, the round's
        # end): a check that starts from callbacks only reads it
        ctx = self._contexts.get((check, target))
        if ctx is None or ctx.deadline != deadline or ctx.room != room or ctx.session.closed:
            ctx = self._contexts[check, target] = self._context(check, target, deadline, room)
        run = start_check(check, ctx, finished)
        if run is None:
            self._limit.give()
        return run

    def stop_started(self, run: Started) -> None:
        """Cancel a run `start_once` started, if still going, and give back its place."""
        if run.cancel():
            self._limit.give()

    def _finished(
        self,
        check: Check,
        target: Target,
        done: Callable[[CheckResult], None],
        lag: LoopLag,
        mark: float,
        late: float,
        result: CheckResult,
    ) -> None:
        self._limit.give()
        result = self._attributed(result, lag, mark, late)
        self._count(check, target, result)
        done(result)

    def _attributed(
        self, result: CheckResult, lag: LoopLag, mark: float, late: float
    ) -> CheckResult:
        """`result` with what the agent made of it dropped, and the drop counted: its start
        `late` seconds after its moment and its own stall since `lag.total()` was `mark`,
        at the run's start (`checks.lag.agents_part`, which says which is named when both
        are); a run that attributed its requests or steps itself (a load run, a smoke's
        steps) has its drops counted, and only its late start looked at."""
        own = result.details.get("agent_lag")
        if own:
            for reason, count in own.items():
                if count:  # a smoke's steps, judged with nothing dropped, say 0
                    self._count_dropped(reason, count)
            stalled = unattended = 0.0
        else:
            stalled = lag.total() - mark
            unattended = lag.unattended() if stalled > SLACK_S else 0.0
        result, dropped = agents_part(result, stalled, unattended, late)
        if dropped is not None:
            self._count_dropped(dropped, 1)
        return result

    def _count_dropped(self, reason: Dropped, count: int) -> None:
        counter = self._dropped.get(reason)
        if counter is None:
            counter = self._dropped[reason] = self.metrics.samples_dropped_total.labels(
                self.name, reason
            )
        counter.inc(count)

    def _count(self, check: Check, target: Target, result: CheckResult) -> None:
        """A deploy run's metrics (runs by result, duration); a run dropped as the agent's
        (`checks.lag`) is counted in `postflight_samples_dropped_total` instead."""
        if target != "deploy" or result.details.get("dropped") == "agent_lag":
            return
        runs = self._runs.get((check.name, result.result))
        if runs is None:
            runs = self._runs[check.name, result.result] = self.metrics.check_runs_total.labels(
                self.name, check.name, result.result
            )
        runs.inc()
        durations = self._durations.get(check.name)
        if durations is None:
            durations = self._durations[check.name] = self.metrics.check_duration_seconds.labels(
                self.name, check.name
            )
        durations.observe(result.duration_s)

    async def run_round(
        self,
        interval: float,
        *,
        probes: int,
        targets: Sequence[Target] = ("deploy",),
        kinds: Callable[[Check], bool] = lambda c: True,
        on_time: bool = True,
        carry: CarriedProbes | None = None,
    ) -> list[CheckResult]:
        """Run every check of a round at once: probing checks `probes` times, evenly spread
        over the part of the round that leaves each probe its timeout or half the round,
        whichever is less; load checks once, fitted to the interval (`fit_to_round`).

        `on_time`: the round is over within `interval` whatever the target does (a probe
        still waiting at the round's end is a timeout, or with a `carry` goes on past it,
        so a slow or dead target cannot make a window's round overrun); background runs,
        on no schedule, pass False and wait for each probe's own timeout. Each probe is
        started by a timer at its time (no task sleeping until then), an http probe without
        a task at all (`start_once`); results come back in check, target, probe order; in a
        round whose loop was stalled for most of its probes, none keeps its latency
        (`_stalled_round`).

        `carry` (a window's rounds, on time): a probe is not cut at the round's end but waits
        its own timeout, and one still unanswered as the round closes counts in the round
        during which it lands, the results carried from earlier rounds coming first
        (`agent.windows.carried`)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + interval
        plan: list[tuple[float, Check, Target, float]] = []
        for check in self.checks:
            if not kinds(check):
                continue
            fitted = fit_to_round(check, interval)
            runs = 1 if fitted.once_per_round else probes
            # half the environment's round, not of this one: a round that starts late (and
            # so is short) must not shorten what the target gets to answer
            nominal = max(interval, self.env.interval) if on_time else interval
            room = min(float(fitted.config.timeout), nominal / 2)
            step = (
                probe_step(interval, self.env.interval, room, runs)
                if on_time
                else max(0.0, interval - room) / runs
            )
            # a window's probes at a phase of their step fixed by the environment's name:
            # deploys registered together run their rounds in step, and their probes, sent
            # in the same instants, were read in bursts (a 7 ms service's A/A windows read
            # +22-38% against its background runs, which start apart, and the bursts' drops
            # held its latency x2 as the agent's); a load run starts at the round's start
            phase = 0.0 if runs == 1 or not on_time else background_offset(self.name, step)
            for target in targets:
                plan.extend((start + phase + i * step, fitted, target, room) for i in range(runs))
        results = await self._launch(loop, plan, end if on_time else None, carry)
        if carry is not None:
            results[:0] = carry.take()
            self._held_back(carry)
        return self._stalled_round(results)

    def _held_back(self, carry: CarriedProbes) -> None:
        """Say once a window that probes were not sent for their check's earlier ones
        still awaited (`CarriedProbes.room_for`)."""
        if carry.held_back and not carry.said:
            carry.said = True
            log.warning(
                "probes of %s not sent: a round's share (%d) of their check's probes sent"
                " by earlier rounds were still awaiting answers within their timeout,"
                " longer than the %s rounds; they are not counted either way, and more"
                " are not logged",
                self.name,
                self.env.probes_per_round,
                format_duration(self.env.interval),
                extra={"environment": self.name},
            )

    def longest_round(self, interval: float) -> float:
        """How long `run_round(interval)` may take by design, the agent on time: the
        `interval`, or a probing check's room when longer (a round that starts late is
        short, and its probes still get their timeout or half the environment's interval,
        whichever is less). What held a round past it was not its checks' design
        (`agent.windows.late`)."""
        longest = interval
        for check in self.checks:
            if not check.once_per_round:
                room = min(float(check.config.timeout), max(interval, self.env.interval) / 2)
                longest = max(longest, room)
        return longest

    def longest_probe(self) -> float:
        """The longest a window's probe may stay in flight: its check's own timeout, with
        the registry's safety net (`deadline_s`); what the last round waits at most for
        the probes carried to it (`CarriedProbes.settle`)."""
        waits = [deadline_s(c) for c in self.checks if not c.once_per_round]
        return max(waits, default=0.0)

    def _stalled_round(self, results: list[CheckResult]) -> list[CheckResult]:
        """`results`, where most of the round's probes were caught in a stall of the
        agent's loop (`checks.lag` dropped them or their latency), without the latencies
        the rest kept, each counted as `agent_lag_latency`: a loop that stalled that often
        is late at every read (a kept latency there was measured up to 30 ms late for a
        target answering in under one; the drop rule's 5 ms floor let them through). A load
        run is weighed alone, by its own requests (`_stalled_run`)."""
        results = [self._stalled_run(r) if len(r.samples) > 1 else r for r in results]
        probes = caught = 0
        for result in results:
            if len(result.samples) > 1:
                continue  # a load run attributes each of its requests itself
            probes += 1
            details = result.details
            if details and ("latency_dropped" in details or details.get("dropped")):
                caught += 1
        if not caught or caught <= STALLED_ROUND_SHARE * probes:
            return results
        out = []
        for result in results:
            if (
                len(result.samples) != 1
                or result.samples[0].latency_s is None
                or UNANSWERED in result.details  # the target's silence, seen: no late read
            ):
                out.append(result)
                continue
            details = {**result.details, "latency_dropped": "agent_lag_round"}
            samples = (without_latency(result.samples[0]),)
            out.append(dataclasses.replace(result, samples=samples, details=details))
            self._count_dropped("agent_lag_latency", 1)
        return out

    def _stalled_run(self, run: CheckResult) -> CheckResult:
        """A load run (or a smoke run's steps) most of whose requests were caught in the
        agent's stall (dropped, or their latency), without the latencies the rest kept, each
        counted as `agent_lag_latency`: they were read by the same stalling loop, late under
        the drop rule's floor. A soak's background run at an agent's start kept 82 of its 200, p95
        71 ms where the same target's other runs read 38 ms: the baseline of a latency x2
        deploy, which passed against it. A timeout kept is the target's silence, seen
        (`checks.silence`): no late read, its latency stays."""
        lag = run.details.get("agent_lag") if run.details else None
        if not isinstance(lag, dict):
            return run
        caught = int(lag.get("agent_lag", 0)) + int(lag.get("agent_lag_latency", 0))
        requests = len(run.samples) + int(lag.get("agent_lag", 0))
        if caught <= STALLED_ROUND_SHARE * requests:
            return run
        late = [s.latency_s is not None and s.error != "timeout" for s in run.samples]
        kept = sum(late)
        if not kept:
            return run
        samples = tuple(
            without_latency(s) if read else s for s, read in zip(run.samples, late, strict=True)
        )
        self._count_dropped("agent_lag_latency", kept)
        counts = {**lag, "agent_lag_latency": int(lag.get("agent_lag_latency", 0)) + kept}
        details = {**run.details, "agent_lag": counts, "latency_dropped": "agent_lag_run"}
        return dataclasses.replace(run, samples=samples, details=details)

    async def _launch(
        self,
        loop: asyncio.AbstractEventLoop,
        plan: list[tuple[float, Check, Target, float]],
        end: float | None,
        carry: CarriedProbes | None = None,
    ) -> list[CheckResult]:
        """Start each planned run at its time; load checks (`once_per_round`) fit themselves
        to the round, every other run gets the round's end as its deadline (`run_once`).

        With a `carry` (a window's rounds), a probe waits its own timeout instead: the round
        closes when each has landed or passed the deadline it had (the round's end, or its
        room from its start if later), and those still in flight then are handed to `carry`,
        their results counted in the round that finds them landed; a probe due while a
        round's share of its check's to its target that earlier rounds sent are still in
        flight is not sent."""
        results: list[CheckResult | None] = [None] * len(plan)
        done = loop.create_future()
        left = len(plan)
        tasks: dict[int, asyncio.Task[CheckResult | None]] = {}
        started: dict[int, Started] = {}  # runs without a task, until they land
        grid = ticks()
        carrying = carry is not None and end is not None
        share = Counter((check, target) for _, check, target, _ in plan)
        flying: set[int] = set()  # counted in `carry` as in flight
        own: Counter[tuple[Check, Target]] = Counter()  # of them, by check and target
        tokens: dict[int, int] = {}  # carried runs' tokens (`CarriedProbes.adopt`)
        closed = False  # the round is over: what lands now is carried
        closing = False  # the round's deadlines passed: it waits only for its load runs
        loads = sum(1 for _, check, _, _ in plan if check.once_per_round)
        begun = 0
        closes_at = end if end is not None else 0.0
        timer: asyncio.TimerHandle | None = None

        def carried(index: int) -> bool:
            return carrying and not plan[index][1].once_per_round

        def unflown(index: int) -> None:
            if index in flying:
                flying.discard(index)
                key = plan[index][1], plan[index][2]
                own[key] -= 1
                assert carry is not None
                carry.landed(key)

        def finished(index: int, task: asyncio.Task[CheckResult | None]) -> None:
            tasks.pop(index, None)
            if task.cancelled():
                unflown(index)
                # its CancelledError's traceback holds the frames that ran the check,
                # `run_check`'s with the task in a local: freed now, not by a collection
                drop_cancellation(task)
                if not closed and not done.done():
                    done.cancel()
                return
            exc = task.exception()
            if closed:
                if exc is not None:
                    log.error("a carried probe raised", exc_info=exc)
                landed(index, None if exc is not None else task.result())
                return
            if done.done():
                return
            if exc is not None:
                done.set_exception(exc)
                return
            landed(index, task.result())

        def landed(index: int, result: CheckResult | None) -> None:
            nonlocal left, loads
            started.pop(index, None)
            unflown(index)
            if closed:
                assert carry is not None
                carry.arrived(tokens.pop(index, None), result)
                return
            if done.done():
                return
            results[index] = result  # None: not sent (`run_in_round`)
            left -= 1
            if plan[index][1].once_per_round:
                loads -= 1
            if left == 0 or (closing and loads == 0):
                finish()

        def finish() -> None:
            nonlocal closed
            done.set_result(None)
            closed = carrying  # from now on a landing is carried (the round is over)

        def close() -> None:
            nonlocal closing
            closing = True
            if loads == 0 and not done.done():
                finish()

        def begin(index: int) -> None:
            nonlocal begun, closes_at, timer
            if done.done():
                return  # the round is over (cancelled, or a run raised)
            begun += 1
            _launch_one(index)
            if carrying and begun == len(plan) and not done.done():
                timer = loop.call_at(closes_at, close)

        def _launch_one(index: int) -> None:
            nonlocal closes_at
            _, check, target, room = plan[index]
            late = grid.late_s  # from the grid; 0 when started at once
            if carried(index):
                assert carry is not None
                key = (check, target)
                if not carry.room_for(key, share[key], own[key]):
                    landed(index, None)  # a round's share still awaited: not sent
                    return
                carry.sent(key)
                flying.add(index)
                own[key] += 1
                closes_at = max(closes_at, loop.time() + room)
            if check.once_per_round:
                until = None
            else:
                landing = functools.partial(landed, index)
                deadline = None if carrying else end  # carried: its own timeout
                run = self.start_once(check, target, deadline, room, landing, late)
                if run is not None:
                    if not run.over:  # no task: its result lands from the callbacks
                        started[index] = run
                    return
                until = end
            run_one: Coroutine[Any, Any, CheckResult | None] = (
                self.run_once(check, target, until, room, late)
                if until is None
                else self.run_in_round(check, target, until, room, late, cut=not carrying)
            )
            task = loop.create_task(run_one)
            tasks[index] = task
            task.add_done_callback(functools.partial(finished, index))

        # every window's probes on one grid (`checks.ticks`): one loop timer per tick,
        # not one per probe, and probes due together share a loop iteration; those a
        # stall of the loop made late keep their spacing (`Ticks.start_at`)
        now = loop.time()
        for i, planned in enumerate(plan):
            if planned[0] <= now:
                begin(i)
            else:
                grid.start_at(planned[0], begin, i)
        kept = False
        try:
            if plan:
                await done
            kept = carrying
        finally:
            if timer is not None:
                timer.cancel()
            if not done.done():
                done.cancel()  # the starts still on the grid find the round over
            if kept:
                assert carry is not None
                for index, task in tasks.items():
                    tokens[index] = carry.adopt(task.cancel)
                for index, run in started.items():
                    tokens[index] = carry.adopt(functools.partial(self.stop_started, run))
            else:
                for task in list(tasks.values()):
                    task.cancel()
                for run in list(started.values()):
                    self.stop_started(run)
                started.clear()
                for index in list(flying):
                    unflown(index)
        return [r for r in results if r is not None]


STALLED_ROUND_SHARE = 0.5
"""A round in which more than this share of the probes were caught in the agent's stall
keeps none of its latencies (`EnvironmentProbe._stalled_round`)."""


class Limit:
    """At most `n` runs at once, first come first served, O(1) a run: `asyncio.Semaphore`
    (3.11) scans its waiters on every acquire, quadratic just when a busy agent has
    hundreds of probes queued."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, n: int) -> None:
        self._free = n
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn  # a release hands its place over: `_free` stays as it is
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release()  # handed a place, then cancelled: pass it on
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def take(self) -> bool:
        """A place now, without waiting, if one is free and nobody waits for one."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    def give(self) -> None:
        """Give back a place `take` gave."""
        self._release()

    def _release(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():  # a cancelled waiter is skipped here, never searched for
                turn.set_result(None)
                return
        self._free += 1


def fit_to_round(check: Check, room: float) -> Check:
    """`check` as a round of `room` seconds runs it, so the run ends within the round:
    a load check's warm-up is cut to what is left after its `duration`, and its duration
    to `room` (only when a round starts late: the settings refuse a duration longer
    than the interval, and an explicit warm-up that cannot fit)."""
    if not check.once_per_round:
        return check  # before any getattr: a missing field costs pydantic an exception
    config = check.config
    duration = getattr(config, "duration", None)
    warmup = getattr(config, "warmup", None)
    if duration is None or warmup is None:
        return check
    fitted = min(duration, room)
    fitted_warmup = min(warmup, max(0.0, room - fitted))
    if (fitted, fitted_warmup) == (duration, warmup):
        return check
    return build_check(config.model_copy(update={"duration": fitted, "warmup": fitted_warmup}))


def samples_of(results: Sequence[CheckResult]) -> list[Sample]:
    return [s for r in results for s in r.samples]


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """A compact, JSON-able record of background samples (kept in the store)."""
    return {
        "ok": [1 if s.ok else 0 for s in samples],
        "latency": [round(s.latency_s, 6) if s.latency_s is not None else None for s in samples],
    }


def unsummarize(check: str, summary: dict[str, Any], target: Target = "deploy") -> list[Sample]:
    return [
        Sample(
            check=check,
            ok=bool(ok),
            latency_s=lat,
            error=None if ok else "failed",
            target=target,
        )
        for ok, lat in zip(summary.get("ok", []), summary.get("latency", []), strict=False)
    ]


class BackgroundProber:
    """Between windows, keeps probing each environment's http checks at
    `background_interval`, so rules with `max_increase` on `source: checks` have a
    pre-deploy baseline. Environments with an active window are skipped: the run falls
    due (`owed_runs`) and the window's next round stands in for it. Old summaries are
    deleted by `agent.retention`."""

    def __init__(
        self,
        probes: dict[str, EnvironmentProbe],
        store: Store,
        busy: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
        *,
        owner: str = "local",
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.probes = probes
        self.store = store
        self.busy = busy
        self.owner = owner
        self.leased = bool(getattr(store, "shared", False))
        """Replicas share the store: each environment is probed by the one holding its
        background lease (`_hold`)."""
        self.clock = clock
        self.monotonic = monotonic
        """The runs' schedule's clock (asyncio's `sleep` keeps to a monotonic one)."""
        self.sleep = sleep
        self.failing: set[tuple[str, str]] = set()
        """(environment, check) whose latest background run had no probe pass: their
        failure was logged once, their recovery will be (`note_outcome`)."""
        self.owed: dict[str, dict[str, list[float]]] = {}
        """Per environment and check, each run owed to a window (`owe`), oldest first, as
        of when (`clock`): a slot that fell while a window probed it, a run its start cut
        (`agent.windows.in_flight`). Its rounds stand in for one a round each
        (`owed_runs`); one none took is run as the window ends (`window_ended`)."""
        self.freed: dict[str, asyncio.Event] = {}
        """Per environment, set when no window probes it any more (`window_ended`): its
        loops, each of which took it as its turn began, wake from the wait for their next
        slot to run what no round took."""
        self.in_flight = InFlight()
        self.tell: Callable[[str], None] | None = None
        """Tells the other replicas a window here starts probing (`yield_to_window`); None
        when no other replica can hear (a store of its own)."""
        self.due: dict[tuple[str, str], float] = {}
        """Per (environment, check), when (`clock`) its next background run here starts: in
        the past while one runs. Registration says it of a relative rule whose lookback
        holds no run yet (`next_run`)."""
        self.holding: dict[str, bool] = {}
        """On a shared store, per environment, whether this replica held its background
        lease at its last ask (`_hold`): another's runs keep another grid."""

    async def run(self) -> None:
        planned = [
            (name, probe, check, every)
            for name, probe in self.probes.items()
            for check in probe.checks
            if (every := background_every(check, probe.env)) is not None
        ]
        announce_probing(planned)
        spread = len({name for name, *_ in planned}) / BACKGROUND_STARTS_PER_S
        turns = load_turns([(n, c, e) for n, _, c, e in planned if c.once_per_round])
        async with asyncio.TaskGroup() as group:
            group.create_task(self.note_changed_checks(sorted({name for name, *_ in planned})))
            for name, probe, check, every in planned:
                first = turns.get((name, check.name))
                if first is None:
                    first = background_offset(name, min(every, spread))
                group.create_task(self._probe_forever(name, probe, check, every, first))

    async def _probe_forever(
        self, name: str, probe: EnvironmentProbe, check: Check, every: float, first: float = 0.0
    ) -> None:
        """A run every `every` seconds on a fixed grid from the first, whatever a run took:
        a run spreads its probes over up to a round (30 s by default, as long as the
        background interval), so sleeping `every` after each made the pace half the one
        configured (65 http runs an hour of the 120 the baseline is sized for). A run that
        overran its slot is followed at once by the latest slot passed, never by a burst
        of the missed ones (as rounds: `agent.windows.schedule`). The grid starts at the
        first run, `first` seconds from now: the second comes a whole period after it."""
        # this task's (and its probes') log lines name their environment, as a window's do
        log_context.set({"environment": name})
        self.due[(name, check.name)] = self.clock() + max(first, 0.0)
        if first > 0:
            await self.sleep(first)
        start, slot = self.monotonic(), 0
        outage = StoreOutageLog(log, "background probe")
        while True:
            # taken as the turn begins: a window that ends during it (as the slot takes the
            # lease from a shared store slow to answer) wakes the wait below, where one taken
            # there missed that end, and the run owed to the window was dropped at the next
            # slot
            freed = self.freed.setdefault(name, asyncio.Event())
            if self.busy(name):
                self.owe(name, check.name, self.clock())
                await self._hold(name, steal=True)  # no other replica probes it meanwhile
            else:
                self.owed.get(name, {}).pop(check.name, None)
                await self._run(name, probe, check, outage)
            slot = max(slot + 1, math.floor((self.monotonic() - start) / every))
            self.due[(name, check.name)] = self.clock() + start + slot * every - self.monotonic()
            while await self._freed_before(freed, start + slot * every - self.monotonic()):
                await self._run_left_over(name, probe, check, outage)
                freed = self.freed.setdefault(name, asyncio.Event())

    async def _run(
        self, name: str, probe: EnvironmentProbe, check: Check, outage: StoreOutageLog
    ) -> None:
        """One run, if this replica holds the environment's background."""
        if await self._hold(name):
            try:  # a window starting meanwhile cuts it (`agent.windows.in_flight`)
                run = self.probe_once(name, probe, check)
                await self.in_flight.run(name, check.name, run)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be briefly unavailable
                outage.failed(exc, extra={"environment": name, "check": check.name})
            else:
                outage.answered()

    async def _freed_before(self, freed: asyncio.Event, wait: float) -> bool:
        """Sleep `wait` seconds (to the next slot); True, at once, if the environment's
        window ended first (`window_ended` sets `freed`, or has)."""
        if wait <= 0:
            return False
        # a sleep done first (or with it) wins: what it raised is raised (a test's clock
        # ending the loop)
        ended, _ = await unless_set(freed, self.sleep(wait))
        return ended

    async def _run_left_over(
        self, name: str, probe: EnvironmentProbe, check: Check, outage: StoreOutageLog
    ) -> None:
        """The window ended owing `check` a run no round of it took (a run its start cut,
        here or on another replica, beside the slots that fell in it): run at once, one,
        so the next deploy's baseline has it, where it had one run fewer per cut. A slot's
        own run comes at its time."""
        if self.busy(name) or not self.owed.get(name, {}).pop(check.name, None):
            return
        log.info(
            "background run of %s (%s) owed to a window none of its rounds stood in for:"
            " run now that it ended",
            name,
            check.name,
            extra={"environment": name, "check": check.name},
        )
        await self._run(name, probe, check, outage)

    def owe(self, name: str, check: str, at: float) -> None:
        """One run of `check` owed to the window probing `name` now, as of `at`."""
        owed = self.owed.setdefault(name, {}).setdefault(check, [])
        owed.append(at)
        del owed[:-OWED_KEPT]

    def window_ended(self, name: str) -> None:
        """No window probes `name` any more: its loops run what its rounds did not take
        (`_run_left_over`), at once."""
        freed = self.freed.pop(name, None)
        if freed is not None:
            freed.set()

    async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
        """One background run: `background_burst(check)` probes spread over one round's
        length (as a window's round spreads them, so they measure the same latency), stored
        as one period. A burst per run gives the baseline enough samples for the rules'
        bounds, and lets `merge` measure how bursty errors are within a period."""
        burst = background_burst(check, probe.env)
        span = min(probe.env.interval, probe.env.background_interval)
        results = await probe.run_round(
            span, probes=burst, kinds=lambda c: c is check, on_time=False
        )
        self.note_outcome(name, probe, check, results)
        now = self.clock()
        summary = summarize([s for r in results for s in r.samples])
        fingerprint = check_fingerprints(probe.env).get(check.name)
        # on a shared store, kept only while no other replica holds the lease: one whose
        # window took it meanwhile cuts the run as it hears of it (`agent.windows.in_flight`),
        # and a run it was not heard for (its news lost) is left out all the same
        holder = self.owner if self.leased else None
        kept = await self.store.add_probe_summary(
            name, check.name, now, summary, fingerprint, holder=holder
        )
        if not kept:
            log.info(
                "background run of %s (%s) not stored: another replica took its background"
                " lease meanwhile (a window there probes it)",
                name,
                check.name,
                extra={"environment": name, "check": check.name},
            )

    async def _hold(self, name: str, *, steal: bool = False) -> bool:
        """Whether this replica probes `name` now: always on a store of its own; on a
        shared one, while it holds the environment's background lease, renewed at each
        slot (`background_lease` long, so it outlasts the gap to its next), and taken
        when another replica's lapsed or was given up. A store that cannot answer holds
        nothing: no run is stored then anyway."""
        if not self.leased:
            return True
        now = self.clock()
        until = now + background_lease(self.probes[name])
        held = False
        try:
            held = await self.store.take_background(name, self.owner, now, until, steal=steal)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("background lease not taken", exc_info=True, extra={"environment": name})
        self.holding[name] = held
        return held

    async def take_for_window(self, name: str) -> None:
        """A window starts probing `name` on this replica: take its background lease now,
        so the replica holding it stops at its next slot, not after this one's next slot
        (a load-only environment's: up to 10 minutes of runs beside the window's rounds).
        This replica's slots keep it while the window runs (`_probe_forever`)."""
        if name in self.probes:
            await self._hold(name, steal=True)

    async def release(self) -> None:
        """Give up this replica's background leases (a clean stop): the others take them
        at their next slots."""
        if self.leased:
            await self.store.release_background(self.owner)

    def next_run(self, name: str, check: str) -> float | None:
        """When (`clock`) the next background run of `check` in environment `name` starts
        here, in the past while one runs; None where none is planned (a check that runs
        only in windows, background probing off, before probing starts), or here unknown:
        on a shared store, the environment's runs are another replica's, on its grid,
        unless this one held their lease at its last slot."""
        if self.leased and not self.holding.get(name, False):
            return None
        return self.due.get((name, check))

    def owed_runs(self, name: str, since: float) -> list[str]:
        """The checks owed a run (`owe`) as of `since` (a window's deploy) or later, while
        that window probed `name`: its round stands in for one run of each
        (`agent.windows.lifecycle`), the rest left to its next rounds. Older ones (a
        window before's) are dropped. Before, the runs owed were one per check, a slot
        falling before the round that stood in for a cut run being taken as that run."""
        owed = self.owed.get(name) or {}
        due: list[str] = []
        for check, times in list(owed.items()):
            times[:] = [at for at in times if at >= since]
            if times:
                times.pop(0)
                due.append(check)
            if not times:
                del owed[check]
        if not owed:
            self.owed.pop(name, None)
        return due

    def note_outcome(
        self, name: str, probe: EnvironmentProbe, check: Check, results: Sequence[CheckResult]
    ) -> None:
        """Log when a check's background runs start failing (no probe of a run passed) and
        when they recover, once each, not once a run: a wrong `base_url` otherwise shows
        only in `postflight_check_runs_total{result="fail"}` until the first deploy. A
        probe is a request: a load run over its allowed error share (4 of 200 against a
        healthy service's 0.5%) is one failed check run, not a target that never answers."""
        sampled = [r for r in results if r.samples]
        if not sampled:
            return  # every probe (or request) dropped as the agent's own lag: nothing learnt
        key = (name, check.name)
        failed = not any(sample.ok for r in sampled for sample in r.samples)
        if failed and key not in self.failing:
            self.failing.add(key)
            first = next((r.message for r in results if r.message), "no message")
            log.warning(
                "background probing of %s failing: every probe of check %s failed, the"
                " first with: %s (its baseline has no passing probe until it recovers;"
                " check base_url)",
                name,
                check.name,
                truncate(Redactor(probe.secrets).text(first), FAILURE_MESSAGE_LIMIT),
                extra={"environment": name, "check": check.name},
            )
        elif not failed and key in self.failing:
            self.failing.discard(key)
            log.info(
                "background probing of %s recovered: check %s passes again",
                name,
                check.name,
                extra={"environment": name, "check": check.name},
            )

    async def note_changed_checks(self, environments: Sequence[str]) -> None:
        """Log once per environment whose stored runs of the lookback its baselines leave
        out, since they probed another target or definition than its checks now have: a
        user whose baseline starts afresh after a restart learns why. One small query per
        environment, one after another, beside the probing (never holding it up).
        Informative only: a store that cannot answer is left to the probes to report."""
        for name in environments:
            env = self.probes[name].env
            try:
                stored = await self.store.probe_fingerprints(name, self.clock() - env.lookback)
            except Exception:
                log.debug("stored background runs not compared", exc_info=True)
                return
            stale = stale_runs(stored, check_fingerprints(env))
            if stale:
                log.info(
                    "background baseline starts afresh: %d stored run(s) of %s probed another"
                    " target or definition than configured now (base_url or the check"
                    " changed, or they were stored before runs kept what they probed);"
                    " baselines leave them out",
                    sum(s.runs for s in stale),
                    ", ".join(sorted({s.check for s in stale})),
                    extra={"environment": name},
                )


FAILURE_MESSAGE_LIMIT = 300
"""How much of a failing background probe's message its warning quotes."""

ANNOUNCED_ENVIRONMENTS = 10
"""The start line names at most this many environments (and counts the rest)."""


def announce_probing(planned: Sequence[tuple[str, EnvironmentProbe, Check, float]]) -> None:
    """Say at start which environments are probed between windows, where, and how often:
    the base_url a baseline is built from is then in the log before any deploy needs it.
    One line, however many environments (thousands start at once on a big agent)."""
    if not planned:
        log.info("background probing: no environment has a background check")
        return
    by_env: dict[str, list[str]] = {}
    urls: dict[str, str] = {}
    for name, probe, check, every in planned:
        by_env.setdefault(name, []).append(f"{check.name} every {format_duration(every)}")
        urls[name] = Redactor(probe.secrets).text(probe.env.base_url or "")
    names = sorted(by_env)
    shown = [
        f"{name} at {urls[name]} ({', '.join(by_env[name])})"
        for name in names[:ANNOUNCED_ENVIRONMENTS]
    ]
    more = len(names) - len(shown)
    log.info(
        "background probing %s between windows: %s%s",
        counted(len(names), "environment"),
        "; ".join(shown),
        f"; and {more} more" if more else "",
    )


def stale_runs(stored: Sequence[StoredProbes], current: Mapping[str, str]) -> list[StoredProbes]:
    """The stored runs of checks still configured whose fingerprint is not the check's
    now (None included): what its baselines leave out. Runs of a check no longer
    configured are left out too, but no baseline of a check it has restarts for them."""
    return [s for s in stored if s.check in current and s.fingerprint != current[s.check]]


OWED_KEPT = 16
"""The most runs a check keeps owed to a window (`BackgroundProber.owe`): its rounds stand
in for one a round, so slots shorter than its rounds pile up; the oldest are dropped."""

BACKGROUND_STARTS_PER_S = 100.0
"""How fast the background probing of many environments gets going: their first runs are
spread over one second per this many environments (at most over their interval), so
thousands of environments do not all start probing in the same instant — and, since each
run is followed by the same pause, do not fall back into step after it."""


def background_offset(environment: str, spread: float) -> float:
    """When, within `spread` seconds of the start, an environment's background probing
    begins: a fixed fraction of `spread` from a hash of its name, the same on every start
    and every replica (Python's `hash` is salted per process; crc32 is not)."""
    return zlib.crc32(environment.encode()) / 2**32 * spread


def load_turns(loads: Sequence[tuple[str, Check, float]]) -> dict[tuple[str, str], float]:
    """When each background load check first runs, so that the load runs of all
    environments take turns instead of loading the host at once: 8 environments'
    200-request runs at once kept 39-52 latencies each past the overload guard on a busy
    host. In a fixed order from a hash of environment and check (the same on every start
    and replica), the first runs come one after another, `gap` apart (the longest run, at
    most the shortest period / n), and each check's grid runs on from its first run, a
    period a run, so they keep their turns: no two overlap while n runs fit in the
    shortest period, nor ever across periods one a multiple of the other (lookbacks of an
    hour and half an hour); grids of other periods can meet now and then. (http runs
    spread their probes over a round already.) Hash-placed grids, before, overlapped
    somewhere in most agents of 8; grids a period / m apart from when the first runs were
    done put each check's second run less than a period after its first (a lone load
    check's one budget after it: one run more in its first lookback than
    `background_every` allows) and the grids of a 10- and a 5-minute period on the same
    instants."""
    ordered = sorted(
        loads, key=lambda load: (zlib.crc32(f"{load[0]}\0{load[1].name}".encode()), load[0])
    )
    if not ordered:
        return {}
    n = len(ordered)
    gap = min(max(c.budget_s() for _, c, _ in ordered), min(e for *_, e in ordered) / n)
    return {(name, check.name): k * gap for k, (name, check, _) in enumerate(ordered)}


BACKGROUND_LEASE_MIN_S = 10.0
"""The shortest hold on an environment's background probing: a busy replica's slot run a
few seconds late must not hand it to another (two would probe it for a while)."""


def background_lease(probe: EnvironmentProbe) -> float:
    """How long a replica's hold on an environment's background probing lasts: twice its
    most frequent check's period (at least `BACKGROUND_LEASE_MIN_S`), renewed at each
    slot, so a live holder keeps it and a dead one is replaced within two periods (a
    minute, at 30 s)."""
    periods = [e for c in probe.checks if (e := background_every(c, probe.env)) is not None]
    return max(BACKGROUND_LEASE_MIN_S, 2.0 * min(periods, default=probe.env.background_interval))


def background_burst(check: Check, env: EnvironmentSettings) -> int:
    """Probes per background run: `probes_per_round` for probing checks (the same number a
    round makes), one run of a load check (it makes its own traffic)."""
    return 1 if check.once_per_round else env.probes_per_round


def background_every(check: Check, env: EnvironmentSettings) -> float | None:
    """How often a check runs between windows, or None for never.

    A `background` check (http) runs every `background_interval`, the pre-deploy
    baseline of probe rules; one that is also `once_per_round` (load) six times per
    `lookback` (at most every `background_interval`), so a `max_increase` rule on it
    has a baseline without loading the service all the time. Other checks (smoke
    scenarios, plugins that do not opt in) only run during windows.
    """
    if not check.background:
        return None
    if check.once_per_round:
        return max(env.background_interval, env.lookback / 6)
    return env.background_interval
