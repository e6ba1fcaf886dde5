"""A window's probes the agent itself could not measure, and the verdict an overloaded agent
may give: never `fail` (so never a rollback), never `pass`, on rules its probes back.

No I/O: counts what `checks.lag` dropped from a window's rounds, and rewrites a decided
verdict when most of the window's probes were dropped, or when a latency rule failed by no
more than the agent's own delay can add. Why: a saturated agent reads answers late; the
probes it dropped are the agent's problem, not the target's, a window that lost most of
them has no evidence either way on its `source: checks` rules, and the latencies it kept
are still late by up to `checks.lag.least_latency`'s margin.
"""

from __future__ import annotations

import dataclasses
import logging
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent.analysis.describe import format_value, quantile_of
from agent.analysis.stats import percentile
from agent.analysis.types import Observation, Rule, RuleVerdict, Verdict, WindowDecision
from agent.analysis.verdicts import Glance, RuleGlance, and_more
from checks.base import CheckResult
from checks.lag import AGENT_DELAY, AGENT_KERNEL_DELAY, least_latency
from common.words import counted

OVERLOADED_SHARE = 0.5
"""A probe rule whose evidence was mostly dropped (more than this share of the samples, or
for a latency rule of the latencies) is judged by nobody: the window's decision becomes
`inconclusive`. Exactly half is not most, as for a round (`STALLED_ROUND_SHARE`): the
half kept is the target's own evidence (each kept probe passed the drop rule, and a
latency fail on it is still weighed against the agent's delay: `agent_limited`), pinned
by `tests/test_agent_lag.py` (2 of 4)."""

CHECKS = "checks"

STAMPED_SHARE = 0.9
"""The least share of a rule's latencies measured to the kernel's stamp for the guard to
weigh its fail when nothing was dropped (`DelayTally.stamped`)."""


