"""What the deploy page shows, built from stored records. Pure: no I/O, no clock
(the caller passes `now`), no markup.

Everything read from a round or a verdict is read defensively (`.get`, type checks):
the judge's evidence grows fields over time, and a page must render old windows and
new ones alike, showing what exists and skipping what does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, get_args

from agent.analysis import sketch
from agent.analysis.describe import format_percent, is_duration, quantile_of
from agent.analysis.types import Rule
from agent.api.models import shown_state
from agent.records import (
    DeliveryAttempt,
    DeployWindow,
    RollbackIntent,
    RoundRecord,
    sent_before,
)
from agent.web.charts import Chart, band_chart, distribution_chart, evidence_chart, rounds_chart
from agent.web.times import iso
from alerting.events import (
    AlertEvent,
    RollbackTarget,
    delivered_past,
    delivered_past_summary,
    failed_rollback_headline,
    given_up_summary,
)
from alerting.templates import evidence_text
from common.breaching import breaching
from common.units import bounds_in_units, format_value
from common.words import dry_run_unsent_note

DECIDED = ("pass", "fail", "inconclusive")
"""A verdict's outcomes once decided (a window's progress is `pending` until then)."""

MAX_DISTRIBUTION_SAMPLES = 5000
"""Latency samples pooled for the distribution chart (its quantiles barely move past this)."""


@dataclass(slots=True)
class RuleView:
    name: str
    source: str
    metric: str
    outcome: str
    observed: str
    baseline: str
    threshold: str
    detail: str
    evidence: str
    link: str | None
    query: str | None
    charts: list[Chart] = field(default_factory=list)
    per_round: dict[int, str] = field(default_factory=dict)
    """Its value in each round, in words (`100% (past the bound)`): the rounds table's
    column, what the charts draw."""
    bounds: str = ""
    """Its bounds as the charts label them (`max 5%`, `baseline +50% 22 ms`)."""


@dataclass(slots=True)
class CheckFailure:
    check: str
    round: int
    at: str | None
    message: str
    step: str | None
    expected: str | None
    got: str | None
    status: str | None


@dataclass(slots=True)
class DeployView:
    window: DeployWindow
    state: str
    """As the API shows it: `scheduled` for a window whose deployed_at is still ahead."""
    verdict_outcome: str
    reason: str
    progress: dict[str, Any]
    rules: list[RuleView]
    failures: list[CheckFailure]
    rollback: RollbackIntent | None
    attempts: list[DeliveryAttempt]
    alerts: list[tuple[str, str, str]]
    """(stored key, its words, its result), in the order a window sends them."""
    rounds: list[dict[str, Any]]
    deployed_at: str | None
    ends_at: str | None
    failing_rules: list[str]
    broken_steps: list[str] = field(default_factory=list)
    """For each failing rule on a smoke check: the step that broke, expected vs got."""
    rollback_reason: str | None = None
    """Why the rollback was asked for, as its body says (a manual one's, after a pass,
    is nowhere else on the page)."""
    rollback_target: str | None = None
    """Where the environment's rollback goes, in words (`rollback_target_words`): for
    Vercel, the deployment production goes back to."""
    rollback_advice: str | None = None
    """What to do about a FAILED rollback (`failed_rollback_advice`): roll back by hand, or
    not since a newer deploy went out; the page said only "failed" and the last error."""
    ended_at: str | None = None
    """When an ended window ended (set per fetch, `as_of`): one that ended early read
    "Window ends" with its planned end, a moment that never came."""
    ran_s: float | None = None
    """How long an ended window ran, as its moments on the page tell it (`ran_for`)."""

    @property
    def state_note(self) -> str | None:
        """What the state line says after a `failed` whose rollback `rollback.dry_run` kept
        unsent: the page's headline said "failed" alone, the dry run only in its Rollback
        section further down."""
        return dry_run_unsent_note(self.state, self.rollback)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def progress(window: DeployWindow, now: float) -> dict[str, Any]:
    """How far the window has come: rounds, elapsed share of the window, time left."""
    length = max(window.ends_at - window.deployed_at, 1e-9)
    end = window.ended_at if window.ended_at is not None and not window.active else now
    elapsed = min(max(end - window.deployed_at, 0.0), length)
    return {
        "rounds": window.rounds,
        "elapsed_s": round(elapsed, 3),
        "window_s": round(length, 3),
        "fraction": round(elapsed / length, 4) if window.active else 1.0,
        "remaining_s": round(max(window.ends_at - now, 0.0), 3) if window.active else 0.0,
    }


def ran_for(window: DeployWindow, now: float) -> float:
    """How long `window` ran, from its deploy to its end (`now` for one ended with no end
    stored), as the moments the page shows say it: whole seconds, truncated (`iso`). The
    exact figure rounded disagreed with them: deployed at :32.7 and ended at :34.1 read
    "ended after 1s" beside :32 and :34. At most its length, as `progress` has it."""
    end = window.ended_at if window.ended_at is not None else now
    ran = math.floor(end) - math.floor(window.deployed_at)
    return float(min(max(ran, 0), max(window.ends_at - window.deployed_at, 0.0)))


def round_event(record: RoundRecord, window: DeployWindow, now: float) -> dict[str, Any]:
    """The `round` event of the live stream: the round's summary (without the raw
    samples) and the window's progress."""
    summary = record.summary
    observations = {
        name: {k: v for k, v in obs.items() if k != "values"}
        for name, obs in (summary.get("observations") or {}).items()
        if isinstance(obs, Mapping)
    }
    shown: dict[str, Any] = {
        "decision": summary.get("decision"),
        "observations": observations,
        "checks": summary.get("checks") or {},
        "rules": summary.get("rules") or {},
    }
    if summary.get("dropped"):
        shown["dropped"] = summary["dropped"]  # probes the agent's own lag dropped
    return {
        "id": window.id,
        "round": record.number,
        "started_at": iso(record.started_at),
        "summary": shown,
        "progress": progress(window, now),
    }


