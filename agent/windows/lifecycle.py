"""Watching one deploy window: its baseline, its rounds, its verdict and what follows.

Every step is written to the store before it is acted on, so a restart resumes
the same window from its stored rounds and never requests a rollback twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.analysis.judge import Glance, Judge, State
from agent.analysis.observe import observe
from agent.analysis.types import Observation, Rule, RuleVerdict, Verdict
from agent.logs import log_context
from agent.metrics import Metrics
from agent.providers.base import (
    Period,
    Provider,
    round_increment,
)
from agent.records import DeployWindow, RollbackIntent, RoundRecord, WindowState
from agent.rollback.contract import rollback_intent
from agent.rollback.delivery import RollbackDelivery, SettleClaims
from agent.settings import EnvironmentSettings, RuleSettings
from agent.stopping import StopBudget, named_for_a_stop
from agent.store.base import AlertClaim, ProbeRun, Store
from agent.store.outages import not_taken, store_outage
from agent.windows.alert_once import WindowAlerts, alert_claim
from agent.windows.answers import plain, taken, unreadable
from agent.windows.broken import bug_reason, end_broken, raised_words
from agent.windows.carried import CarriedProbes
from agent.windows.check_bugs import BaselineBugs, CheckBugAlerts, bug_said
from agent.windows.checkpoint import resume_point, stored_observations, stores_state
from agent.windows.evidence import (
    WhatBroke,
    breaches,
    breaches_as_rules,
    failure_details,
    name_what_broke,
    observation_from_dict,
    observation_to_dict,
    rule_snapshot,
    rule_to_dict,
    rule_without_baseline,
    verdict_to_dict,
)
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import (
    BackgroundRuns,
    FailedRelease,
    KeptRuns,
    background_baseline,
    baseline_runs,
    exact_bound_warnings,
    first_background_run,
    kept_words,
    left_out_words,
    no_background_baseline,
    outage_baseline,
    policy_of,
)
from agent.windows.held import HeldFile, HeldFiles
from agent.windows.kept import KeptBaseline
from agent.windows.late import RoundTimer, RoundWaits, store_cpu_waited_s, timed_wait
from agent.windows.markers import mark_rollback, marker_claims, marking, scope_of
from agent.windows.no_data import EmptyAnswers
from agent.windows.overload import DropTally
from agent.windows.pace import SteadyClock
from agent.windows.probing import EnvironmentProbe, samples_of, summarize, unsummarize
from agent.windows.schedule import RoundSchedule, overrun_s, round_timing, stored_overrun_s
from agent.windows.unread import UnreadBaselines
from agent.windows.unwatched import unwatched_end
from alerting.events import (
    Alert,
    AlertEvent,
    breach_key,
    check_bug_key,
    provider_key,
    resolved_key,
)
from checks.base import CheckResult, Sample
from checks.lag import run_target
from checks.ticks import ticks
from common.breaching import in_a_streak, passed_in_a_streak, warned
from common.redaction import Redactor, without_credentials
from common.times import rfc3339
from common.tracebacks import drop_cancellation
from common.units import bounds_in_units
from common.words import counted

log = logging.getLogger("postflight.window")

RENEW_MARGIN_S = 5.0
"""A lease with less than a round and this much left is renewed before the round starts."""

VERDICT_REFRESH_S = 30.0
"""A window's stored verdict (the API's `progress`) is worded at least this often; rounds in
between store their figures and decision, and word it at once when the window is decided, a
rule's state changes or a provider fails (so its outcomes are always the latest; only its
figures may be this old). At 5 s every round of a 10 s interval was worded: an eighth of the
agent's CPU at 5,000 windows (py-spy), for figures a round old at most."""

VERDICT_REFRESH_ROUNDS = 5
"""...and at least every this many rounds: a time bound alone let a short `interval` leave
the figures dozens of rounds behind (`progress.round` 1 at round 22 at 1 s), where wording
every fifth round costs a fifth of wording each."""

CANARY_SAMPLES = 20_000
"""A canary's stable side: the most recent samples kept as its baseline (bounded memory)."""


@dataclass
class WatchServices:
    """What every window watch shares (owned by the watcher)."""

    store: Store
    metrics: Metrics
    alerts: WindowAlerts
    delivery: RollbackDelivery
    providers: Mapping[str, Provider]
    owner: str
    lease_s: float
    clock: Callable[[], float]
    monotonic: Callable[[], float] = time.monotonic
    pace: SteadyClock = field(init=False)
    """The store's clock, once the watcher reads one (`agent.windows.pace`): what every
    watch paces its rounds by then; until then each watch has its own (`WindowWatch.pace`)."""
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    after_rollback: Callable[[DeployWindow, RollbackIntent], Awaitable[None]] | None = None
    """Runs once a rollback is delivered (§7: window state, `rollback.then` follow-ups)."""
    follow_ups_owed: Callable[[], None] | None = None
    """Says a delivered rollback's follow-ups were left owed (the store failed after its
    outcome): the integrations look for them again at their next turn, not only at the
    next start."""
    take_background: Callable[[str], Awaitable[None]] | None = None
    """Takes the environment's background lease for a window starting to probe it
    (`BackgroundProber.take_for_window`); None when there is no background probing."""
    stop: StopBudget | None = None
    """The daemon's stop: what a follow-up's record or hand-back may wait for is within it."""
    yield_background: Callable[[str, float, str], Awaitable[None]] | None = None
    """Stops the environment's background runs in flight before a window's first round
    (`agent.windows.in_flight`); None when there is no background probing."""
    owed_runs: Callable[[str, float], list[str]] | None = None
    """The background runs a window's round stands in for (`BackgroundProber.owed_runs`);
    None when there is no background probing."""
    next_background_run: Callable[[str, str], float | None] | None = None
    """When the next background run of (environment, check) starts
    (`BackgroundProber.next_run`), said of a relative rule with no baseline; None when
    there is no background probing."""
    redact: Callable[[str], str] = field(default_factory=Redactor)
    """Hides the configuration's secrets in what a watch stores and sends of a bug
    (`agent.windows.broken`)."""
    held_file: HeldFiles = field(init=False)
    """The watches' writes waiting for a SQLite file held by another process, said once
    for all of them."""

    def __post_init__(self) -> None:
        self.pace = SteadyClock(self.clock, self.monotonic)
        self.held_file = HeldFiles(self.metrics)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Work in the background (alerts, rollback delivery, provider markers): the
        round goes on at once, so an alert never delays a rollback. Kept until it ends,
        so `drain` can await it on shutdown."""
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def drain(self, grace: float, stop: StopBudget | None = None, keep: float = 0.0) -> None:
        """Let background work finish within `grace` seconds, then cancel the rest: an
        unfinished rollback stays pending in the store and resumes on the next start.
        All within `stop`'s time less `keep` (`StopBudget.settle`; by default, the grace,
        then as long again and a second for what is cut off to end)."""
        stop = stop or StopBudget(2 * grace + 1.0)
        await stop.settle(self.background, grace=grace, keep=keep)


BASELINE_WAIT_S = 1.0
"""How long the first round waits for provider baselines (at most half an interval); a
slower one is taken up by a later round (its relative rules are inconclusive until then)."""
STILL_FETCHING = "baseline still being fetched"
LAST_ROUND_WAIT_S = 60.0
"""How long past its slot the window's last round waits for provider answers under way."""


def _left_behind(
    ended_on: BaseException, logger: logging.LoggerAdapter[logging.Logger], task: asyncio.Task[bool]
) -> None:
    """A store write a watch left behind as it ended on `ended_on`: its failure is that
    one (said already) or an outage (said once by the watcher), else a bug, logged here."""
    if task.cancelled():
        return
    failed = task.exception()
    if failed is None or failed is ended_on or store_outage(failed):
        return
    logger.error("a round's store or a lease renewal failed as the watch ended", exc_info=failed)


def _without_baseline_words(rule: Rule) -> str:
    """What a rule whose baseline a provider could not give does meanwhile, in the
    provider's alert."""
    if rule.max_increase is not None:  # judged against it: asked again (`_awaits_baseline`)
        return (
            f"rule {rule.name} has no baseline yet, so it is inconclusive until one comes"
            " (asked again each round)"
        )
    return (
        f"rule {rule.name} has no baseline to show beside it (its absolute bound needs"
        " none): it is judged on that bound at each round the provider answers,"
        " inconclusive at those it does not (an absolute rule's baseline is not asked again)"
    )


def _compact(summary: dict[str, Any]) -> str:
    """A stand-in's summary as kept until the window's end (`WindowWatch.stand_ins`): its
    JSON, which reads back as the same numbers."""
    return json.dumps(summary, separators=(",", ":"))


def _answer(task: asyncio.Task[Observation]) -> Observation:
    """A finished fetch's observation (fetches never raise; a cancelled one has none)."""
    if task.cancelled():
        return Observation(value=None, error="fetch cancelled")
    return task.result()