class DropTally:
    """What `checks.lag` dropped from one window's deploy probes: this round and in all, and
    by check, so a rule is judged lost on the drops of the checks it reads (a load check's
    200 requests a round losing their latencies say nothing of a health check's 10)."""

    __slots__ = ("by_check", "delays", "held_fails", "round_by_check")

    def __init__(self) -> None:
        self.delays = DelayTally()
        """The latencies kept, each with the delay the agent measured its reading late by."""
        self.by_check: dict[str | None, list[int]] = {}
        """Check -> [samples, latency, runs] dropped and run in all; None: rounds stored
        before drops were kept by check (they count against every rule)."""
        self.round_by_check: dict[str, list[int]] = {}
        """The same for this round's checks."""
        self.held_fails: dict[str, str] = {}
        """Rule -> why its fail was held as the agent's own delay in an earlier round: such
        a rule never ends `pass` (a threshold policy's streak that a later round broke
        passed a latency x2 whose fail the guard had held)."""

    @property
    def samples(self) -> int:
        """Whole samples dropped (timeouts the agent's stall caused)."""
        return _total(self.by_check, 0)

    @property
    def latency(self) -> int:
        """Answers whose latency was dropped (the answer counted)."""
        return _total(self.by_check, 1)

    @property
    def runs(self) -> int:
        return _total(self.by_check, 2)

    def note(self, results: Sequence[CheckResult], log: logging.LoggerAdapter[Any]) -> None:
        """A round's results (a new round: the round's counts start again); the first round
        with drops is logged, once per window (each drop is in the metrics): the counts
        resumed from stored rounds (`note_summary`) say a watch before a restart or a
        takeover logged it."""
        by_check: dict[str, list[int]] = {}
        for result in results:
            counts = _dropped(result)
            if counts is not None:
                mine = by_check.setdefault(result.check, [0, 0, 0])
                for k in range(3):
                    mine[k] += counts[k]
        earlier = self.samples + self.latency
        self.delays.note(results)
        self._add(by_check)
        self.round_by_check = by_check
        dropped = _total(by_check, 0) + _total(by_check, 1)
        if dropped and not earlier:
            log.warning(
                "%d of %d probes this round dropped: the agent's own event loop was stalled"
                " while they ran (agent overloaded), so they are not counted against the"
                " target; further drops are counted in postflight_samples_dropped_total",
                dropped,
                _total(by_check, 2),
            )

    def _add(self, by_check: Mapping[Any, Sequence[int]]) -> None:
        """Add counts by check (None: stored before drops were kept by check)."""
        for check, counts in by_check.items():
            mine = self.by_check.setdefault(check, [0, 0, 0])
            for k in range(3):
                mine[k] += int(counts[k])
        if self.delays.by_kernel and (self.samples or self.latency):
            self.delays.heartbeat_only()  # `guard` weighs it by the heartbeat's bound from now

    def summary(self) -> dict[str, Any]:
        """The round summary's `dropped` entry, or when nothing was dropped each check's
        probes (`probed`, a load run's every request): a restart resumes the counts by
        check from them (a clean round's `checks` count a load run of 200 as one run, and
        the resumed window judged a load rule lost that the live one did not)."""
        this = self.round_by_check
        samples, latency = _total(this, 0), _total(this, 1)
        if not (samples or latency):
            return {"probed": {c: v[2] for c, v in sorted(this.items())}} if this else {}
        return {
            "dropped": {
                "agent_lag": samples,
                "agent_lag_latency": latency,
                "runs": _total(this, 2),
                "by_check": {c: list(v) for c, v in sorted(this.items())},
                "text": self.words(samples + latency),
            }
        }

    def note_summary(self, summary: Mapping[str, Any]) -> None:
        """A stored round (a restart resumes the window's counts)."""
        checks = summary.get("checks") or {}
        dropped = summary.get("dropped") or {}
        self.delays.resume()
        if "by_check" in dropped:
            self._add(dropped["by_check"])
            return
        if "probed" in summary:
            self._add({c: (0, 0, int(n)) for c, n in summary["probed"].items()})
            return
        runs = dropped.get("runs")
        if dropped:  # stored before drops were kept by check: they count against every rule
            counts = (dropped.get("agent_lag", 0), dropped.get("agent_lag_latency", 0))
            self._add({None: (*counts, runs or 0)})
        if runs is None:  # each check's runs (a load run as one: the round says no more)
            self._add({c: (0, 0, int(entry.get("runs", 0))) for c, entry in checks.items()})

    @staticmethod
    def words(count: int) -> str:
        return f"{counted(count, 'sample')} dropped: agent overloaded"

    def lost(self, rule: Rule) -> bool:
        """Whether most of the window's evidence for `rule` was dropped: a probe rule's
        samples (timeouts dropped), and for a latency rule also the latencies dropped (an
        error rule still counts an answer whose latency was dropped: its status is real),
        of the checks the rule reads (its `check`, or every one)."""
        if rule.source != CHECKS:
            return False
        read = [
            counts
            for check, counts in self.by_check.items()
            if rule.check is None or check is None or check == rule.check
        ]
        runs = sum(c[2] for c in read)
        if not runs:
            return False
        latency = rule.metric.startswith("latency_")
        lost = sum(c[0] + (c[1] if latency else 0) for c in read)
        return lost > OVERLOADED_SHARE * runs

    def guard(
        self,
        glance: Glance,
        verdict: Verdict | None,
        rules: Sequence[Rule],
        baselines: Mapping[str, Observation] | None = None,
        *,
        final: bool = True,
    ) -> tuple[Glance, Verdict | None]:
        """The decision an overloaded agent may give.

        A running window's words say how many probes were dropped so far. A decided
        window ends `inconclusive`, saying so, when a rule lost most of its evidence
        (`lost`), or failed as a latency rule by no more than the agent's own delay can
        add to what it kept (`agent_limited`, against `baselines` by rule) — unless it
        failed on a rule that did neither (a provider's rule, whose evidence is the
        service's own, or an error rule whose answers were kept).

        Before the window's last round (not `final`) such a fail is held, not ended: the
        window goes on, so its other rules are still watched and the held rule is judged
        again each round (a regression that grows past the agent's delay still fails; an
        overloaded agent's first fail ended the window and left an error rule unwatched)."""
        if glance.decision == "continue":
            if verdict is None or not (self.samples or self.latency):
                return glance, verdict
            # the window's words while it runs (the API's `progress`) say so too
            said = f"{verdict.reason} ({self.words(self.samples + self.latency)}, so far)"
            return glance, Verdict(verdict.decision, said, verdict.rules)
        held = {rule.name for rule in rules if self.lost(rule)}
        limited: dict[str, str] = {}
        dropped = self.samples or self.latency
        if glance.decision == "fail":
            by_name = {rule.name: rule for rule in rules}
            for r in glance.rules:
                rule = by_name.get(r.name)
                if rule is None or not (dropped or self.delays.stamped(rule)):
                    continue  # a quiet loop's bound (the heartbeat's beat) would hold a x2
                if r.outcome == "fail" and r.name not in held:
                    base = (baselines or {}).get(r.name)
                    margin = self.delays.margin(rule, kernel=not dropped)
                    why = agent_limited(rule, r.observed, base, margin)
                    if not dropped and not delay_explains(rule, r.observed, base, margin):
                        why = None
                    if why is not None:
                        limited[r.name] = why
        if glance.decision == "fail":
            self.held_fails.update(limited)
        elif glance.decision == "pass":
            # a rule held earlier, that did not fail again: judged by nobody, not passed
            limited = {n: why for n, why in self.held_fails.items() if n not in held}
        again = set(limited) if glance.decision == "pass" else set()
        held |= limited.keys()
        if not held:
            return glance, verdict
        if glance.decision == "fail" and any(
            r.outcome == "fail" and r.name not in held for r in glance.rules
        ):
            return _standing(glance, verdict, held)
        holding = glance.decision == "fail" and not final
        decision: WindowDecision = "continue" if holding else "inconclusive"
        glance = Glance(decision, tuple(_held_glance(r, held, again) for r in glance.rules))
        if verdict is None:
            return glance, None
        late = "".join(f"; {why}" for _, why in sorted(limited.items()))
        then = "held while the window goes on" if holding else "nothing is rolled back"
        what = (
            f"{self.samples + self.latency} of {counted(self.runs, 'probe')} dropped"
            f" ({counted(self.samples, 'timeout')}, {self.latency}"
            f" {'latency' if self.latency == 1 else 'latencies'}) — its own event loop was"
            " stalled while they ran"
            if dropped
            else "none of its probes dropped, but its own event loop read their answers late"
        )
        reason = (
            f"agent overloaded: {what}{late}, so {', '.join(sorted(held))} cannot be judged"
            f" and {then} (the judge alone said: {verdict.decision}: {verdict.reason})"
        )
        rules_said = tuple(_held(r, held, again) for r in verdict.rules)
        return glance, Verdict(decision, reason, rules_said)