def bounds(rule: Rule | None, baseline: float | None) -> list[tuple[str, float]]:
    """The rule's bounds as lines: absolute `max`/`min`, and `max_increase` applied to
    the baseline."""
    if rule is None:
        return []
    out: list[tuple[str, float]] = []
    if rule.max is not None:
        out.append(("max", rule.max))
    if rule.min is not None:
        out.append(("min", rule.min))
    if rule.max_increase is not None and baseline is not None:
        tolerance = rule.max_increase
        down = rule.direction == "decrease"
        label = f"baseline {'−' if down else '+'}{format_percent(tolerance)}"
        out.append((label, baseline * (1 - tolerance if down else 1 + tolerance)))
    return out


def _past(value: float | None, lines: Sequence[tuple[str, float]], direction: str) -> bool:
    if value is None:
        return False
    for label, bound in lines:
        if label == "min" or (label.startswith("baseline") and direction == "decrease"):
            if value < bound:
                return True
        elif value > bound:
            return True
    return False


def _interval(evidence: Mapping[str, Any]) -> tuple[float, float] | None:
    for key in ("effect_interval", "confidence_interval", "interval"):
        pair = evidence.get(key)
        if isinstance(pair, list | tuple) and len(pair) == 2:
            lo, hi = _num(pair[0]), _num(pair[1])
            if lo is not None and hi is not None:
                return (lo, hi)
    return None


@dataclass(slots=True)
class Drawn:
    """A rule's charts, and the figures they draw in words."""

    charts: list[Chart]
    per_round: dict[int, str]
    bounds: str