class WindowWatch:
    """One window from its first round to its final state."""

    def __init__(
        self,
        window: DeployWindow,
        env: EnvironmentSettings,
        probe: EnvironmentProbe,
        services: WatchServices,
    ) -> None:
        self.window = window
        self.fence = window.fence
        """This watch's claim: every write for the window carries it, and once another
        claim took the window (even this replica's own, after a pause) the store refuses
        the write and the watch stops."""
        self.env = env
        self.probe = probe
        self.s = services
        self.pace = services.pace.for_a_watch(services.clock, services.monotonic)
        """What its rounds are paced by: the store's clock, or this machine's as the watch
        started, moved on by the monotonic clock (`agent.windows.pace`)."""
        self.rules: list[RuleSettings] = list(env.rules)
        self.judge_rules: list[Rule] = [r.to_rule() for r in self.rules]
        self.policy = policy_of(env)
        self.scope = scope_of(window, env)
        self.horizon = self._schedule().rounds_from(window.created_at)
        """Rounds the window is planned to last (the e-detector's false-alarm bound): those
        left when it was registered, which a watch resumed after a restart or a takeover
        works out alike. A window registered half-way was told the whole window's, a
        larger horizon: a valid but higher threshold, and a 'can detect' for rounds that
        never run."""
        self.compiled: Judge | None = None
        """The judge compiled against the baselines (once; every round for a canary)."""
        self.judge_state: State | None = None
        """The judge's fold after the latest round: all a restart needs to go on."""
        self.latest: dict[str, Observation] = {}
        self.replay: list[dict[str, Observation]] = []
        """Rounds stored without a judge state (an older version): folded once on resume."""
        self.baselines: dict[str, Observation] = {}
        self.canary_samples: deque[Sample] = deque(maxlen=CANARY_SAMPLES)
        self.cumulative: dict[str, Observation] = {}
        """Each provider rule's latest figures since the deploy (see `round_increment`)."""
        self.late_baselines: dict[str, Observation] = {}
        """Provider baselines fetched after the window's start (the first fetch failed),
        as stored with the round they arrived in (`_gather_round`)."""
        self.arrived: dict[str, Observation] = {}
        """Late baselines that arrived this round: their rules start afresh (`_judge`)."""
        self.answered_until: dict[str, float] = {}
        """Each provider rule's period end in its latest answer used (`_gather_round`)."""
        self.fetching: dict[str, tuple[asyncio.Task[Observation], Period]] = {}
        """Provider fetches under way, with the period each asked for: one slower than its
        round is waited for no longer than the round's slot, and counts when it comes."""
        self.refetching: dict[str, asyncio.Task[Observation]] = {}
        """Baselines being fetched again (or still, the first time) for relative rules."""
        self.held_last_round = False
        """The last round waited past its slot for provider answers or probes in flight:
        no overrun."""
        self.carried = CarriedProbes()
        """Probes still awaited as their round closed: each waits its own timeout and
        counts in the round during which it lands (`agent.windows.carried`)."""
        self.first_baselines: set[str] = set()
        """Rules whose first baseline fetch is still under way: a failure then is alerted."""
        self.unread = UnreadBaselines()
        """Baselines the agent's own stall left unread: an inconclusive rule says so."""
        self.empty = EmptyAnswers()
        """Rules whose latest answer had nothing to measure: an inconclusive one says why."""
        self.links: dict[str, str] = {}
        self.what_broke = WhatBroke()
        self.check_bugs = CheckBugAlerts()
        """Checks whose own bug ended runs of a round: one `check_bug` alert each."""
        self.baseline_bugs = BaselineBugs()
        """Canary rules without a baseline for a check's bug: their verdict names it."""
        self.kept = KeptBaseline()
        """Inconclusive releases the checks baseline pooled: relative rules name them."""
        self.queries: dict[str, str] = {
            r.name: q for r in self.judge_rules if r.source != "checks" and (q := r.query)
        }
        """Each provider rule's query as last sent (Observation.query), for the evidence."""
        self.last_outcomes: dict[str, str] = {
            r["name"]: _state_of(r["outcome"], r.get("evidence") or {})
            for r in (window.verdict or {}).get("rules", [])
        }
        self.unwatched = 0
        """Slots of the window passed over while no watch ran (a takeover, a restart),
        counted in the rounds stored since: `unwatched_end`."""
        self.glanced: dict[str, str] = dict(self.last_outcomes)
        """Each rule's state after the latest round judged (`_word` words a change)."""
        self.worded_at: float | None = None
        """When the verdict was last worded (None: not yet by this watch)."""
        self.worded_round = 0
        """The round the verdict was last worded at (by this watch)."""
        self.warned: set[str] = _warned_in(window.verdict)
        """Rules already warned about (a bound below what they can detect), by this watch
        or, before a restart or a takeover, by the one that stored the verdict."""
        self.log = logging.LoggerAdapter(
            log, {"deploy_id": window.id, "environment": window.environment}
        )
        self.held = HeldFile(self.log, services.held_file)
        """This watch's writes waiting for a SQLite file held by another process."""
        self.last_slot: int | None = None
        """The slot of the latest stored round: a restart goes on with the slot after it."""
        self.resumed_after: float | None = None
        """When the latest stored round ended (None: none stored): a resumed watch says
        how long the window went unwatched (`_say_resumed`)."""
        self.overran = False
        """An overrun is logged once per window (each is counted in the metrics); a watch
        that resumes it reads from the stored rounds whether one was."""
        self.timer = RoundTimer()
        """What holds the round under way (`agent.windows.late`): an overrun names it."""
        self.baselines_s = 0.0
        """How long the watch waited for provider baselines before its first round."""
        self.baselines_idle_stall_s = 0.0
        """The loop's stall during that wait that lengthened nothing (`timed_wait`)."""
        self.settling: asyncio.Task[bool] | None = None
        """The latest round being stored and acted on (see `_settle`)."""
        self.renewing: asyncio.Task[bool] | None = None
        """The lease renewal under way, if any (see `_hold_lease`)."""
        self.claiming: list[tuple[asyncio.Future[None], asyncio.Task[Any]]] = []
        """The alerts spawned and not yet claimed (`_claimed_first`, `round_claims`)."""
        self.overload = DropTally()
        """Probes the agent's own lag dropped (`checks.lag`): an overloaded agent's verdict."""
        self.stand_ins: deque[tuple[str, float, str, str | None]] = deque()
        """(check, at, summary as JSON, fingerprint) of the background runs this window's
        rounds stand in for, of the latest `lookback`: stored when its release stays
        (`_kept_stand_ins`). The fingerprint is the check's as it was probed: one restored
        after a restart that changed the check stays a run of what it probed. The summary
        is kept as its JSON text (read back at the end): as lists of numbers, 120 runs of
        10 probes (an hour at the default `background_interval`) held 104 KB a window."""
        self.new_stand_ins: list[tuple[str, float, dict[str, Any], str | None]] = []
        """This round's stand-ins, stored with the round so a restart keeps them."""
        self.raised: set[str] = set()
        """Providers whose fetch raised in this watch (its traceback is logged once)."""
        self.rule_counters: dict[tuple[str, str], Any] = {}
        """`postflight_rule_evaluations_total`'s children by (rule, outcome): looked up
        once, counted every round."""

    # the whole window -----------------------------------------------------

    async def run(self) -> None:
        # this watch's task and those it starts (provider fetches) log its deploy
        log_context.set({"deploy_id": self.window.id, "environment": self.window.environment})
        try:
            await self._watch()
        except BaseException as exc:
            # the watch ends on `exc` (the watcher logs it: an outage once); a round's store
            # or a lease renewal it had under way, awaited by nobody now, may fail on the
            # same outage: asyncio logged each at exit as "Task exception was never
            # retrieved", an ERROR with a traceback and no deploy id (a PostgreSQL restart)
            for write in (self.settling, self.renewing):
                if write is not None:
                    write.add_done_callback(functools.partial(_left_behind, exc, self.log))
            raise
        finally:  # a decided, lost or stopped watch leaves no fetch, nor probe, behind
            self.carried.close()
            for task in [*(t for t, _ in self.fetching.values()), *self.refetching.values()]:
                task.cancel()
                task.add_done_callback(drop_cancellation)  # else a cycle holding the watch

    async def _watch(self) -> None:
        if not await self._until_deployed():
            return
        if self.s.yield_background is not None:  # its rounds alone at the target
            window = self.window
            await self.s.yield_background(window.environment, window.deployed_at, window.id)
        self.timer.began(ticks().lag, self.pace())
        if self.s.take_background is not None:  # no other replica probes it meanwhile
            # beside the rounds: a store slow to answer must not hold the first one
            self.s.spawn(self.s.take_background(self.window.environment))
        await self._load_history()
        if self.window.baseline is None:
            if not await self._take_baseline():
                self.log.info("window no longer ours (ended or taken over); stop watching")
                return
        else:
            self.baselines = {k: observation_from_dict(v) for k, v in self.window.baseline.items()}
            # a resumed watch's relative rules still name what their baseline pooled: the
            # words stored with it, else (stored before they were) the lookback read again
            if not self.kept.restore(self.window.baseline, self.judge_rules):
                self.kept.note((await self._background_runs()).kept)
        self.baselines.update(self.late_baselines)
        self.log.info(
            "watching %s %s (round %d, ends %s)",
            self.window.environment,
            self.window.version,
            self.window.rounds + 1,
            rfc3339(self.window.ends_at, millis=False),
        )
        number = self.window.rounds
        schedule = self._schedule()
        slot = self.last_slot
        pace = self.pace  # slots are instants, the time between them is measured
        now = pace()
        ready: float | None = now
        self.timer.ready(now, self.baselines_s, self.baselines_idle_stall_s)
        while True:
            number += 1
            slot = schedule.next_slot(slot, pace())
            due = schedule.due(slot)
            now = pace()
            if now < due:
                await asyncio.sleep(due - now)
                now = pace()
            if ready is not None:
                self._say_resumed(slot, number, now)
            lag = max(0.0, now - due)
            # the metric is the agent's own lateness (`PostflightRoundsLate`: overloaded), so
            # this watch's first round counts from when the watch was ready: what came before
            # is a slow provider's baseline wait, a late registration or a restart, each said
            # elsewhere; the stored round keeps its real lag
            self.s.metrics.round_lag_seconds.observe(
                lag if ready is None else max(0.0, now - max(due, ready))
            )
            ready = None
            started = now
            loop = asyncio.get_running_loop()
            self.timer.start(ticks().lag, loop.time(), now, due)
            # a lease is compared with the other replicas' wall clocks
            if not await self._hold_lease(self.s.clock(), schedule.length(slot, now)):
                self.log.info("window no longer ours (ended or taken over); stop watching")
                return
            self.timer.leased(pace())
            length = schedule.length(slot, pace())  # what the lease left of the slot
            final = schedule.is_last(slot)
            # providers may take until the judging's half of the reserve; a later answer
            # counts in a later round (the last round waits for it)
            until = schedule.ends(slot) - schedule.reserve / 2
            observations, results = await self._gather_round(
                length, until, final=final, reserve_from=schedule.ends(slot) - schedule.reserve
            )
            self.what_broke.note(results)
            for bugs in self.check_bugs.new(results):
                self._alert(
                    "check_bug",
                    key=check_bug_key(bugs.check),
                    reason=bugs.reason(number),
                    check=bugs.check,
                )
            self.latest = observations
            try:
                self.judge_state, glance = self._judge(observations, final=final)
                verdict = self._word(glance, number, final=final)
            except Exception as exc:  # pure: it raises again on this round, for ever
                await self._broken("the judge", number, exc)
                return
            glance, verdict = self.overload.guard(
                glance, verdict, self.judge_rules, self.baselines, final=final
            )
            glance, verdict = unwatched_end(glance, verdict, self.unwatched)
            decided = glance.decision != "continue"  # a fail the guard holds goes on
            with_state = bool(self.arrived) or stores_state(
                number, observations, moving_baseline=bool(self.env.baseline_url), decided=decided
            )
            summary = self._round_summary(observations, results, glance, with_state=with_state)
            summary.update(round_timing(schedule, slot, started, lag, pace()))
            if self.unwatched:
                summary["unwatched_slots"] = self.unwatched
            worded: tuple[Verdict, dict[str, Any]] | None = None
            if verdict is not None:
                decided_at = self.s.clock() if decided else None
                verdict_json = verdict_to_dict(verdict, decided_at=decided_at, links=self.links)
                if not decided:
                    # the API's `progress.round`: words are refreshed every few rounds
                    # (`VERDICT_REFRESH_S`, `_ROUNDS`), so say which round these figures are of
                    verdict_json["round"] = number
                self._with_queries(verdict_json["rules"])
                worded = verdict, verdict_json
            waits = self.timer.finish(loop.time(), pace())
            self._note_overrun(schedule, slot, number, started, waits, summary)
            # shielded: a stop (or a lost lease, a cancel) ends the watch, not the round's
            # write and what it acts on, which the drain lets finish in its grace; cut with
            # the watch, a failed verdict's rollback was left to the next start, unnamed
            before = self.settling
            if before is not None:
                await self.held.settled_or_held(before)  # a stop cuts the wait, not the write
                if self.held.goes_on(before):
                    self.held.chain()  # stored after it: its file is held by another process
                else:
                    if not await asyncio.shield(before):
                        return
                    before = None
            # held past the next round's due time: the store's, less its thread's CPU wait
            store_cpu = store_cpu_waited_s(self.s.store, loop.time())
            self.timer.settled(pace(), store_cpu)
            record = RoundRecord(self.window.id, number, started, summary)
            self.settling = self.s.spawn(self._settle(record, glance, worded, before))
            self.timer.writing(pace(), store_cpu)
            if decided:
                await asyncio.shield(self.settling)
                return

    async def _broken(self, part: str, number: int, exc: Exception) -> None:
        """`part` raised at round `number`: a bug, so the window ends inconclusive naming
        it, once the round before is stored (rounds are stored in order)."""
        if self.settling is not None and not await asyncio.shield(self.settling):
            return
        await self.round_claims()  # this round's alerts (a check's bug): none after the end
        reason = bug_reason(part, exc, self.s.redact, f"at round {number}")
        await end_broken(self.window, self.env, self.s, reason, exc, runs=self._kept_stand_ins())

    def _word(self, glance: Glance, number: int, *, final: bool) -> Verdict | None:
        """The verdict in words, when round `number` needs them: the window is decided, a
        rule is breached or changed its state (an alert), a provider failed (an alert), or
        the stored words are `VERDICT_REFRESH_S` or `VERDICT_REFRESH_ROUNDS` old (the API's
        `progress`). Else None: the round is stored with the glance's figures, and the
        window keeps its latest words (wording every rule's evidence each round cost as
        much as judging it)."""
        states = {g.name: _state_of(g.outcome, g.evidence) for g in glance.rules}
        changed, self.glanced = states != self.glanced, states
        now = self.pace()
        due = (
            glance.decision != "continue"
            or changed
            or "breached" in states.values()
            or self.worded_at is None
            or now - self.worded_at >= VERDICT_REFRESH_S
            or number - self.worded_round >= VERDICT_REFRESH_ROUNDS
            or self._provider_failed()
        )
        if not due:
            return None
        assert self.compiled is not None and self.judge_state is not None
        self.worded_at, self.worded_round = now, number
        verdict = self.kept.said(
            self.baseline_bugs.said(
                self.empty.said(
                    self.unread.said(self.compiled.verdict(self.judge_state, final=final))
                )
            )
        )
        return name_what_broke(
            verdict,
            self.judge_rules,
            self.what_broke,
            breached=lambda rule: _state(rule) == "breached",
        )

    def _provider_failed(self) -> bool:
        """Whether a provider rule's latest observation is the provider's error (an alert
        to send; one the agent's own stall caused is not)."""
        return any(self._providers_error(r.name, r.source) for r in self.judge_rules)

    def _providers_error(self, name: str, source: str) -> Observation | None:
        """The rule's latest observation when it is its provider's failure, else None."""
        observed = self.latest.get(name)
        if source == "checks" or observed is None or not observed.error or observed.agent_lag:
            return None
        return observed

    async def _settle(
        self,
        record: RoundRecord,
        glance: Glance,
        worded: tuple[Verdict, dict[str, Any]] | None,
        before: asyncio.Task[bool] | None = None,
    ) -> bool:
        """Store a round, then act on it; False when the window is over or not ours.

        Runs while the next round's checks go on: the write (an fsync, slow on a busy
        disk) never delays the schedule, rounds are still stored in order (the next is
        stored only after this one, `before`, a round measured while the SQLite file was
        held: `HeldFile`), and nothing is acted on before it is stored. A round without
        words (`_word`) keeps the stored verdict and has nothing to alert."""
        named_for_a_stop(
            f"round {record.number} of {self.window.id} and what it calls for (a round not"
            " stored is made again by the next start; a verdict stored is acted on by it)"
        )
        if before is not None:
            try:
                if not await before:
                    return False
            finally:
                self.held.ahead -= 1
        stored = await self.held.written(
            lambda: self.s.store.record_round(record, worded[1] if worded else None, self.fence),
            f"round {record.number}",
        )
        if not stored:
            self.log.info("window ended or taken over meanwhile; stop watching")
            return False
        self.window.rounds = record.number
        self._count_rules(glance)
        if worded is None:
            return True
        verdict, verdict_json = worded
        self._warn_undetectable(verdict)
        self._alert_rules(verdict)
        self.window.verdict = verdict_json
        if verdict.decision == "continue":
            return True
        await self.round_claims()
        if verdict.decision == "fail":
            await self._fail(verdict, verdict_json)
        else:
            await self._end(verdict.decision, verdict, verdict_json)
        return False

    async def round_claims(self) -> None:
        """Until the alerts spawned so far have their claims stored (not their sends): the
        window's end comes after them. Nothing re-emits a round's alerts once the window
        has ended, so a kill between the end's commit and a claim spawned beside it lost
        that alert for good (the final round's breach, on a loaded CI run). A store write
        each; a resolve whose breach this process is still sending is claimed before that
        send is done, and sent after it (`WindowAlerts.emit_group`): a hung channel holds
        neither the end nor its rollback."""
        claiming, self.claiming = self.claiming, []
        for claimed, task in claiming:
            if not (claimed.done() or task.done()):
                await asyncio.wait({claimed, task}, return_when=asyncio.FIRST_COMPLETED)

    async def _until_deployed(self) -> bool:
        """A window registered ahead of its `deployed_at` (shown `scheduled`) takes no
        baseline and runs no round before then: until that moment the old version is
        what answers. The lease is renewed meanwhile, so no other replica takes it."""
        if self.window.deployed_at > self.pace():
            self.log.info(
                "scheduled: the first round starts at %s",
                rfc3339(self.window.deployed_at, millis=False),
            )
        while (wait := self.window.deployed_at - self.pace()) > 0:
            step = min(wait, self.s.lease_s / 3)
            if not await self._renew_lease(self.s.lease_s + step):
                self.log.info("scheduled window no longer ours (ended or taken over)")
                return False
            await asyncio.sleep(step)
        return True

    def _schedule(self) -> RoundSchedule:
        """The window's slots: the rounds run on them, and a resumed watch reads its stored
        rounds' overruns against them."""
        return RoundSchedule(self.window.deployed_at, self.env.interval, self.window.ends_at)

    async def _load_history(self) -> None:
        """Resume from the latest stored judge state (rounds before it are not replayed)."""
        records = await self.s.store.rounds(self.window.id)
        # an overrun is logged once a window: the watch before a restart may have said it
        schedule = self._schedule()
        self.overran = any(stored_overrun_s(schedule, r.summary) > 0 for r in records)
        state, replay = resume_point(r.summary for r in records)
        if state is not None:
            self.judge_state, self.replay = state, replay
        else:
            self.replay.extend(replay)
        if records:
            last = records[-1].summary
            self.unwatched = int(last.get("unwatched_slots") or 0)
            took = last.get("duration_s")
            started = last.get("started_at", records[-1].started_at)
            self.resumed_after = float(started) + float(took or 0.0)
        for record in records:
            self.last_slot = record.summary.get("slot")
            for name, data in record.summary.get("late_baselines", {}).items():
                self.late_baselines[name] = observation_from_dict(data)
            for name, data in record.summary.get("cumulative", {}).items():
                self.cumulative[name] = observation_from_dict(data)
            self.what_broke.note_summary(record.summary.get("checks", {}))
            self.overload.note_summary(record.summary)
            for item in record.summary.get("canary", []):
                self.canary_samples.extend(unsummarize(item["check"], item, target="baseline"))
            for item in record.summary.get("stand_ins", []):
                summary = {"ok": item["ok"], "latency": item["latency"]}
                # None (not recorded): nothing says what it probed, no baseline pools it
                made = (item["check"], item["at"], _compact(summary), item.get("fingerprint"))
                self.stand_ins.append(made)

    # baseline --------------------------------------------------------------

    async def _take_baseline(self) -> bool:
        """Fetch every rule's baseline once, at the window's start, and store it, so
        that a restart compares against the same period; False if no longer ours."""
        lookback = self._lookback()
        background = await self._background_runs()
        fetches = {
            rule.name: asyncio.ensure_future(self._fetch_baseline(rule, lookback))
            for rule in self.judge_rules
            if rule.source != "checks"
        }
        if fetches:
            # the first round is due at the deploy: a slow provider does not hold it long
            asked, stall = self.pace(), ticks().lag.total()
            timeout = min(BASELINE_WAIT_S, self.env.interval / 2)
            _, pending = await asyncio.wait(fetches.values(), timeout=timeout)
            self.baselines_s = self.pace() - asked
            if pending:  # ended by its timer: a stall before it was due held nothing
                stalled = ticks().lag.total() - stall
                self.baselines_idle_stall_s = timed_wait(self.baselines_s, stalled, timeout)
        fetched: dict[str, Observation] = {}
        for name, task in fetches.items():
            if task.done():
                fetched[name] = _answer(task)
                self.unread.note(name, fetched[name])
            else:  # judged once it comes, like a baseline that failed (`_awaits_baseline`)
                self.refetching[name] = task
                self.first_baselines.add(name)
                fetched[name] = Observation(value=None, error=STILL_FETCHING)
        for rule, judged in zip(self.rules, self.judge_rules, strict=True):
            if rule.source == "checks":
                pooled = background.of(rule.name)
                self.baselines[rule.name] = background_baseline(judged, pooled, self.env)
            else:
                self.baselines[rule.name] = fetched[rule.name]
        self.kept.note(background.kept)
        stored = {k: observation_to_dict(v) for k, v in self.baselines.items()}
        stored = self.kept.stored_in(stored, self.judge_rules)
        if not await self.s.store.set_baseline(self.window.id, stored, self.fence):
            return False
        self._warn_baseline(background.left_out, background.kept)
        for name, provider in self.s.providers.items():
            if any(r.source == name for r in self.rules):
                self.s.spawn(self._mark(name, provider))
        unfetched: list[tuple[Rule, Observation]] = []
        for judged in self.judge_rules:
            baseline = fetched.get(judged.name)
            if baseline is None or not baseline.error or judged.name in self.refetching:
                continue
            if baseline.agent_lag:
                # the agent's own stall, not the provider's: asked again each round
                # (`_awaits_baseline`), and alerted only if the provider then fails itself
                self.first_baselines.add(judged.name)
            else:
                unfetched.append((judged, baseline))
        self._baselines_unreachable(unfetched)
        return True

    def _warn_baseline(
        self, left_out: list[tuple[FailedRelease, int]], kept: list[KeptRuns]
    ) -> None:
        """What the checks rules' baseline lacks, a provider's that looks measured while the
        service was down (`outage_baseline`), and each rate bound that can only fail
        (`exact_bound_warnings`), logged once per window: here, where it is taken and stored
        (a resumed watch reuses it), not at registration, whose `warnings` foresee the same
        from the runs stored then."""
        for sentence in exact_bound_warnings(self.judge_rules, self.env):
            self.log.warning("%s", sentence)
        checks_rules = [r for r in self.judge_rules if r.source == "checks"]
        if left_out and checks_rules:
            self.log.warning("baseline: %s", left_out_words(left_out))
        if kept and checks_rules:
            self.log.warning("baseline: %s", kept_words(kept))
        for rule in self.judge_rules:  # a provider's, just fetched (registration foresaw it)
            if rule.source != "checks" and (
                said := outage_baseline(rule, self.baselines[rule.name])
            ):
                self.log.warning("%s", said)
        if self.env.baseline_url is not None:  # the stable side, probed beside it
            return
        environment, now = self.window.environment, self.s.clock()
        for rule in checks_rules:
            if rule.only_relative and not self.baselines[rule.name].has_data:
                first = first_background_run(
                    rule, self.env, environment, self.s.next_background_run
                )
                said = no_background_baseline(rule, self.env, first, now=now)
                self.log.warning("%s", said)

    def _baselines_unreachable(self, unfetched: list[tuple[Rule, Observation]]) -> None:
        """Providers that could not give rules' baselines: each provider's one alert of the
        window, naming each of its rules here with its bounds (contract §4), where it named
        the first rule only, in words; the baselines are asked for again each round
        (`_gather_round`)."""
        by_provider: dict[str, list[tuple[Rule, Observation]]] = {}
        for rule, baseline in unfetched:
            self.log.warning("rule %s: baseline not fetched: %s", rule.name, baseline.error)
            by_provider.setdefault(rule.source, []).append((rule, baseline))
        for provider, failed in by_provider.items():
            whats = "; ".join(_without_baseline_words(rule) for rule, _ in failed)
            first = failed[0][1]
            names = {rule.name for rule, _ in failed}
            # its other rules whose baselines are still being fetched: the one alert of the
            # provider names them too, as they wait alike (`_awaits_baseline`)
            rules = [
                rule_without_baseline(rule, fetching=rule.name not in names)
                for rule in self.judge_rules
                if rule.source == provider and (rule.name in names or rule.name in self.refetching)
            ]
            self._alert(
                "provider_unreachable",
                key=provider_key(provider),
                # the headline says it is never a reason to roll back (`alerting.events`):
                # the Why said so again, a third time with the rule's line
                reason=f"{provider}: {first.error} — {whats}",
                rules=rules,
                provider=provider,
                provider_answered=first.answered,
                provider_not_yet=first.not_yet,
            )

    def _awaits_baseline(self, rule: Rule) -> bool:
        """A relative provider rule (`max_increase`: it is judged against its baseline)
        whose baseline fetch failed, none having come since. An absolute rule's baseline
        is only shown beside it: its judging goes on without one, and is not restarted;
        it is asked again only while its fetch failed for the agent's own stall
        (`Observation.agent_lag`), which says nothing of the provider."""
        baseline = self.baselines.get(rule.name)
        return (
            rule.source != "checks"
            and baseline is not None
            and bool(baseline.error)
            and (rule.max_increase is not None or baseline.agent_lag)
        )

    async def _mark(self, name: str, provider: Provider) -> None:
        """A provider's deploy marker (a rollback's: `agent.windows.markers.mark_rollback`);
        one that could not be recorded is an alert saying why (the provider names the
        missing permission): the provider's one `provider_unreachable` of the window,
        shared with its fetches' failures, so a provider down pages once, not once for the
        marker and again for its rules."""
        problem = await provider.mark(self.scope, "deploy")
        if problem:
            self._alert(
                "provider_unreachable",
                key=provider_key(name),
                reason=f"{name}: {problem}",
                rules=[],
                provider=name,
            )

    def _release_named(self, rule: Rule) -> str | None:
        """The new release as `rule`'s provider names it (Sentry: `baseline.sentry.release`)."""
        target = self.scope.baseline.sentry
        if rule.source == "sentry" and target is not None:
            return target.release_name(self.window.version)
        return None

    def _lookback(self) -> Period:
        """The baseline's period: `lookback` before the deploy."""
        t0 = self.window.deployed_at
        return Period(t0 - self.env.lookback, t0)

    async def _background_runs(self) -> BackgroundRuns:
        """The checks rules' background runs of the lookback (`baseline_runs`)."""
        lookback = self._lookback()
        return await baseline_runs(
            self.s.store, self.window.environment, self.env, lookback.start, lookback.end
        )

    async def _fetch_baseline(self, rule: Rule, lookback: Period) -> Observation:
        """A provider rule's baseline: one fetch of the lookback. A provider that can split
        it into buckets says how bursty it was in the observation (`periods`, `dispersion`:
        Sentry's `bucketed_baseline`), which the judge's count test discounts by."""
        return await self._fetch(rule, lookback, self.window.previous_version)

    async def _fetch(self, rule: Rule, period: Period, release: str | None) -> Observation:
        provider = self.s.providers.get(rule.source)
        if provider is None:
            return Observation(value=None, error=f"provider {rule.source} is not configured")
        try:
            # a one-shot iterator read once, here: the checks below would use it up
            observation = taken(await provider.fetch(rule, self.scope, period, release))
        except Exception as exc:  # a plugin's bug (a provider never raises): an error
            return self._fetch_raised(rule, exc)
        if (wrong := unreadable(observation)) is not None:
            return self._fetch_unreadable(rule, wrong)
        observation = plain(observation)  # the store keeps Python's numbers, not numpy's
        if observation.query:
            self.queries[rule.name] = observation.query
        try:
            url = provider.link(rule, self.scope, period, release=release)
        except Exception:  # a link is a nicety, never a reason to fail a round
            url = None
        if url:  # shown on the page and in alerts: never with the URL's credentials
            self.links[rule.name] = without_credentials(url)
        return observation

    def _fetch_raised(self, rule: Rule, exc: Exception) -> Observation:
        """A provider whose fetch raised (a plugin's bug: the protocol says it never
        raises): the rule's error for the round, as a provider failing soft gives one, so
        it is inconclusive and the provider's one alert of the window names the exception;
        its traceback logged once a watch. Raised out of the round, it ended the watch, and
        the watcher met it again at each claim."""
        if rule.source not in self.raised:
            self.raised.add(rule.source)
            self.log.error(
                "provider %s raised fetching rule %s", rule.source, rule.name, exc_info=exc
            )
        raised = raised_words(exc, self.s.redact)
        return Observation(
            value=None,
            error=f"raised {raised} (a bug in the provider, not an outage)",
            answered=True,
        )

    def _fetch_unreadable(self, rule: Rule, wrong: str) -> Observation:
        """A provider's answer the judge cannot read (`agent.windows.answers`): the
        rule's error for the round, the provider's one alert naming it (it answered, not
        usably), one WARNING a watch; before, the judge raised on it and the window ended
        as a bug of the agent."""
        said = self.s.redact(wrong)
        if rule.source not in self.raised:
            self.raised.add(rule.source)
            self.log.warning(
                "provider %s answered rule %s with what cannot be judged: %s",
                rule.source,
                rule.name,
                said,
            )
        return Observation(
            value=None,
            error=f"answered what cannot be judged: {said} (a bug in the provider)",
            answered=True,
        )

    # one round -------------------------------------------------------------

    async def _gather_round(
        self, length: float, until: float, *, final: bool, reserve_from: float
    ) -> tuple[dict[str, Observation], list[CheckResult]]:
        """The round's probes, then each provider rule's figures since the deploy. A
        provider fetch is waited for until `until` (the slot's end, less the judging's
        share): a slow or hung provider does not make the round, and every round after
        it, run late. Its answer, when it comes, counts in the round that finds it. What
        the wait took of the round's reserve (from `reserve_from`) is the providers' part
        of an overrun (`RoundTimer.fetched`)."""
        targets: tuple[Any, ...] = ("deploy", "baseline") if self.env.baseline_url else ("deploy",)
        results: list[CheckResult] = []
        if self.pace() < self.window.ends_at:
            results = await self.probe.run_round(
                length, probes=self.env.probes_per_round, targets=targets, carry=self.carried
            )
        self.timer.checked(self.pace(), self.probe.longest_round(length))
        if final and self.carried.in_flight:
            # the last round waits for the probes still in flight, each to its own timeout:
            # on purpose, and holding no later round, so it is no overrun
            self.held_last_round = True
            results[:0] = await self.carried.settle(self.probe.longest_probe())
        # else a round begun after the window's end (an agent restarted after it, or one
        # that overran the last slot whole) probes nothing: what it would sample came after
        # the window, perhaps from a version deployed meanwhile (the providers' figures are
        # cut at the end too); the window is judged on the rounds it had
        now = self.pace()
        # never past the window's end: a round run late (an agent restarted after the
        # window ended) judges the window's events, not what came after it
        upto = min(now, self.window.ends_at)
        period = Period(self.window.deployed_at, max(upto, self.window.deployed_at + 1))
        lookback = self._lookback()
        for judged in self.judge_rules:
            if judged.source == "checks":
                continue
            if judged.name not in self.fetching:
                asking = asyncio.ensure_future(self._fetch(judged, period, self.window.version))
                self.fetching[judged.name] = (asking, period)
            if self._awaits_baseline(judged) and judged.name not in self.refetching:
                self.refetching[judged.name] = asyncio.ensure_future(
                    self._fetch_baseline(judged, lookback)
                )
        waiting = [*(t for t, _ in self.fetching.values()), *self.refetching.values()]
        timer_due: float | None = None  # when the wait's timer ended it
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=max(0.0, until - now))
            if pending and final:
                # the last round waits for the answers under way (a provider bounds each by
                # its own budget; a plugin that does not is cut off after LAST_ROUND_WAIT_S):
                # on purpose, and holding no later round, so it is no overrun
                self.held_last_round = True
                await asyncio.wait(pending, timeout=LAST_ROUND_WAIT_S)
            elif pending:
                timer_due = max(until, now)
        self.timer.fetched(self.pace(), reserve_from, timer_due)
        fetched: dict[str, tuple[Observation, Period]] = {}
        for name, (task, asked) in list(self.fetching.items()):
            if task.done():
                del self.fetching[name]
                fetched[name] = (_answer(task), asked)
        self.arrived = {}
        unfetched: list[tuple[Rule, Observation]] = []
        for judged in self.judge_rules:
            again = self.refetching.get(judged.name)
            if again is None or not again.done():
                continue
            relative = judged.max_increase is not None
            if relative and judged.name not in fetched and not final:
                continue  # taken up with the rule's next answer: it starts over on that
            del self.refetching[judged.name]
            baseline = _answer(again)
            self.unread.note(judged.name, baseline)
            if baseline.agent_lag:  # the agent's stall again: asked again, nothing alerted
                self.baselines[judged.name] = baseline
                continue
            if not baseline.error and relative:
                self.arrived[judged.name] = baseline
            elif not baseline.error:  # an absolute rule's baseline is only shown beside it
                self.baselines[judged.name] = baseline
            else:
                if not relative:  # the provider's own failure: not asked again
                    self.baselines[judged.name] = baseline
                if judged.name in self.first_baselines:
                    unfetched.append((judged, baseline))
            self.first_baselines.discard(judged.name)
        self._baselines_unreachable(unfetched)
        for name, baseline in self.arrived.items():
            # the rule is judged from now on, on everything since the deploy (`_judge`)
            self.log.info("rule %s: its baseline came, late", name)
            self.baselines[name] = self.late_baselines[name] = baseline
            self.compiled = None
        self.overload.note(results, self.log)
        self._stand_in(results, self.s.clock())  # beside the background's runs, by wall
        samples = samples_of(results)
        deploy_samples = [s for s in samples if s.target == "deploy"]
        canary = [s for s in samples if s.target == "baseline"]
        self.canary_samples.extend(canary)
        observations: dict[str, Observation] = {}
        for rule, judged in zip(self.rules, self.judge_rules, strict=True):
            if rule.source == "checks":
                observed = observe(judged, deploy_samples, length)
                observations[rule.name] = bug_said(judged, observed, results)
                if self.env.baseline_url:
                    # a canary's stable side, probed side by side, is the baseline
                    self.baselines[rule.name] = observe(
                        judged,
                        list(self.canary_samples),
                        length * (self.window.rounds + 1),
                        target="baseline",
                    )
                    self.baseline_bugs.note(judged, self.baselines[rule.name], results)
            elif rule.name not in fetched:
                # its provider has not answered yet: nothing new this round
                observations[rule.name] = Observation(value=None)
            else:
                current, asked = fetched[rule.name]
                self.empty.note(judged, current, self._release_named(judged))
                before = self.answered_until.get(rule.name)
                self.answered_until[rule.name] = asked.end
                if before is not None and asked.end <= before and rule.name not in self.arrived:
                    # sub-second rounds in the window's first second ask for the same period
                    # [T0, T0 + 1s): its answer is not a second round of evidence
                    observations[rule.name] = Observation(value=None)
                    continue
                # providers answer for [T0, now): the judge wants this round's own events;
                # a rule whose baseline just came starts over, on all of them at once
                fresh = rule.name in self.arrived
                observations[rule.name] = (
                    current if fresh else round_increment(self.cumulative.get(rule.name), current)
                )
                if current.has_data:
                    self.cumulative[rule.name] = current
        return observations, results

    @functools.cached_property
    def fingerprints(self) -> Mapping[str, str]:
        """What `base_url`'s background runs probe, which stand-ins are kept as."""
        return check_fingerprints(self.env)

    @functools.cached_property
    def stands_in(self) -> bool:
        """Whether its rounds may stand in for background runs: not when the window probes
        its deploy event's own URL, another target than `base_url`'s
        (`agent.windows.fingerprint`). Worked out once a watch, at its first round."""
        return check_fingerprints(self.probe.env) == self.fingerprints

    def _stand_in(self, results: list[CheckResult], now: float) -> None:
        """Keep this round's runs of the checks whose background run fell due meanwhile:
        probing paused for the window, and a 15-minute window is one or two of a load
        check's six runs an hour, so the next deploy's baseline had 800 latencies instead
        of 1,200 and caught a latency x2 only at its window's end. A round is one run of
        every check (`probes_per_round` probes, a load check's whole run), as the
        background's are. Not a window that probes its deploy event's own URL
        (`stands_in`)."""
        self.new_stand_ins = []
        if self.s.owed_runs is None or not self.stands_in:
            return
        owed = self.s.owed_runs(self.window.environment, self.window.deployed_at)
        for k, check in enumerate(owed):
            samples = [
                s for r in results if r.check == check for s in r.samples if s.target == "deploy"
            ]
            if samples:  # all dropped as the agent's lag: a run missing, as in the background
                # a millisecond apart: a baseline pools runs by instant, one check each
                fingerprint = self.fingerprints.get(check)
                self.new_stand_ins.append((check, now + k / 1000, summarize(samples), fingerprint))
        self.stand_ins.extend((c, at, _compact(run), f) for c, at, run, f in self.new_stand_ins)
        while self.stand_ins and self.stand_ins[0][1] < now - self.env.lookback:
            self.stand_ins.popleft()  # no later baseline reaches back to it

    def _kept_stand_ins(self) -> list[ProbeRun]:
        """The background runs this window's rounds stood in for, kept with its end when
        it passed or ended inconclusive: its release stays, and they are the next
        deploy's baseline as the runs the window paused would have been. In the end's
        own transaction, so a deploy registered the instant after it pools them, and an
        end another replica took never keeps them. A failed window's are not kept (its
        release is rolled back, and its runs left out: `agent.windows.foresight`), nor a
        cancelled or superseded one's (its release was never judged). Each round's are
        stored with the round, so the watch that resumes the window after a restart or a
        takeover keeps the ones before it (`_load_history`)."""
        environment = self.window.environment
        return [
            ProbeRun(environment, check, at, json.loads(summary), fingerprint)
            for check, at, summary, fingerprint in self.stand_ins
        ]

    def _judge(self, observations: dict[str, Observation], *, final: bool) -> tuple[State, Glance]:
        """One step of the judge's fold from the stored state (a canary's baseline moves each
        round: the judge is compiled against the baseline known before the round)."""
        if self.compiled is None or self.env.baseline_url:
            self.compiled = Judge(
                self.judge_rules, self.baselines, self.policy, horizon=self.horizon
            )
        judge = self.compiled
        # the state is this watch's alone (a stored round gets a copy: `_round_summary`),
        # so it is folded in place rather than copied each round
        state = self.judge_state or judge.start()
        for old in self.replay:
            state = judge.advance(state, old, in_place=True)
        self.replay = []
        for name in self.arrived:
            judge.restart_rule(state, name)
        state = judge.advance(state, observations, in_place=True, final=final)
        return state, judge.glance(state, final=final)

    def _round_summary(
        self,
        observations: dict[str, Observation],
        results: list[CheckResult],
        glance: Glance,
        *,
        with_state: bool,
    ) -> dict[str, Any]:
        """What the store keeps of a round; the judge's whole state only `with_state`
        (else the raw values unrounded, for a restart to replay: `checkpoint`)."""
        checks: dict[str, dict[str, Any]] = {}
        for result in results:
            if run_target(result) != "deploy":
                continue
            entry = checks.setdefault(
                result.check, {"runs": 0, "failed": 0, "message": "", "type": result.type}
            )
            entry["runs"] += 1
            if result.details.get("dropped") == "agent_lag":
                # the agent's own stall (`checks.lag`): neither a pass nor a fail of the
                # target, where the run (ok, with no sample) read as one that passed
                entry["dropped"] = entry.get("dropped", 0) + 1
                continue
            if result.bug:  # the check's own (`checks.bugs`): no evidence, said apart
                entry["bug"] = entry.get("bug", 0) + 1
                entry["bug_message"] = result.message
                continue
            if not result.ok:
                entry["failed"] += 1
                entry["message"] = result.message
                failure = failure_details(result.details)
                if failure:
                    entry["failure"] = failure
            elif result.type == "load":
                entry["message"] = result.message  # a load run's figures
        canary = [
            {
                "check": r.check,
                "ok": [int(s.ok) for s in r.samples],
                "latency": [s.latency_s for s in r.samples],
            }
            for r in results
            if r.samples and r.samples[0].target == "baseline"
        ]
        summary: dict[str, Any] = {
            "observations": stored_observations(observations, exact=not with_state),
            "checks": checks,
            "canary": canary,
            "cumulative": {k: observation_to_dict(v) for k, v in self.cumulative.items()},
            "decision": glance.decision,
            "rules": {r.name: rule_snapshot(r) for r in glance.rules},
        }
        if self.new_stand_ins:
            summary["stand_ins"] = [
                {"check": check, "at": at, **run, "fingerprint": fingerprint}
                for check, at, run, fingerprint in self.new_stand_ins
            ]
        if self.arrived:
            # with the round (and its state: `stores_state`), so a restart compiles the
            # judge against the baseline that state was folded with
            summary["late_baselines"] = {
                k: observation_to_dict(v) for k, v in self.late_baselines.items()
            }
        if with_state:
            assert self.compiled is not None and self.judge_state is not None
            # a copy: the next round folds the watch's own state in place, maybe before
            # this one is stored
            summary["judge"] = self.compiled.copy(self.judge_state)
        summary.update(self.overload.summary())
        return summary

    async def _hold_lease(self, now: float, length: float) -> bool:
        """Renew the lease when less than half of it would be left after this round: one
        store write every few rounds rather than every round (storing the round checks
        that the window is still ours anyway). The renewal runs beside the round, so a
        slow commit never delays it; only a lease that could lapse within this round is
        waited for. A renewal the store refused stops the watch at the next round."""
        renewing = self.renewing
        if renewing is not None and renewing.done():
            self.renewing = None
            if not renewing.result():
                return False
        held = self.window.lease_until or 0.0
        if held - now >= self.s.lease_s / 2 + length:
            return True
        if self.renewing is None:
            self.renewing = self.s.spawn(self._renew_lease(self.s.lease_s + length))
        if held - now >= length + RENEW_MARGIN_S:
            return True
        renewing = self.renewing
        await self.held.settled_or_held(renewing)
        if not renewing.done():  # the file is held: no other agent takes it meanwhile
            return True
        self.renewing = None
        return bool(renewing.result())

    async def _renew_lease(self, ahead: float) -> bool:
        """Renew the lease until `ahead` seconds from when the store takes it (a renewal
        that waited for a held SQLite file renews from its write, not from its ask)."""
        until = 0.0

        async def renewed() -> bool:
            nonlocal until
            until = self.s.clock() + ahead
            return await self.s.store.renew_lease(self.window.id, self.fence, until)

        if not await self.held.written(renewed, "the window's lease"):
            return False
        self.window.lease_until = max(until, self.window.lease_until or 0.0)
        return True

    def _say_resumed(self, slot: int, number: int, now: float) -> None:
        """A watch that goes on with stored rounds (a restart, a takeover) says how long the
        window went unwatched, once, as its first round starts: the gap is downtime, not a
        slow round (it was logged as "round 3 overran its slot by 602s"). The figure runs
        from the last stored round's end, so it is named so: "resumed after 37.5s down"
        read as the agent's downtime to a user whose agent was down 17 s."""
        if self.resumed_after is None:
            return
        down = max(0.0, now - self.resumed_after)
        passed = slot - (self.last_slot if self.last_slot is not None else -1) - 1
        self.unwatched += max(0, passed)  # missing evidence for the window's end
        self.log.info(
            "round %d resumed after the window went unwatched for %.1fs since round %d ended"
            " (a restart or a takeover, not a slow round): %s",
            number,
            down,
            number - 1,
            "the window ended meanwhile, judged on the rounds it had"
            if now >= self.window.ends_at
            else f"{counted(passed, 'slot')} passed over",
        )

    def _note_overrun(
        self,
        schedule: RoundSchedule,
        slot: int,
        number: int,
        started: float,
        waits: RoundWaits,
        summary: dict[str, Any],
    ) -> None:
        """Count a round whose checks and judging finished after its slot ended (the next
        one starts late or is passed over), by what held it most (`agent.windows.late`),
        which its stored summary keeps (`overrun`); log the first of each window."""
        over = overrun_s(schedule, slot, self.pace(), started=started)
        if over <= 0 or self.held_last_round:
            return
        environment = self.window.environment
        self.s.metrics.round_overruns_total.labels(environment).inc()
        self.s.metrics.round_overrun_causes_total.labels(environment, waits.cause()).inc()
        summary["overrun"] = waits.summary(over)
        if not self.overran:
            self.overran = True
            self.log.warning(
                "round %d overran its %gs slot by %.3fs, %s; further overruns of this window"
                " are only counted, in postflight_round_overruns_total and by cause in"
                " postflight_round_overrun_causes_total",
                number,
                self.env.interval,
                over,
                waits.words(),
            )

    # outcomes --------------------------------------------------------------

    def _with_queries(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add each provider rule's query to its evidence (stored verdict, alerts)."""
        for item in rules:
            query = self.queries.get(str(item.get("name") or item.get("rule")))
            if query and item.get("source") != "checks":
                item.setdefault("query", query)
        return rules

    def _warn_undetectable(self, verdict: Verdict) -> None:
        """Once per rule and window: its bound is tighter than the smallest change it can
        detect by the window's end at this traffic (more probes or a longer window help)."""
        for rule in verdict.rules:
            can = rule.evidence.get("detectable") or {}
            if can.get("bound_below_detectable") and rule.name not in self.warned:
                self.warned.add(rule.name)
                value = can.get("value")
                # none by the window's end ("no regression of any size"): "is below what
                # it can detect no regression ..." read as a bound below nothing
                shape = (
                    "rule %s: %s is below what it can detect: it %s at this traffic"
                    if isinstance(value, int | float) and math.isfinite(value)
                    else "rule %s: %s: it %s at this traffic"
                )
                self.log.warning(shape, rule.name, rule.threshold, can.get("text", "can detect"))

    def _count_rules(self, glance: Glance) -> None:
        """One evaluation per rule per round: a rule past its bound this round but short of
        the threshold policy's `failure_limit` counts as `breaching`, not `pass`."""
        counters = self.rule_counters
        for rule in glance.rules:
            # the threshold streak's (the sequential warning's read-out is not a bound passed)
            breaching = passed_in_a_streak(rule.outcome, rule.evidence)
            outcome = "breaching" if breaching else rule.outcome
            counter = counters.get((rule.name, outcome))
            if counter is None:
                counter = counters[rule.name, outcome] = (
                    self.s.metrics.rule_evaluations_total.labels(
                        self.window.environment, rule.name, outcome
                    )
                )
            counter.inc()

    def _alert_of(
        self,
        event: AlertEvent,
        verdict: Verdict | None = None,
        *,
        reason: str | None = None,
        rules: list[dict[str, Any]] | None = None,
        provider: str | None = None,
        provider_answered: bool = False,
        provider_not_yet: bool = False,
        check: str | None = None,
    ) -> Alert:
        if rules is None and verdict is not None:
            rules = verdict_to_dict(verdict, decided_at=None, links=self.links)["rules"]
        rules = self._with_queries(rules or [])
        return Alert.for_window(
            self.window,
            event,
            reason=reason if reason is not None else (verdict.reason if verdict else ""),
            rules=rules or [],
            provider=provider,
            provider_answered=provider_answered,
            provider_not_yet=provider_not_yet,
            check=check,
            rollback_target=self.env.rollback.target if self.env.rollback else "webhook",
            # the judge's policy says what its pass means (a plugin's too); a pass always
            # follows a judged round, so it is compiled: without one, claim no evidence
            on_evidence=self.compiled is not None and self.compiled.rule_policy.on_evidence,
        )

    def _alert(
        self,
        event: AlertEvent,
        verdict: Verdict | None = None,
        *,
        key: str | None = None,
        reason: str | None = None,
        rules: list[dict[str, Any]] | None = None,
        provider: str | None = None,
        provider_answered: bool = False,
        provider_not_yet: bool = False,
        check: str | None = None,
    ) -> None:
        alert = self._alert_of(
            event,
            verdict,
            reason=reason,
            rules=rules,
            provider=provider,
            provider_answered=provider_answered,
            provider_not_yet=provider_not_yet,
            check=check,
        )
        tags = self.env.alerts.tags
        self._claimed_first(
            lambda claimed: self.s.alerts.emit(
                self.window, alert, tags, key=key, fence=self.fence, claimed=claimed
            )
        )

    def _claimed_first(
        self, emit: Callable[[asyncio.Future[None]], Coroutine[Any, Any, bool]]
    ) -> None:
        """Spawn an alert's `emit`, noting it for `round_claims` until its claim is stored."""
        claimed = asyncio.get_running_loop().create_future()
        task = self.s.spawn(emit(claimed))
        self.claiming = [(c, t) for c, t in self.claiming if not (c.done() or t.done())]
        self.claiming.append((claimed, task))

    def _alert_group(
        self, event: AlertEvent, by_key: dict[str, RuleVerdict], *, final: bool = False
    ) -> None:
        """One `breach` or `resolved` alert for the rules of `by_key` not told yet
        (`WindowAlerts.emit_group` picks them): a round's thirty new breaches page once
        per channel, not thirty times. `final`: the round ends the window."""

        def make(keys: list[str]) -> Alert:
            # each rule's dict only for an alert: most rounds of most windows send none
            rules = [by_key[k] for k in keys]
            return self._alert_of(
                event,
                reason=_group_reason(event, rules),
                rules=[rule_to_dict(r, self.links) for r in rules],
            )

        keys, tags = list(by_key), self.env.alerts.tags
        # a resolve's claim waits on its breach's send here: not held for, but at the end
        # claimed first and sent after that send (`WindowAlerts.emit_group`), a claim as
        # any other: left out, a kill just after the end lost it for good
        if event == "resolved" and not final:
            self.s.spawn(self.s.alerts.emit_group(self.window, keys, make, tags, fence=self.fence))
            return
        self._claimed_first(
            lambda claimed: self.s.alerts.emit_group(
                self.window, keys, make, tags, fence=self.fence, claimed=claimed
            )
        )

    def _send_end_alert(self, alert: Alert, ended_at: float) -> None:
        """The end alert claimed with the window's end (`_end_claim`): sent at once."""
        tags = self.env.alerts.tags
        self.s.spawn(self.s.alerts.send_claimed(self.window, alert, tags, claimed_at=ended_at))

    def _alert_rules(self, verdict: Verdict) -> None:
        """Per round: one alert naming the rules newly breached, one naming those that
        cleared (each rule's breach and resolve still once a window), and one
        `provider_unreachable` per provider per window."""
        previous = self.last_outcomes
        # a rule not judged this round (the agent overloaded) stays as it was: its
        # evidence drops the warning (`overload._calm`), which read as cleared
        self.last_outcomes = {
            r.name: previous.get(r.name, _state(r)) if _not_judged(r) else _state(r)
            for r in verdict.rules
        }
        breached = {breach_key(r.name): r for r in verdict.rules if _state(r) == "breached"}
        if breached:
            self._alert_group("breach", breached)
        cleared = {
            resolved_key(r.name): r
            for r in verdict.rules
            # `pass` with a threshold streak is still past its bound (`_state`): not cleared
            if _cleared(r) and not _not_judged(r) and previous.get(r.name) == "breached"
        }
        if cleared:
            self._alert_group("resolved", cleared, final=verdict.decision != "continue")
        # one alert a provider, naming each of its rules it failed this round (contract §4),
        # where the first rule alone was named and the claim kept the others out
        down: dict[str, list[tuple[RuleVerdict, Observation]]] = {}
        for rule in verdict.rules:
            observed = self._providers_error(rule.name, rule.source)
            if observed is not None:
                down.setdefault(rule.source, []).append((rule, observed))
        for provider, failed in down.items():
            first = failed[0][1]
            names = ", ".join(rule.name for rule, _ in failed)
            # and its other rules, whose fetches had not failed by this round's verdict
            # (still retrying): the alert is the provider's one a window, so a rule left
            # out here was never named (a loaded CI run: p95-latency's third try came later)
            named = {rule.name for rule, _ in failed}
            others = [r for r in verdict.rules if r.source == provider and r.name not in named]
            self._alert(
                "provider_unreachable",
                key=provider_key(provider),
                reason=f"{provider}: {first.error} — "
                + (f"rule {names} is" if len(failed) == 1 else f"rules {names} are")
                + " inconclusive this round",
                rules=[
                    rule_to_dict(rule, self.links) for rule in [*(r for r, _ in failed), *others]
                ],
                provider=provider,
                provider_answered=first.answered,
                provider_not_yet=first.not_yet,
            )

    async def _fail(self, verdict: Verdict, verdict_json: dict[str, Any]) -> None:
        now = self.s.clock()
        rollback_cfg = self.env.rollback
        intent: RollbackIntent | None = None
        if rollback_cfg is not None:
            # labels the other provider's event added since the watch began (it joined
            # this window, `agent.store.base.JOINED_LABELS`): a Vercel rollback reads
            # `vercel.previous` from the body
            stored = await self.s.store.get_window(self.window.id)
            if stored is not None:
                self.window.labels = stored.labels
            intent = rollback_intent(
                self.window,
                verdict.reason,
                breaches(verdict, self.links),
                now,
                dry_run=rollback_cfg.dry_run,
                target=rollback_cfg.target,
            )
            # handed to this replica's sender with the verdict; a survivor takes it
            # over only once this lease lapses (see `Store.take_rollback`)
            if intent.state == "pending":
                intent.lease_owner, intent.lease_epoch = self.s.owner, 1
                intent.lease_until = now + self.s.lease_s
        alert = self._failed_alert(verdict, intent)
        claims = [alert_claim(alert, self.env.alerts.tags)]
        markers = intent is not None and intent.state == "pending"
        if markers:  # claimed with the end, as the alert and the intent: a kill loses none
            claims += marker_claims(self.env, self.s.providers)
        ended = await self.s.store.finish_window(
            self.window.id, "failed", verdict_json, now, intent, self.fence, alerts=claims
        )
        if not ended:
            return
        self.log.warning("deploy failed: %s", verdict.reason)
        self._send_end_alert(alert, now)
        if intent is None or intent.state == "skipped":
            self.s.metrics.windows_total.labels(self.window.environment, "failed").inc()
            return
        self.s.spawn(deliver_rollback(self.window, intent, self.env, self.s))
        for name in marking(self.env, self.s.providers):
            marked = mark_rollback(self.window, self.env, self.s, name, lapsed_before=now + 1.0)
            self.s.spawn(marked)

    def _failed_alert(self, verdict: Verdict, intent: RollbackIntent | None) -> Alert:
        """What a failed verdict tells on-call: the rollback requested, or why none is."""
        failing = breaches_as_rules(verdict, self.links)
        if intent is None:
            reason = f"{verdict.reason} — this environment has no rollback configured"
            return self._alert_of("failed", verdict, rules=failing, reason=reason)
        if intent.state == "skipped":
            reason = f"{verdict.reason} — {intent.last_error}"  # names the target
            return self._alert_of("rollback_skipped", verdict, rules=failing, reason=reason)
        return self._alert_of("rollback_requested", verdict, rules=failing)

    async def _end(self, outcome: str, verdict: Verdict, verdict_json: dict[str, Any]) -> None:
        state: WindowState = "passed" if outcome == "pass" else "inconclusive"
        alert = self._alert_of("passed" if state == "passed" else "inconclusive", verdict)
        now = self.s.clock()
        claims = [alert_claim(alert, self.env.alerts.tags)]
        if not await self.s.store.finish_window(
            self.window.id,
            state,
            verdict_json,
            now,
            fence=self.fence,
            alerts=claims,
            runs=self._kept_stand_ins(),
        ):
            return
        self.s.metrics.windows_total.labels(self.window.environment, state).inc()
        self.log.info("window %s: %s", state, verdict.reason)
        self._send_end_alert(alert, now)


def _warned_in(verdict: dict[str, Any] | None) -> set[str]:
    """The rules a stored verdict shows below what they can detect: the watch that stored
    it warned of them (`_warn_undetectable` logs after the store took the verdict), so a
    restart or another replica resuming the window does not log them again."""
    return {
        str(rule.get("name"))
        for rule in (verdict or {}).get("rules") or []
        if ((rule.get("evidence") or {}).get("detectable") or {}).get("bound_below_detectable")
    }


def _state_of(outcome: str, evidence: dict[str, Any]) -> str:
    """`breached` when a rule failed, or breaches its bound this round without yet
    failing the window (a threshold streak below `failure_limit`, `in_a_streak`, an
    `inconclusive` one at the window's end included; the sequential policy's `breaching`
    read-out): on-call hears of it at once, and of the resolve when it clears."""
    if outcome == "fail" or in_a_streak(evidence) or warned(evidence):
        return "breached"
    return outcome


def _state(rule: RuleVerdict) -> str:
    return _state_of(rule.outcome, rule.evidence)


def _cleared(rule: RuleVerdict) -> bool:
    """Back within its bound: `pass`, or under the sequential policy no longer `breaching`
    while its evidence has yet to show a pass (`inconclusive` until then, with
    `pass_on: evidence`, the default)."""
    state = _state(rule)
    return state == "pass" or (
        state == "inconclusive" and rule.evidence.get("policy") == "sequential"
    )


def _not_judged(rule: RuleVerdict) -> bool:
    """Held by an overloaded agent (`overload._held`: its fail, or a pass after one, within
    the agent's own delay): neither breached nor back within its bound this round. A
    breached `health-p95` at 220ms over a 142ms bound, evidence 8,365 to 1 in a round the
    agent was overloaded, sent "resolved. The rule is back within its bounds", then the
    window's rollback 30 s later (`bench/live_judge.py production`, load 25)."""
    return bool(rule.evidence.get("agent_overloaded"))


def _group_reason(event: AlertEvent, rules: list[RuleVerdict]) -> str:
    """A grouped alert's "why": one rule's own words, or how many (the body lists them,
    each with its detail)."""
    if event == "breach":
        if len(rules) == 1:
            return f"{rules[0].name}: {rules[0].detail}"
        return f"{len(rules)} rules breached in the same round"
    if len(rules) == 1:  # a rate's bound in %, as the body's `threshold max 5%` beside it
        rule = rules[0]
        return f"{rule.name} is back within {bounds_in_units(rule.metric, rule.threshold)}"
    return f"{len(rules)} rules are back within their bounds"


ROLLBACK_SETTLED = "rollback:settled"
"""`Store.claim_alert` key: the one process that counts, alerts and follows up a settled
rollback."""
FOLLOW_UPS = "rollback:follow-ups"
"""Claimed with a delivered rollback, given an outcome once what follows it is done (the
window's state, `rollback.then`): a restart finds the ones owed by this claim alone
(`Store.claims_without_outcome`), however many windows came since."""


async def _ended_with(window: DeployWindow, intent: RollbackIntent, s: WatchServices) -> bool:
    """Whether the rollback was decided with the window's end (a failed verdict, or a
    manual rollback of a watching window): only then is its outcome the window's one
    count. A manual rollback after a pass leaves the window counted as it ended."""
    stored = await s.store.get_window(window.id)
    ended_at = stored.ended_at if stored is not None else None
    return ended_at is None or intent.requested_at <= ended_at


def settled_alert(
    window: DeployWindow,
    env: EnvironmentSettings | None,
    done: RollbackIntent,
    *,
    unconfigured: bool = False,
) -> Alert:
    """What on-call hears of a settled rollback: delivered, or NOT and why (skipped: a
    `dry_run` turned on before it was sent). `unconfigured`: given up because the
    environment (`env` None) or its `rollback` left the configuration."""
    assert unconfigured or (env is not None and env.rollback is not None)
    target = env.rollback.target if env is not None and env.rollback is not None else "webhook"
    if done.state == "delivered":
        event: AlertEvent = "rollback_delivered"
        reason = f"rollback delivered after {counted(done.attempts, 'attempt')}"
    elif done.state == "skipped":  # `rollback.dry_run` turned on before it was sent
        event = "rollback_skipped"
        reason = f"rollback NOT sent: {done.last_error}"
    else:
        event = "rollback_failed"
        reason = (
            f"rollback NOT delivered after {counted(done.attempts, 'attempt')}:"
            if done.attempts
            else "rollback NOT sent:"  # it could not be (no previous Vercel deployment)
        ) + f" {done.last_error or f'HTTP {done.last_status}'}"
    body = json.loads(done.body)
    return Alert.for_window(
        window,
        event,
        reason=f"{reason}. Cause: {body.get('reason', '')}",
        rules=body.get("breaches", []),
        detail=f"The last answer was HTTP {done.last_status}." if done.last_status else "",
        rollback_target=target,
        replaced_by=done.replaced_by if done.state in ("failed", "delivered") else None,
        sent_before=done.sent_before,
        unconfigured=unconfigured,
    )


def settle_claims(
    window: DeployWindow, env: EnvironmentSettings, *, follow_ups: bool
) -> SettleClaims:
    """The settled rollback's alert, and with `follow_ups` a delivered one's
    `FOLLOW_UPS` mark, claimed with the outcome (`RollbackDelivery`)."""

    def claims(done: RollbackIntent) -> list[AlertClaim]:
        claimed = [alert_claim(settled_alert(window, env, done), env.alerts.tags)]
        if follow_ups and done.state == "delivered":
            claimed.append(AlertClaim(FOLLOW_UPS))
        return claimed

    return claims


async def deliver_rollback(
    window: DeployWindow, intent: RollbackIntent, env: EnvironmentSettings, s: WatchServices
) -> None:
    """Deliver a stored rollback intent, then settle the window's state and alert.

    The alert is claimed with the outcome (a kill -9 between them lost the "ROLLBACK
    FAILED" page for good): `WindowAlerts.recover` sends it if this process dies
    before it does."""
    assert env.rollback is not None
    named_for_a_stop(
        f"rollback delivery of {window.id} (unless stored as settled, sent again at the"
        " next start, with its Idempotency-Key)"
    )
    claims = settle_claims(window, env, follow_ups=s.after_rollback is not None)
    done = await s.delivery.deliver(intent, env.rollback, window.environment, claims)
    if done.state not in ("delivered", "failed") or done.lease_owner != s.delivery.owner:
        return  # not settled, or settled by another replica's sender: it follows up
    named_for_a_stop(
        f"the alert and follow-ups of rollback {window.id} (its outcome, {done.state}, is"
        " stored: not sent again; they go out at the next start)"
    )
    try:
        await _follow_up_settled(window, env, done, s)
    except Exception as exc:
        if not store_outage(exc):
            raise
        # spawned, awaited by nobody: raised, it was asyncio's "Task exception was never
        # retrieved" traceback (a PostgreSQL restart, bench/ha_faults.py)
        log.warning(
            "rollback %s is stored; its alert and follow-ups wait: %s"
            " (%s): the alert, claimed with the outcome, is sent by the alert recovery, the"
            " follow-ups once the store answers",
            done.state,
            not_taken(exc),
            exc,
            extra={"deploy_id": window.id, "environment": window.environment},
        )
        if s.follow_ups_owed is not None and done.state == "delivered":
            # claimed with the outcome (`FOLLOW_UPS`): the integrations' next turn finds
            # them, where only the next start did, and a running agent never sent them
            s.follow_ups_owed()


async def _follow_up_settled(
    window: DeployWindow, env: EnvironmentSettings, done: RollbackIntent, s: WatchServices
) -> None:
    """Count, alert and follow up a rollback this sender settled."""
    # Followed up once per settled rollback (a second caller here finds it claimed).
    if not await s.store.claim_alert(window.id, ROLLBACK_SETTLED, s.clock()):
        return
    await s.store.record_alert(window.id, ROLLBACK_SETTLED, done.state, f"by {done.lease_owner}")
    if await _ended_with(window, done, s):
        outcome = "rolled_back" if done.state == "delivered" else "failed"
        s.metrics.windows_total.labels(window.environment, outcome).inc()
    alert = settled_alert(window, env, done)
    settled_at = done.finished_at if done.finished_at is not None else s.clock()
    await s.alerts.send_claimed(window, alert, env.alerts.tags, claimed_at=settled_at)
    if done.state == "delivered" and s.after_rollback is not None:
        await s.after_rollback(window, done)


async def give_up_unconfigured(
    window: DeployWindow,
    intent: RollbackIntent,
    env: EnvironmentSettings | None,
    s: WatchServices,
) -> None:
    """End a rollback still owed whose environment (`env` None) or its `rollback` left the
    configuration: no agent can send it (the target and secret are gone), and left pending
    it stayed so for ever, unalerted. It ends `failed`, its ROLLBACK FAILED alert claimed in
    the same transaction, by the one sender that takes its lease (across replicas and
    restarts), then sent at once (`WindowAlerts.recover` sends it after a crash). The alert
    goes to the environment's channels, or to every channel once the environment, and with
    it its `alerts.tags`, is gone: a page to too many channels beats one to none. Never
    raises (but `CancelledError`): a store error leaves it pending for the next sweep.
    One whose `rollback.dry_run` was turned on since ("never call the webhook") ends
    `skipped` instead, unsent, its alert saying so."""
    try:
        await _give_up_unconfigured(window, intent, env, s)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception(
            "rollback of %s: giving it up failed; retrying",
            window.id,
            extra={"deploy_id": window.id, "environment": window.environment},
        )


async def _give_up_unconfigured(
    window: DeployWindow,
    intent: RollbackIntent,
    env: EnvironmentSettings | None,
    s: WatchServices,
) -> None:
    dry_run = env is not None and env.rollback is not None and env.rollback.dry_run
    now = s.clock()
    held = intent.fence if intent.lease_owner else None
    taken = await s.store.take_rollback(window.id, s.owner, now, now + s.lease_s, held)
    if taken is None:
        return  # another sender holds it, or it ended meanwhile
    if env is None:
        what = f"environment {window.environment!r} is no longer configured"
    elif dry_run:
        what = "rollback.dry_run was turned on before it was delivered"
    else:
        what = f"environment {window.environment!r} no longer configures a rollback"
    again = " again" if taken.attempts else ""
    done = dataclasses.replace(
        taken,
        state="skipped" if dry_run else "failed",
        last_error=f"{what}: given up, not sent{again} by this agent",
        next_attempt_at=None,
        finished_at=now,
        lease_until=None,
    )
    alert = settled_alert(window, env, done, unconfigured=not dry_run)
    tags = env.alerts.tags if env is not None else []
    if not await s.store.settle_rollback(done, alerts=[alert_claim(alert, tags)]):
        return
    log.error(
        "rollback of %s given up: %s",
        window.id,
        done.last_error,
        extra={"deploy_id": window.id, "environment": window.environment},
    )
    if not dry_run:  # a dry run's rollback is neither delivered nor failed
        s.metrics.rollbacks_total.labels(environment=window.environment, result="failed").inc()
    if await _ended_with(window, done, s):
        s.metrics.windows_total.labels(window.environment, "failed").inc()
    await s.alerts.send_claimed(window, alert, tags, claimed_at=now)