def _total(by_check: Mapping[Any, Sequence[int]], k: int) -> int:
    """Column `k` of counts by check (0 samples, 1 latencies dropped, 2 runs), summed."""
    return sum(counts[k] for counts in by_check.values())


def _dropped(result: CheckResult) -> tuple[int, int, int] | None:
    """A deploy probe's (samples dropped, latencies dropped, runs), each load request a
    run; None for a run that is not the deploy's (a canary's baseline target), or that the
    check's own bug ended (`CheckResult.bug`: no measurement at all)."""
    if result.bug:
        return None
    details = result.details
    own = details.get("agent_lag")
    if own is not None or len(result.samples) > 1:  # a load run: each request counts
        target = result.samples[0].target if result.samples else ""
        if details.get("target", target) != "deploy":
            return None
        dropped = own or {}
        samples = dropped.get("agent_lag", 0)
        return samples, dropped.get("agent_lag_latency", 0), len(result.samples) + samples
    if result.samples:
        if result.samples[0].target != "deploy":
            return None
        return 0, int("latency_dropped" in details), 1
    if details.get("dropped"):
        if details.get("target", "deploy") != "deploy":
            return None
        return 1, 0, 1
    return 0, 0, 1


def agent_limited(
    rule: Rule, observed: float | None, base: Observation | None, delay: float | None = None
) -> str | None:
    """Why a failed probe latency rule may be the agent's own delay (None: it is not), on
    a window whose loop fell behind: the latencies it kept may each be late, so the
    window's figure less what that can add (`delay`, as the agent measured it:
    `DelayTally.margin`; None: `checks.lag.least_latency`'s worst case) must still be past
    the rule's limit (a bound, or the baseline's figure plus the allowed increase) for the
    fail to be the target's. A real slowdown of a service that answers in tens of
    milliseconds is past it; a sub-millisecond target's few milliseconds of agent delay
    are not."""
    if rule.source != CHECKS or not rule.metric.startswith("latency_") or observed is None:
        return None
    if rule.direction != "increase":
        return None  # the agent's delay only ever adds to a latency
    limits = [] if rule.max is None else [rule.max]
    if rule.max_increase is not None and base is not None and base.value is not None:
        limits.append(base.value * (1.0 + rule.max_increase))
    least = least_latency(observed, delay)
    if not limits or least > min(limits):
        return None
    figure, limit = format_value(rule.metric, observed), format_value(rule.metric, min(limits))
    margin = format_value(rule.metric, observed - least)
    adds = (
        f"the agent's own delay can add up to {margin} to a reading it kept"
        if delay is None
        else f"the agent measured its own delay adding up to {margin} to this figure"
    )
    return (
        f"{rule.name}'s {rule.metric} {figure} may be as little as"
        f" {format_value(rule.metric, max(0.0, least))} at the target ({adds}),"
        f" not past its limit {limit}"
    )