def _rule_charts(
    item: Mapping[str, Any],
    rule: Rule | None,
    rounds: Sequence[RoundRecord],
    baseline_obs: Mapping[str, Any] | None,
    current: bool = False,
) -> Drawn:
    """`current`: the verdict's figures are of the last round drawn (the distribution
    chart then says the judge's figure of the window at the rule's percentile, as the
    rule's facts, the reason, the alerts and the CLI do: read from the histograms of rounds
    cut short, the chart's own was 1% off), unless it holds only the window's first
    `MAX_DISTRIBUTION_SAMPLES`."""
    name = str(item.get("name") or "?")
    metric = str(item.get("metric") or (rule.metric if rule else ""))

    def fmt(value: float) -> str:
        return format_value(metric, value)

    observed: list[tuple[int, float | None]] = []
    ratios: list[tuple[int, float | None]] = []
    needs: dict[int, float] = {}
    samples: list[float] = []
    base_values = [v for v in (baseline_obs or {}).get("values") or () if _num(v) is not None]
    # pooled only for the distribution chart: a rate's or a rule's with no baseline samples
    # read every probe's value of every round to draw nothing
    distribution = is_duration(metric) and bool(base_values)
    for record in rounds:
        obs = (record.summary.get("observations") or {}).get(name) or {}
        observed.append((record.number, _num(obs.get("value"))))
        snap = (record.summary.get("rules") or {}).get(name) or {}
        ratios.append((record.number, _num(snap.get("likelihood_ratio"))))
        if (need := _num(snap.get("likelihood_ratio_needed"))) is not None:
            needs[record.number] = need
        if distribution and len(samples) < MAX_DISTRIBUTION_SAMPLES:
            samples.extend(_drawn_values(obs))
        elif distribution and obs.get("value") is not None:
            current = False  # the chart holds the window's first samples, not all of them
    baseline = _num(item.get("baseline"))
    if baseline is None and baseline_obs:
        baseline = _num(baseline_obs.get("value"))
    lines = bounds(rule, baseline)
    direction = rule.direction if rule else "increase"
    past = [_past(v, lines, direction) for _, v in observed]
    charts = [
        rounds_chart(
            f"{name}: {metric} per round",
            observed,
            fmt=fmt,
            baseline=baseline,
            bounds=lines,
            breach=past,
            y_label=metric,
        )
    ]
    per_round = {
        n: "no data" if v is None else fmt(v) + (" (past the bound)" if beyond else "")
        for (n, v), beyond in zip(observed, past, strict=True)
    }
    said = [f"{label} {fmt(value)}" for label, value in lines]
    if rule is not None and rule.max_increase is not None and baseline is None:
        word = "max_increase" if rule.direction == "increase" else "max_decrease"
        said.append(
            f"{word} {format_percent(rule.max_increase)}"
        )  # no baseline to draw it from yet
    evidence = item.get("evidence") if isinstance(item.get("evidence"), Mapping) else {}
    assert isinstance(evidence, Mapping)
    if evidence.get("policy") == "sequential" or any(v is not None for _, v in ratios):
        final = _num(evidence.get("likelihood_ratio"))
        if rounds and final is not None and all(v is None for _, v in ratios):
            ratios[-1] = (rounds[-1].number, final)  # rounds stored before per-round evidence
        charts.append(
            evidence_chart(
                f"{name}: evidence toward failing",
                ratios,
                _num(evidence.get("likelihood_ratio_needed")),
                needs,
            )
        )
    interval = _interval(evidence)
    tolerance = _num(evidence.get("tolerance"))
    if tolerance is None and rule is not None and rule.max_increase is not None:
        tolerance = rule.max_increase
    if interval is not None and tolerance is not None:
        charts.append(band_chart(f"{name}: effect against the tolerance", interval, tolerance))
    if distribution and samples:
        q, figure = quantile_of(metric), _num(item.get("observed"))
        judged = {q: figure} if q is not None and figure is not None and current else {}
        charts.append(
            distribution_chart(
                f"{name}: latency, new vs baseline", samples, base_values, fmt, judged
            )
        )
    return Drawn(charts, per_round, ", ".join(said))


def _drawn_values(obs: Mapping[str, Any]) -> list[float]:
    """A round's latencies for the distribution chart: all of them, from its histogram
    when the store kept only its first `RAW_VALUES` raw (`bounded_observation_dict`)."""
    histogram = obs.get("histogram")
    if isinstance(histogram, Mapping) and histogram:
        return sketch.values(histogram)
    return [v for v in obs.get("values") or () if _num(v) is not None]


def _last_failures(rounds: Sequence[RoundRecord]) -> list[CheckFailure]:
    last: dict[str, CheckFailure] = {}
    for record in rounds:
        for check, entry in (record.summary.get("checks") or {}).items():
            if not isinstance(entry, Mapping) or not entry.get("failed"):
                continue
            failure = entry.get("failure") if isinstance(entry.get("failure"), Mapping) else {}
            assert isinstance(failure, Mapping)
            last[check] = CheckFailure(
                check=str(check),
                round=record.number,
                at=iso(record.started_at),
                message=str(entry.get("message") or ""),
                step=_text(failure.get("step")),
                expected=_text(failure.get("expected")),
                got=_text(failure.get("got")),
                status=_text(failure.get("status")),
            )
    return sorted(last.values(), key=lambda f: f.check)