def delay_explains(
    rule: Rule, observed: float | None, base: Observation | None, margin: float | None
) -> bool:
    """Whether the agent's measured delay (`margin`) accounts for at least half of a
    relative rule's rise over its baseline: a window with nothing dropped is held on
    that only. Why: the judge fails a rule on a rank test over every latency too, with its
    p95 under the limit, so "the figure less the delay is not past the limit" held the
    live run's latency x2 (p95 15 ms against 11 ms, 1 ms of it the agent's)."""
    if observed is None or margin is None:
        return False
    if rule.max_increase is None or base is None or base.value is None:
        return rule.max is not None and observed > rule.max
    return margin >= 0.5 * (observed - base.value)


class DelayTally:
    """A window's kept deploy latencies by check, each with the most the agent measured
    its own reading of it late by (`checks.lag.LoopLag.read_delay`): what the overload
    guard weighs a latency fail by, in place of a worst case. Why: the fixed margin
    (10% + 15 ms) held a fast service's latency x2 on a mildly busy host as the agent's,
    where its readings were measured 1-6 ms late (issue 10).

    Float32 arrays a check, every reading of the window's in each: 432 KB a window-hour at
    10 probes a second, so only what `margin` may still read is kept. A check whose
    readings came without a measure (a load run's requests, each attributed in
    `checks.load`) is `unmeasured`, as is every check of a window resumed from its stored
    rounds: their rules keep the worst case, and nothing of theirs is kept. Once the window
    dropped a reading (`heartbeat_only`), the readings less the kernel's measure go: the
    guard weighs such a window by the heartbeat's bound (`margin`'s `kernel`)."""

    __slots__ = ("by_kernel", "read", "resumed", "stamps", "unmeasured")

    def __init__(self) -> None:
        self.read: dict[str, tuple[array[float], array[float], array[float]]] = {}
        """Check -> (latencies kept, each less its measured delay (the heartbeat's bound),
        each less the kernel's measure where kept, else that bound: only while `by_kernel`)."""
        self.unmeasured: set[str] = set()
        self.stamps: dict[str, list[int]] = {}
        """Check -> [readings whose delay is the kernel's measure (`checks.stamps`),
        readings measured]: the others carry the heartbeat's bound (not on Linux; a new
        connection's first answer, whose connect no stamp sees)."""
        self.resumed = False
        self.by_kernel = True
        """Whether the readings less the kernel's measure are kept (`heartbeat_only`)."""

    def resume(self) -> None:
        """A window resumed from its stored rounds, whose readings were not kept: its rules
        keep the worst case, so none of its readings is kept from now on either."""
        self.resumed = True
        self.read.clear()

    def heartbeat_only(self) -> None:
        """The window dropped a reading (the drops only add up): `guard` weighs its
        latencies by the heartbeat's bound from now on, never again by the kernel's measure,
        whose readings go."""
        self.by_kernel = False
        for read in self.read.values():
            del read[2][:]

    def _unmeasured(self, check: str) -> None:
        """`check` gave a reading without a measure: its rules keep the worst case, and
        what it kept goes (neither `margin` nor `stamped` reads it again)."""
        self.unmeasured.add(check)
        self.read.pop(check, None)
        self.stamps.pop(check, None)

    def note(self, results: Sequence[CheckResult]) -> None:
        """A round's results: the deploy's kept latencies, and what the agent measured."""
        if self.resumed:
            return  # its rules keep the worst case: nothing here is read again
        for result in results:
            samples = result.samples
            if len(samples) != 1:
                if len(samples) > 1 and samples[0].target == "deploy":
                    self._unmeasured(result.check)
                continue
            sample = samples[0]
            latency = sample.latency_s
            if latency is None or sample.target != "deploy" or result.check in self.unmeasured:
                continue
            delay = result.details.get(AGENT_DELAY)
            if delay is None:
                self._unmeasured(result.check)
                continue
            counts = self.stamps.setdefault(result.check, [0, 0])
            kernel = result.details.get(AGENT_KERNEL_DELAY)
            counts[0] += kernel is not None
            counts[1] += 1
            read = self.read.get(result.check)
            if read is None:
                read = self.read[result.check] = (array("f"), array("f"), array("f"))
            read[0].append(latency)
            # the answer came after the request went out: it waited no longer than that
            read[1].append(latency - min(delay, latency))
            if self.by_kernel:
                read[2].append(latency - min(delay if kernel is None else kernel, latency))

    def stamped(self, rule: Rule) -> bool:
        """Whether the latencies `rule` reads were measured to the kernel's stamp, all
        but a few (`STAMPED_SHARE`: a new connection's first answer): then its margin
        (`margin`) is the agent's real delay, and a fail within it is held even when
        nothing was dropped (a loop blocked a few ms at each answer, under the drop
        rule's `SLACK_S`). The heartbeat's bound is up to its beat (10 ms) on a quiet
        loop: weighed without drops on every reading, it held a 2 ms service's x2."""
        if self.resumed or quantile_of(rule.metric) is None:
            return False
        if rule.check is None:
            if self.unmeasured:
                return False
            checks = list(self.read)
        else:
            if rule.check in self.unmeasured:
                return False
            checks = [rule.check]
        counts = [self.stamps.get(c, [0, 0]) for c in checks]
        measured = sum(c[1] for c in counts)
        return measured > 0 and sum(c[0] for c in counts) >= STAMPED_SHARE * measured

    def margin(self, rule: Rule, *, kernel: bool = False) -> float | None:
        """The most the agent's measured delay can add to the window's figure of `rule`
        (a latency quantile) over its checks; None: not measured (the worst case holds).
        By the kernel's measure where kept (`kernel`: a window where nothing was dropped),
        else by the heartbeat's bound: a loop that fell behind runs on a machine that may
        be starved too, whose answers can reach the socket late for it (seen in the e2e
        A/A, the target a thread of the agent's process), and the heartbeat's bound,
        from before the stall, takes that in.

        With each reading's delay `d` measured, the target's latency is at least `x - d`,
        so its quantile is at least the quantile of `x - d` (each order statistic is, and
        the judge's quantile interpolates between two, `agent.analysis.stats.percentile`):
        the margin is the window's quantile of
        `x` less that of `x - d`, which the window's figure, less the margin, never
        overstates."""
        q = quantile_of(rule.metric)
        if q is None or self.resumed:
            return None
        assert self.by_kernel or not kernel, "the kernel's readings went with the first drop"
        if rule.check is None:
            if self.unmeasured:
                return None
            chosen = list(self.read.values())
        else:
            if rule.check in self.unmeasured:
                return None
            found = self.read.get(rule.check)
            chosen = [] if found is None else [found]
        latencies = [x for read in chosen for x in read[0]]
        if not latencies:
            return None
        least = [x for read in chosen for x in read[2 if kernel else 1]]
        return max(0.0, percentile(latencies, q) - percentile(least, q))


def _standing(
    glance: Glance, verdict: Verdict | None, held: set[str]
) -> tuple[Glance, Verdict | None]:
    """A fail that stands on rules that kept their evidence, said as theirs: the held
    rules are `inconclusive` (not judged), and the reason names a standing rule (the
    judge's names the first rule that failed, which may be a held one: a rollback
    explained by the agent's own delay)."""
    glance = dataclasses.replace(glance, rules=tuple(_held_glance(r, held) for r in glance.rules))
    if verdict is None:
        return glance, None
    rules = tuple(_held(r, held) for r in verdict.rules)
    failed = [r for r in verdict.rules if r.outcome == "fail"]
    if failed and failed[0].name in held:
        standing = [r for r in failed if r.name not in held]
        first = standing[0]
        reason = f"{first.name}: {first.detail}" + and_more(len(standing) - 1)
        reason += f"; {', '.join(sorted(held))} not judged: agent overloaded"
        return glance, Verdict(verdict.decision, reason, rules)
    return glance, Verdict(verdict.decision, verdict.reason, rules)


def _held_glance(rule: RuleGlance, probed: Iterable[str], again: Iterable[str] = ()) -> RuleGlance:
    """`rule` not judged: a fail in `probed`, or a pass in `again` (held earlier)."""
    if rule.name not in (again if rule.outcome == "pass" else probed) or rule.outcome not in (
        "fail",
        "pass",
    ):
        return rule
    return dataclasses.replace(rule, outcome="inconclusive", evidence=_calm(rule.evidence))