ALERT_KEYS = frozenset(get_args(AlertEvent)) | {"marker", "alert"}
"""The heads of the store's alert keys that are alerts (`breach:<rule>`, `passed`, a
marker's `marker:<provider>:<event>`, a follow-up's `alert:then:<name>`, a GitHub or
Vercel call given up, `integration_failed:<its mark>`): the page's
"Alerts sent" leaves out the other marks kept beside them (`rollback:settled`,
`rollback:follow-ups`, `github:*`, `vercel:*`, `then:*`), which are no alert."""


_ALERT_WORDS = {
    "breach": "{} breached",
    "resolved": "{} back within bounds",
    "provider_unreachable": "{} unreachable",
    "check_bug": "check {} has a bug (its runs not evidence)",
    "failed": "deploy failed",
    "rollback_requested": "rollback requested",
    "rollback_skipped": "rollback skipped (dry run)",
    "rollback_delivered": "rollback delivered",
    "rollback_failed": "ROLLBACK FAILED",
    "passed": "deploy passed",
    "inconclusive": "inconclusive",
    "integration_failed": "{} given up (do it by hand)",  # `_integration_words` first
    "marker": "{} marker not recorded",
    "alert": "follow-up {} failed",
}


_ALERT_ORDER = {head: at for at, head in enumerate(_ALERT_WORDS)}
"""The page lists the alerts in the order a window sends them (`_ALERT_WORDS`' order):
sorted by key, "rollback delivered" came above "rollback requested"."""


_ALERT_RESULT_WORDS = {
    "partial": "sent to some channels, failed on others",
    "claimed": "sending",
    "unrouted": "no channel takes it",
}
"""The store's alert results that are not plain words (`sent` and `failed` are)."""


def alert_result_words(result: str) -> str:
    """A stored alert result (`partial`) as the page says it."""
    return _ALERT_RESULT_WORDS.get(result, result)


APPROVAL_MARK = "vercel:approve-stage"
"""The window's Rolling Release approval mark (`agent.windows.integrations.APPROVAL_KEY`):
`skipped` when Postflight declined to approve, `failed` when the approval was given up."""


def _integration_words(mark: str, marks: Mapping[str, str]) -> str | None:
    """What an `integration_failed:<mark>` alert was about, as on-call reads it: which
    call was not made, and what to do. A declined approval (its mark `skipped`: the stage
    now active not known to be the one judged) was no call given up, where the page said
    `vercel:approve-stage given up (do it by hand)` for both."""
    if mark == APPROVAL_MARK:
        if marks.get(APPROVAL_MARK) == "skipped":
            return (
                "Rolling Release stage not approved by Postflight (approve it by hand if"
                " the window judged it)"
            )
        return "Rolling Release stage approval given up (approve it by hand)"
    provider, _, rest = mark.partition(":")
    if provider == "github" and rest.startswith("commit:"):
        return f"GitHub commit status {rest.removeprefix('commit:')} not set (set it by hand)"
    if provider == "github" and rest:
        return f"GitHub deployment status {rest} not posted (post it by hand)"
    if provider == "gate":
        return "protection rule not answered (answer it by hand in GitHub)"
    return None


def alert_words(key: str, marks: Mapping[str, str] | None = None) -> str:
    """A stored alert key (`breach:errors`) as the page says it (`errors breached`);
    `marks`, the window's stored marks, tell what an `integration_failed` was about."""
    head, _, rest = key.partition(":")
    if head == "integration_failed":
        words = _integration_words(rest, marks or {})
        if words is not None:
            return words
    if head == "alert":  # a follow-up's ROLLBACK FAILED, `alert:then:<name>`
        rest = rest.removeprefix("then:")
    elif head == "marker":  # a deploy marker that failed, `marker:<provider>:<event>`
        rest = rest.replace(":", " ")
    words = _ALERT_WORDS.get(head)
    return words.format(rest) if words is not None else key