def _held(rule: RuleVerdict, probed: Iterable[str], again: Iterable[str] = ()) -> RuleVerdict:
    """A probe rule's verdict when the agent was overloaded: a fail is not the target's,
    nor a pass after a fail held earlier (`again`)."""
    if rule.name not in (again if rule.outcome == "pass" else probed) or rule.outcome not in (
        "fail",
        "pass",
    ):
        return rule
    earlier = _EARLIER if rule.outcome == "pass" else ""
    return dataclasses.replace(
        rule,
        outcome="inconclusive",
        detail=f"{rule.detail} (not judged: agent overloaded{earlier})",
        evidence=_calm(rule.evidence),
    )


_EARLIER = "; its fail in an earlier round was within the agent's own delay"


_WARNINGS = frozenset({"streak", "breaching"})
"""What says a rule is past its bound short of failing (`common.breaching`): the threshold
policy's streak, the sequential policy's warning."""


def _calm(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence without a breach warning of either policy (a breach alert, and status's or
    the deploy page's `! breach`, are for the target's breaches, not a held rule's).

    A held rule is a fail (`probed`) or a pass after a held fail (`again`). The sequential
    policy's `breaching` is on neither as the judge writes them: it writes it beside a pass
    or an `inconclusive` only, never a fail, and a rule whose sequential test crossed fails
    every later round (its `crossed` is kept), so it never passes after a held fail; a
    rule the streak judges (`policy: threshold`) has no `breaching`. Dropped all the same,
    as the streak is, so that a held rule never reads as breached whatever the judge
    writes (tests/test_held_rule_calm.py)."""
    calm = {k: v for k, v in evidence.items() if k not in _WARNINGS}
    return {**calm, "agent_overloaded": True}