def rollback_target_words(
    target: str, labels: Mapping[str, str], workflow: str | None = None
) -> str:
    """What on-call reads as the rollback's target: which deployment Vercel's production
    goes back to (`vercel.previous`), which GitHub workflow is dispatched, or the webhook."""
    if target == "vercel":
        previous = labels.get("vercel.previous")
        back = f"deployment {previous}" if previous else "a previous production deployment"
        return f"Vercel's instant rollback, back to {back}"
    if target == "github":
        return f"the GitHub workflow {workflow or '(not configured)'}, dispatched"
    return "the pipeline's rollback webhook"


def deploy_view(
    window: DeployWindow,
    rounds: Sequence[RoundRecord],
    *,
    rules: Sequence[Rule],
    rollback: RollbackIntent | None,
    attempts: Sequence[DeliveryAttempt],
    alerts: Mapping[str, str],
    now: float,
    rollback_target: str | None = None,
) -> DeployView:
    return as_of(
        rounds_view(window, rounds, rules=rules),
        window,
        rollback=rollback,
        attempts=attempts,
        alerts=alerts,
        now=now,
        rollback_target=rollback_target,
    )


def as_drawn(rounds: Sequence[RoundRecord], pooled: dict[str, int]) -> list[RoundRecord]:
    """`rounds` with only what `rounds_view` draws of them, to keep between rounds: each
    observation's value (and its samples until `MAX_DISTRIBUTION_SAMPLES` of its name
    came before: `pooled`, counted on from call to call, as the distribution chart pools
    them), each rule's likelihood ratio, the failed checks and the decision. A 720-round
    page of 50 checks' 40 samples read 27 MB of JSON again on each round."""
    return [drawn_round(record, pooled) for record in rounds]


def drawn_round(record: RoundRecord, pooled: dict[str, int]) -> RoundRecord:
    """One round as `as_drawn` keeps it (rounds in order: `pooled` counts on). The store
    applies it to each round as it parses it (`Store.rounds`'s `each`), so a page's first
    read never holds every probe's parsed sample of every round at once: 720 rounds of 50
    checks' full summaries were millions of objects, which the collector's full passes
    (each holding the GIL, so the loop that times the probes) went through again and
    again while they were parsed."""
    summary = record.summary
    observations, snaps = summary.get("observations") or {}, summary.get("rules") or {}
    checks = summary.get("checks") or {}
    if not all(isinstance(part, Mapping) for part in (observations, snaps, checks)):
        return record  # not a summary a round stores: drawn as it is
    slim: dict[str, Any] = {}
    for name, obs in observations.items():
        if isinstance(obs, Mapping):
            values = obs.get("values") or ()
            histogram = obs.get("histogram")
            more = pooled.get(name, 0) < MAX_DISTRIBUTION_SAMPLES
            if more:
                pooled[name] = pooled.get(name, 0) + (
                    sketch.size(histogram)
                    if isinstance(histogram, Mapping) and histogram
                    else sum(_num(v) is not None for v in values)
                )
            cut = {"samples": obs["samples"]} if "samples" in obs else {}  # a round cut short
            kept = {"values": values} | ({"histogram": histogram} if histogram else {})
            obs = {"value": obs.get("value")} | (kept if more else {}) | cut
        slim[name] = obs
    drawn = {
        "observations": slim,
        "rules": {
            name: {"likelihood_ratio": snap.get("likelihood_ratio")}
            if isinstance(snap, Mapping)
            else snap
            for name, snap in snaps.items()
        },
        "checks": {
            check: entry
            for check, entry in checks.items()
            if isinstance(entry, Mapping) and entry.get("failed")
        },
        "decision": summary.get("decision"),
    }
    return replace(record, summary=drawn)


def rounds_view(
    window: DeployWindow, rounds: Sequence[RoundRecord], *, rules: Sequence[Rule]
) -> DeployView:
    """The page's costly part: what its rounds, verdict, baseline and rules make (the
    charts, the rounds table), the same for every fetch at one stored round; `as_of` adds
    the clock's and the rollback's and alerts' parts. CPU only: it runs off the loop."""
    # the rounds as of `window`, read before them: a round stored between the two reads
    # (its window row counted it in the same transaction) waits for the next read, so the
    # count, verdict and progress shown are those of the rows shown
    rounds = [r for r in rounds if r.number <= window.rounds]
    verdict = window.verdict or {}
    configured = {r.name: r for r in rules}
    items: list[Mapping[str, Any]] = [
        r for r in verdict.get("rules") or [] if isinstance(r, Mapping)
    ]
    named = {str(r.get("name")) for r in items}
    unjudged = "pending" if window.active else "not-judged"
    items += [
        {"name": r.name, "source": r.source, "metric": r.metric, "outcome": unjudged}
        for r in rules
        if r.name not in named
    ]
    baselines = window.baseline or {}
    decided = str(verdict.get("outcome")) in DECIDED
    of_round = _num(verdict.get("round"))  # absent: a decided verdict, of its last round
    current = bool(rounds) and (of_round is None or of_round == rounds[-1].number)
    views = []
    for item in items:
        name = str(item.get("name") or "?")
        metric = str(item.get("metric") or "")
        evidence = item.get("evidence")
        outcome = str(item.get("outcome") or unjudged)
        drawn = _rule_charts(item, configured.get(name), rounds, baselines.get(name), current)
        # the bounds in the unit of the values beside them, as the charts label them: the
        # judge's `max 0.05` beside `observed 50%` and a chart's `max 5%` made on-call do
        # the sum (its words stay in the reason, the API and the webhook)
        threshold = drawn.bounds or bounds_in_units(metric, item.get("threshold"))
        breach = breaching(outcome, evidence)
        if breach is not None and breach.limit:
            threshold = f"{threshold}, {breach.so_far} past it"
            outcome = "short" if decided else "breach"
            if decided:  # passed so: `! pass`, never `✔ pass` beside 40% past max 5%
                threshold += ": too few to fail"
        elif breach is not None:  # the sequential warning's, as `rule breached` was paged
            threshold = f"{threshold}, past it on the evidence: {breach.so_far}"
            outcome = ("short" if outcome == "pass" else outcome) if decided else "breach"
        views.append(
            RuleView(
                name=name,
                source=str(item.get("source") or ""),
                metric=metric,
                outcome=outcome,
                observed=format_value(metric, item.get("observed")),
                baseline=format_value(metric, item.get("baseline")),
                threshold=threshold,
                detail=str(item.get("detail") or ""),
                evidence=evidence_text(evidence),
                link=_text(item.get("link")),
                query=_text(item.get("query")),
                charts=drawn.charts,
                per_round=drawn.per_round,
                bounds=drawn.bounds,
            )
        )
    failures = _last_failures(rounds)
    failing = [v.name for v in views if v.outcome == "fail"]
    outcome, reason = verdict_words(window, verdict)
    return DeployView(
        window=window,
        state=window.state,
        verdict_outcome=outcome,
        reason=reason,
        progress={},
        rules=views,
        failures=failures,
        rollback=None,
        attempts=[],
        alerts=[],
        rounds=[
            {"number": r.number, "at": iso(r.started_at), "decision": r.summary.get("decision")}
            for r in rounds
        ],
        deployed_at=iso(window.deployed_at),
        ends_at=iso(window.ends_at),
        failing_rules=failing,
        broken_steps=_broken_steps(failing, configured, failures),
    )


def as_of(
    built: DeployView,
    window: DeployWindow,
    *,
    rollback: RollbackIntent | None,
    attempts: Sequence[DeliveryAttempt],
    alerts: Mapping[str, str],
    now: float,
    rollback_target: str | None = None,
    rollback_advice: str | None = None,
    rollback_alert: str | None = None,
) -> DeployView:
    """`built` (`rounds_view` of `window`'s stored round) as of `now`, with its rollback,
    delivery attempts and alerts: cheap, done for each fetch. `rollback_alert`: how its
    settled rollback's alert was titled when that named a newer deploy
    (`settled_rollback_words`), which "Alerts sent" says in place of its event's words."""
    settled = None
    if rollback is not None and rollback_alert is not None:
        settled = {"failed": "rollback_failed", "delivered": "rollback_delivered"}.get(
            rollback.state
        )
    return replace(
        built,
        window=window,
        state=shown_state(window, now),
        progress=progress(window, now),
        rollback=rollback,
        attempts=list(attempts),
        alerts=[
            (k, rollback_alert if rollback_alert and k == settled else alert_words(k, alerts), v)
            for k, v in sorted(
                ((k, v) for k, v in alerts.items() if k.split(":", 1)[0] in ALERT_KEYS),
                key=lambda kv: (
                    _ALERT_ORDER.get(kv[0].split(":", 1)[0], len(_ALERT_ORDER)),
                    kv[0],
                ),
            )
        ],
        rollback_reason=rollback.reason if rollback is not None else None,
        rollback_target=rollback_target,
        rollback_advice=rollback_advice,
        ended_at=iso(window.ended_at) if not window.active else None,
        ran_s=ran_for(window, now) if not window.active else None,
    )


def failed_rollback_advice(
    target: RollbackTarget,
    given_up_for: DeployWindow | None,
    *,
    unconfigured: bool,
    attempts: Sequence[DeliveryAttempt] = (),
    deployed_since: DeployWindow | None = None,
    back_to: str | None = None,
) -> str:
    """The FAILED rollback alert's headline (`failed_rollback_headline`, one source for
    both) as the page's plain text: its Markdown marks dropped, the text escaped by the
    template. `given_up_for`: the newer deploy it was given up for, as its alert named;
    `deployed_since`: one that took effect after it failed on its own, or a deploy of
    `back_to` (its `previous_version`) that did it another way. `attempts`: the
    rollback's, what of it went out said as the alert says it."""
    text = failed_rollback_headline(
        target,
        replaced_by=_named(given_up_for),
        sent=sent_before(attempts),
        unconfigured=unconfigured,
        deployed_since=_named(deployed_since),
        back_to=back_to,
    )
    return _plain(text)


def delivered_rollback_advice(
    target: RollbackTarget, newer: DeployWindow | None, previous_version: str | None
) -> str | None:
    """The "rollback delivered after vX was deployed" alert's headline (`delivered_past`)
    as the page's plain text, for a rollback delivered while `newer` took effect: the page
    said "delivered" alone, all well, where the receiver may have rolled `newer` back."""
    if newer is None:
        return None
    return _plain(delivered_past((newer.version, newer.id), target, previous_version))


def settled_rollback_words(
    target: RollbackTarget,
    rollback: RollbackIntent,
    met: DeployWindow | None,
    attempts: Sequence[DeliveryAttempt] = (),
) -> str | None:
    """How the alert of `rollback`, settled, was titled when it named `met`, the newer
    deploy that took effect by its end: given up for it (ROLLBACK NOT SENT / GIVEN UP, vX
    deployed since), or delivered after it (check what serves). "Alerts sent" said
    "ROLLBACK FAILED" and "rollback delivered" for those. None for any other."""
    if met is None:
        return None
    if rollback.state == "delivered":
        return delivered_past_summary(met.version)
    if rollback.given_up_for(met):
        return given_up_summary(met.version, sent_before(attempts), target)
    return None


def _named(window: DeployWindow | None) -> tuple[str, str] | None:
    return (window.version, window.id) if window is not None else None


def _plain(markdown: str) -> str:
    """An alert's headline as the page shows it: its Markdown marks dropped."""
    return markdown.replace("**", "").replace("`", "")


def verdict_words(window: DeployWindow, verdict: Mapping[str, Any]) -> tuple[str, str]:
    """The verdict's outcome and reason as the page says them. A window that ended with
    none (cancelled, superseded) says so, as `status ID` does, with the last figures
    stored and their round: `pending` promised a verdict that will never come."""
    outcome = str(verdict.get("outcome") or "pending")
    reason = str(verdict.get("reason") or "")
    if window.active or (outcome in DECIDED and window.judged):
        return outcome, reason
    said = f"{window.state} before a verdict"
    figures = _num(verdict.get("round"))
    if figures is not None:
        said += f" (figures of round {int(figures)})"
    return "none", said + (f": {reason}" if reason else "")


def _broken_steps(
    failing: Sequence[str], rules: Mapping[str, Rule], failures: Sequence[CheckFailure]
) -> list[str]:
    """`journey-errors: check journey broke at step 'orders' (expected 200, got 500)`."""
    out = []
    for name in failing:
        rule = rules.get(name)
        if rule is None or rule.source != "checks":
            continue
        for f in failures:
            if f.step is None or (rule.check is not None and f.check != rule.check):
                continue
            said = f"{name}: check {f.check} broke at step {f.step!r}"
            if f.expected is not None or f.got is not None:
                said += f" (expected {f.expected}, got {f.got})"
            out.append(said)
    return out
