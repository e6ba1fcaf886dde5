"""What a deploy's rules can see, said at registration: bounds below what they can detect.

Reads the background probes the store holds for the lookback (no provider calls: a
registration must answer at once), pools them as the window's baseline will be, and asks
the judge (pure) which bounds are tighter than the change it could detect by the window's
end. Must not decide anything: warnings only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from agent.analysis.describe import (
    exact_rate_bounds,
    format_percent,
    outage_share,
    threshold_text,
    unit_noun,
)
from agent.analysis.judge import Judge
from agent.analysis.observe import merge, observe
from agent.analysis.types import Observation, Policy, Rule
from agent.records import DeployWindow, RollbackState
from agent.settings import EnvironmentSettings, RuleSettings
from agent.store.base import Store
from agent.windows.evidence import observation_from_dict
from agent.windows.fingerprint import check_fingerprints
from agent.windows.probing import background_every, unsummarize
from agent.windows.schedule import RoundSchedule
from agent.windows.unjudged import check_round_samples, short_window_words
from checks.base import Sample
from checks.registry import build_check
from common.durations import format_duration
from common.times import rfc3339
from common.units import bounds_in_units
from common.words import counted

ROLLBACK_SETTLE_S = 300.0
"""How long after its rollback was delivered an environment is taken to still run the
release that failed: the webhook's 2xx starts a rollback (Vercel's takes seconds, a GitHub
Actions workflow minutes), it does not say when it landed. Five minutes of a lookback
(an hour by default) is the price of not pooling the failed release into the baseline."""

FAILED_STATES = ("failed", "rolled_back")
FAILED_RELEASE_WINDOWS = 50
"""How many of the environment's newest windows `failed_releases` reads."""
PROVIDER_BASELINE_WINDOWS = 5
"""How many of the environment's newest windows a registration looks in for the provider
baselines one fetched (`_latest_provider_baselines`)."""


@dataclass(frozen=True, slots=True)
class FailedRelease:
    """A span of time the environment ran a release whose window failed (or that was
    rolled back on request after it passed)."""

    version: str
    window_id: str
    since: float
    until: float
    rolled_back: bool
    judged: str | None = "fail"
    """The window's own outcome: `fail`, or another for a manual rollback."""
    rollback: RollbackState | None = None
    """Its rollback's state when read (`delivered` once `rolled_back`); None: none was
    asked. A failed window whose rollback is still retried is `failed` until delivery,
    and was said "not rolled back" while its rollback went on."""


async def recent_windows(store: Store, environment: str, limit: int) -> list[DeployWindow]:
    """The environment's `limit` newest windows, newest first."""
    return (await store.list_windows(environment=environment, limit=limit)).items


async def failed_releases(
    store: Store,
    environment: str,
    since: float,
    until: float,
    recent: Sequence[DeployWindow] | None = None,
) -> list[FailedRelease]:
    """When, within [since, until), the environment ran a release that failed its window
    (or was rolled back by hand): from its deploy until the next deploy of the
    environment, or, when its rollback was delivered, `ROLLBACK_SETTLE_S` after that.
    Background runs of those spans probed that release: pooled into the next window's
    baseline (a hotfix's, most often), its errors and latencies made the regression look
    normal. A cancelled window is a deploy when it was cancelled after going live (only
    the watch stopped); the environment's `FAILED_RELEASE_WINDOWS` newest windows (`recent`,
    when the caller listed them already: as many or more, newest first)."""
    if recent is None:
        recent = await recent_windows(store, environment, FAILED_RELEASE_WINDOWS)
    out = []
    for window, end in _live_spans(recent, since, until):
        if window.state not in FAILED_STATES:
            continue
        rolled_back = window.state == "rolled_back"
        intent = await store.get_rollback(window.id)
        if rolled_back and intent is not None and intent.finished_at is not None:
            end = min(end, intent.finished_at + ROLLBACK_SETTLE_S)
        judged = (window.verdict or {}).get("outcome", "fail")  # none stored: the state's
        out.append(
            FailedRelease(
                window.version,
                window.id,
                window.deployed_at,
                end,
                rolled_back,
                judged,
                None if intent is None else intent.state,
            )
        )
    return out


def _live_spans(
    recent: Sequence[DeployWindow], since: float, until: float
) -> list[tuple[DeployWindow, float]]:
    """Each window of `recent` (its `FAILED_RELEASE_WINDOWS` newest) that went live before
    `until`, with when its release stopped being live: the next deploy, else `until`; those
    over before `since` are not given (no run of them is read, nor their rollback)."""
    windows = sorted(
        (w for w in recent[:FAILED_RELEASE_WINDOWS] if w.deployed_at < until and _went_live(w)),
        key=lambda w: w.deployed_at,
    )
    spans = []
    for k, window in enumerate(windows):
        end = windows[k + 1].deployed_at if k + 1 < len(windows) else until
        if end > since:
            spans.append((window, end))
    return spans


@dataclass(frozen=True, slots=True)
class KeptRelease:
    """A span of time the environment ran a release whose window ended inconclusive with a
    relative rule's estimate past its bound. Nothing rolled it back: it stays live, and
    its background runs (and its window's rounds kept as stand-ins) are pooled into the
    next window's baseline, so a regression never shown within bounds became the
    reference, and the next deploy as slow passed `max_increase` (live trial, seed 1 at
    20 probes: 3 of 12 latency x2 passed so). A release whose estimates were within their
    bounds, only unproven, is not one: at few probes most windows end so (8 of 24 A/A
    second registrations at 20 probes, at +5% to +19%), and pooling it is ordinary."""

    version: str
    window_id: str
    since: float
    until: float
    unshown: tuple[str, ...]
    """Its relative rules whose window's estimate was past the bound, each in words with
    that estimate against its baseline."""
    beyond: frozenset[str] = frozenset()
    """Their names (its observed against its baseline, as stored in its verdict): the
    release measured as the regression the rule bounds, left out of that rule's next
    baseline when `KEPT_RUNS_LEFT` others remain."""


def kept_releases(
    recent: Sequence[DeployWindow], env: EnvironmentSettings, since: float, until: float
) -> list[KeptRelease]:
    """The releases live within [since, until) whose window ended inconclusive with a
    relative checks rule of the environment inconclusive and its estimate past the bound
    (its stored verdict's). None for a canary (`baseline_url`): the stable side, probed
    beside it, is its baseline."""
    if env.baseline_url is not None:
        return []
    rules = [r.to_rule() for r in env.rules]
    relative = {r.name: r for r in rules if r.source == "checks" and r.max_increase is not None}
    out = []
    for window, end in _live_spans(recent, since, until):
        if window.state != "inconclusive" or not relative:
            continue
        unshown, beyond = [], set()
        for judged in (window.verdict or {}).get("rules") or []:
            rule = relative.get(str(judged.get("name")))
            observed, base = judged.get("observed"), judged.get("baseline")
            if rule is None or judged.get("outcome") != "inconclusive":
                continue
            if not (isinstance(observed, int | float) and isinstance(base, int | float) and base):
                continue  # no figure (no data, no baseline): it measured nothing of it
            change = observed / base - 1.0
            assert rule.max_increase is not None
            if (change if rule.direction == "increase" else -change) <= rule.max_increase:
                continue  # within its bound, only unproven: its runs are an ordinary baseline
            words = f"{rule.name}: {rule.metric} not shown within {judged.get('threshold')}"
            sign = "+" if change >= 0 else ""
            words += f", {sign}{format_percent(round(change, 2))} against its baseline"
            beyond.add(rule.name)
            unshown.append(words + ", past its bound")
        if unshown:
            out.append(
                KeptRelease(
                    window.version,
                    window.id,
                    window.deployed_at,
                    end,
                    tuple(unshown),
                    frozenset(beyond),
                )
            )
    return out


def _went_live(window: DeployWindow) -> bool:
    """A window's deploy took effect: all but one cancelled before its `deployed_at` (a
    scheduled deploy called off)."""
    if window.state != "cancelled":
        return True
    return window.ended_at is None or window.ended_at >= window.deployed_at


@dataclass(frozen=True, slots=True)
class BackgroundRuns:
    """The background runs a baseline pools, and those it left out as the failed
    releases' (`failed_releases`), counted by release."""

    periods: list[list[Sample]]
    left_out: list[tuple[FailedRelease, int]]
    kept: list[KeptRuns] = field(default_factory=list)
    """The runs that probed a release whose window ended inconclusive (`kept_releases`),
    by release: pooled by some relative rules (said), left out of others'."""
    by_rule: dict[str, list[list[Sample]]] = field(default_factory=dict)
    """The periods of each relative rule that leaves some of them out (`KeptRuns`)."""

    def of(self, rule: str) -> list[list[Sample]]:
        """The runs `rule`'s baseline pools."""
        return self.by_rule.get(rule, self.periods)


KEPT_RUNS_LEFT = 6
"""Runs a relative rule's lookback must hold besides those of the inconclusive releases past
its bound for those to be left out of its baseline: `bench/judge_probes.py`'s six, the
live trial's 30 s of 5 s background runs before its deploys. With fewer, a baseline of
the few others would be too thin to pass anything on evidence: the runs are pooled, said."""


@dataclass(frozen=True, slots=True)
class KeptRuns:
    """A kept release's runs in a lookback: how many, and of the relative rules its
    window's estimate was past the bound of, those whose baselines leave them out
    (`KEPT_RUNS_LEFT` others remaining) and those that keep them (fewer others). Its
    other relative rules pool them unsaid."""

    release: KeptRelease
    runs: int
    left_out_of: tuple[str, ...]
    pooled_by: tuple[str, ...]


async def baseline_runs(
    store: Store,
    environment: str,
    env: EnvironmentSettings,
    since: float,
    until: float,
    recent: Sequence[DeployWindow] | None = None,
) -> BackgroundRuns:
    """The background probes of [since, until), one list per background run: only runs of
    the checks as configured now (`agent.windows.fingerprint`), so runs against an old
    `base_url` or an old definition of a check never stand for its baseline. Runs stored
    before fingerprints were kept are left out too: nothing says what they probed, and
    a baseline restarted (one lookback, as after any change) is safer than one that may
    be of a dead or another target. Runs made while a failed release was live are left
    out (`failed_releases`, which reads `recent` when given)."""
    fingerprints = check_fingerprints(env).values()
    rows = await store.probe_summaries(environment, since, until, fingerprints)
    if recent is None:
        recent = await recent_windows(store, environment, FAILED_RELEASE_WINDOWS)
    failed = [
        f
        for f in await failed_releases(store, environment, since, until, recent)
        if f.until > since
    ]
    inconclusive = kept_releases(recent, env, since, until)
    runs: dict[float, list[Sample]] = {}
    left: dict[FailedRelease, set[float]] = {}
    kept: dict[KeptRelease, set[float]] = {}
    for check, at, summary in rows:
        release = next((f for f in failed if f.since <= at < f.until), None)
        if release is not None:
            left.setdefault(release, set()).add(at)
            continue
        if (stays := next((k for k in inconclusive if k.since <= at < k.until), None)) is not None:
            kept.setdefault(stays, set()).add(at)
        runs.setdefault(at, []).extend(unsummarize(check, summary))
    left_out = [(f, len(ats)) for f, ats in left.items()]
    relative = relative_checks(env.rules)
    by_rule: dict[str, list[list[Sample]]] = {}
    apart: dict[KeptRelease, list[str]] = {}
    for name in relative:
        past = [k for k in kept if name in k.beyond]
        ats = set().union(*(kept[k] for k in past))
        if ats and len(runs) - len(ats) >= KEPT_RUNS_LEFT:
            by_rule[name] = [samples for at, samples in runs.items() if at not in ats]
            for one in past:
                apart.setdefault(one, []).append(name)
    said = [
        KeptRuns(
            k,
            len(ats),
            tuple(apart.get(k, ())),
            tuple(n for n in relative if n in k.beyond and n not in apart.get(k, ())),
        )
        for k, ats in kept.items()
    ]
    return BackgroundRuns(list(runs.values()), left_out, said, by_rule)


LEFT_OUT_NAMED = 3
"""Failed releases a baseline warning names; the rest it counts (`and 90 background runs of
9 more releases`): after 12 rollbacks in a lookback, one clause each was ~1,900 characters
in every registration's warnings."""


def left_out_words(left_out: list[tuple[FailedRelease, int]]) -> str:
    """`12 background runs left out: they probed v3 (dep_…), whose window failed and which
    was rolled back`, one clause per release up to `LEFT_OUT_NAMED`, then the others
    counted, for the log and the registration's warnings: what is true of its rollback
    when read (`rollback_words`)."""
    said = []
    for release, count in left_out[:LEFT_OUT_NAMED]:
        if release.judged != "fail":  # passed, say, and rolled back on request
            fate = f"which was rolled back on request (its window: {release.judged or 'none'})"
        else:
            fate = f"whose window failed and {rollback_words(release)}"
        said.append(
            f"{counted(count, 'background run')} left out of the baseline:"
            f" {'it' if count == 1 else 'they'} probed {release.version} ({release.window_id}),"
            f" {fate}"
        )
    if rest := left_out[LEFT_OUT_NAMED:]:
        runs = sum(count for _, count in rest)
        said.append(
            f"and {counted(runs, 'background run')} of {counted(len(rest), 'more release')},"
            " left out alike"
        )
    return "; ".join(said)


def kept_words(kept: list[KeptRuns]) -> str:
    """`12 background runs of the baseline probed v3 (dep_…), whose window ended
    inconclusive (latency-up: latency_p95 not shown within max_increase 50%, +64% against
    its baseline, past its bound): left out of the baseline of rule latency-up` or `…: kept
    in the baseline of rule latency-up, whose lookback holds fewer than 6 other runs`
    (`KeptRuns`), one clause per release, for the log, the registration's warnings."""
    said = []
    for item in kept:
        release = item.release
        fate = []
        if item.left_out_of:
            fate.append(f"left out of the baseline of {_rules(item.left_out_of)}")
        if item.pooled_by:
            whose = "whose lookbacks hold" if len(item.pooled_by) > 1 else "whose lookback holds"
            fate.append(
                f"kept in the baseline of {_rules(item.pooled_by)}, {whose} fewer than"
                f" {KEPT_RUNS_LEFT} other runs"
            )
        said.append(
            f"{counted(item.runs, 'background run')} of the baseline probed {release.version}"
            f" ({release.window_id}), whose window ended inconclusive"
            f" ({'; '.join(release.unshown)}): {'; '.join(fate)}"
        )
    return "; ".join(said)


def _rules(names: tuple[str, ...]) -> str:
    return f"rule{'s' if len(names) > 1 else ''} {', '.join(names)}"


def rollback_words(release: FailedRelease) -> str:
    """What became of a failed release's rollback, as it stands: a rollback still retried
    (a 503 from its webhook, say) is neither done nor given up."""
    if release.rolled_back:
        return "which was rolled back"
    if release.rollback == "pending":
        return "whose rollback is still being tried"
    if release.rollback == "failed":
        return "whose rollback failed"
    if release.rollback == "skipped":
        return "whose rollback was not sent (rollback.dry_run)"
    return "for which no rollback was asked"


def background_baseline(
    rule: Rule, periods: list[list[Sample]], env: EnvironmentSettings
) -> Observation:
    """A checks rule's baseline: one observation per background run, pooled (`merge`
    measures how bursty errors are across runs, which the sequential test needs)."""
    seen = [observe(rule, p, env.background_interval) for p in periods]
    with_data = [o for o in seen if o.has_data]
    return merge(with_data) if with_data else observe(rule, [], env.lookback)


def round_traffic(rule: Rule, periods: list[list[Sample]], env: EnvironmentSettings) -> float:
    """Samples a window's round gives a checks rule: each check's mean background run,
    summed over the checks the rule reads, and for a check with no run in `periods` (a
    smoke scenario, never run between windows; a load check whose first run, 10 minutes
    apart at the defaults, has not come) its count as a round runs it
    (`check_round_samples`: a scenario's steps `probes_per_round` times, a load check's
    rate × duration). A round runs every check at once (an http check `probes_per_round`
    times, a load check its whole rate × duration), while a background run is one check:
    the pooled baseline's samples per period would count a rule over all checks at about
    one check's traffic. Why the checks without runs: left out, registration said what a
    rule over them can detect at a smaller traffic than the window's rounds give it (the
    example's `probe-errors` in a 5-minute window, registered within 10 minutes of the
    agent's start: 120 samples a round, `error_rate 0.0973 or more`, warned, where its
    rounds hold 320), and so another figure than the window's `progress` and its log said
    of the same rule. A check of another kind with no background runs (a plugin's) is
    not counted, so the figure errs low there: a warning too many, never one missed."""
    by_check: dict[str, list[list[Sample]]] = {}
    for period in periods:
        split: dict[str, list[Sample]] = {}
        for sample in period:
            split.setdefault(sample.check, []).append(sample)
        for check, samples in split.items():
            by_check.setdefault(check, []).append(samples)
    traffic = 0.0
    for read in env.background_checks_of(rule)[0]:
        runs = by_check.get(read.name)
        if runs:
            obs = background_baseline(rule, runs, env)
            if obs.has_data:
                traffic += _size(obs) / max(1, obs.periods)
        elif given := check_round_samples(read, env):
            traffic += given[0]
    return traffic


def policy_of(env: EnvironmentSettings) -> Policy:
    return Policy(
        name=env.analysis.policy,
        failure_limit=env.analysis.failure_limit,
        confidence=env.analysis.confidence,
        pass_on=env.analysis.pass_on,
    )


async def registration_warnings(
    store: Store,
    env: EnvironmentSettings,
    environment: str,
    deployed_at: float,
    ends_at: float,
    *,
    now: float | None = None,
    next_run: NextRun | None = None,
) -> list[str]:
    """One sentence per rule whose bound it cannot see by the window's end, at the traffic
    of its baseline: checks rules from the background runs of the lookback (a run per
    round), provider rules from the baseline the environment's latest window fetched (no
    provider call: a registration must answer at once), scaled to one round. And, under
    any policy, each relative checks rule the lookback has no background run for, with
    when its first is due (`next_run`), unless the deploy is ahead (`now`) and runs may
    still come. The environment's windows are
    listed once, for both (the failed releases' and the provider baselines')."""
    rules: list[RuleSettings] = list(env.rules)
    if not rules:
        return []
    judged = [r.to_rule() for r in rules]
    checks_rules = any(r.source == "checks" for r in judged)
    provider_rules = env.analysis.policy == "sequential" and any(
        r.source != "checks" for r in judged
    )
    recent: list[DeployWindow] = []
    if checks_rules or provider_rules:
        limit = FAILED_RELEASE_WINDOWS if checks_rules else PROVIDER_BASELINE_WINDOWS
        recent = await recent_windows(store, environment, limit)
    baselines: dict[str, Observation] = {}
    per_round: dict[str, float] = {}
    said: list[str] = []
    if checks_rules:
        background = await baseline_runs(
            store, environment, env, deployed_at - env.lookback, deployed_at, recent
        )
        periods = background.periods
        if background.left_out:
            said.append(f"baseline: {left_out_words(background.left_out)}")
        if background.kept:
            said.append(f"baseline: {kept_words(background.kept)}")
        for rule in judged:
            if rule.source == "checks" and background.of(rule.name):
                pooled = background.of(rule.name)
                obs = background_baseline(rule, pooled, env)
                if obs.has_data:
                    baselines[rule.name] = obs
                    per_round[rule.name] = round_traffic(rule, pooled, env)
        said += [w for r in judged if (w := outage_baseline(r, baselines.get(r.name)))]
        if env.baseline_url is None:
            said += _no_background_baselines(
                judged, baselines, env, environment, deployed_at, now, next_run
            )
    schedule = RoundSchedule(deployed_at, env.interval, ends_at)
    horizon = schedule.rounds_from(deployed_at if now is None else now)
    if short := short_window_words(env, horizon, ends_at - deployed_at, registered=True):
        said.append(short)
    if env.analysis.policy != "sequential":
        return said
    if provider_rules:
        fetched = _latest_provider_baselines(recent)
        for rule in judged:
            stored = fetched.get(rule.name)
            if rule.source != "checks" and stored is not None and stored.has_data:
                baselines[rule.name] = stored
                per_round[rule.name] = _size(stored) * env.interval / env.lookback
                if outage := outage_baseline(rule, stored, LAST_PERIOD):
                    said.append(outage)
    if not baselines and not any(exact_rate_bounds(rule) for rule in judged):
        return said
    # the rounds that run (`horizon`): one registered after its start passes over those
    # already past
    spots = Judge(judged, baselines, policy_of(env), horizon=horizon).blind_spots(
        per_round, env.interval
    )
    if checks_rules and periods:
        young = {  # more runs move only a bound set against them: `max 0.05`'s figure holds
            r.name: w
            for r in judged
            if r.source == "checks"
            and r.max_increase is not None
            and (w := young_runs(r, periods, env))
        }
        spots = [
            f"{spot}; {young[name]}" if (name := spot[5:].partition(":")[0]) in young else spot
            for spot in spots
        ]
    return said + spots


def _no_background_baselines(
    judged: list[Rule],
    baselines: dict[str, Observation],
    env: EnvironmentSettings,
    environment: str,
    deployed_at: float,
    now: float | None,
    next_run: NextRun | None,
) -> list[str]:
    """`no_background_baseline` for each relative checks rule without one: a deploy
    registered ahead of its `deployed_at` only when its first background run is due after
    it (before, its runs may still come; none planned here: not said)."""
    at = deployed_at if now is None else now
    out = []
    for rule in judged:
        if rule.source != "checks" or not rule.only_relative or rule.name in baselines:
            continue
        first = first_background_run(rule, env, environment, next_run)
        if deployed_at > at and (first is None or first[1] < deployed_at):
            continue
        out.append(no_background_baseline(rule, env, first, now=at, deployed_at=deployed_at))
    return out


def young_runs(rule: Rule, periods: list[list[Sample]], env: EnvironmentSettings) -> str | None:
    """The background runs of `rule`'s checks that a full lookback would hold more of (an
    agent started, or a check changed, within it), said beside a relative bound it cannot
    see yet (not an absolute one: `probe-errors`' `max 0.05` in a 5-minute window of 40
    probes a round can detect 0.116 over 16 runs of 1% errors and over 120 alike, and
    "it sees more as they come" sent a new user waiting an hour for nothing):
    a load check's runs come 10 minutes apart at the defaults, so an agent's first 10
    minutes had one, and the example's `feed-p95` was warned of at each registration then
    as if it could never see its bound (with the second run, it does). None: all full."""
    runs: dict[str, int] = {}
    for period in periods:
        for name in {sample.check for sample in period}:
            runs[name] = runs.get(name, 0) + 1
    reads, background = env.background_checks_of(rule)
    thin = []
    for config in reads:
        every = background_every(build_check(config), env) if config.name in background else None
        if every is None:
            continue
        full = int(env.lookback // every)
        if runs.get(config.name, 0) < full - 1:  # one short: the grid's phase
            thin.append(
                f"{runs.get(config.name, 0)} of the {full} background runs of {config.name}"
            )
    if not thin:
        return None
    return (
        f"the lookback holds {', '.join(thin)} a full one holds (the agent or the check is"
        " newer than the lookback, or runs were left out): it sees more as they come"
    )


def exact_bound_warnings(rules: list[Rule], env: EnvironmentSettings) -> list[str]:
    """Each rate rule bounded at its very end (`max: 0`, `min: 1`) where windows pass on
    evidence: it can only fail (`exact_rate_bounds`). Registration answers it (through
    `Judge.blind_spots`); the window logs it once as it opens."""
    if env.analysis.policy != "sequential" or env.analysis.pass_on != "evidence":
        return []
    return [f"rule {r.name}: {sentence}" for r in rules for _, sentence in exact_rate_bounds(r)]


LAST_PERIOD = "the environment's last window's (this one's is fetched as it opens)"
"""Whose baseline registration reads for a provider rule: the last window stored it."""


def relative_checks(rules: Iterable[Rule | RuleSettings]) -> list[str]:
    """The checks rules judged against their baseline (`max_increase`), by name: the ones
    whose baseline leaves out or keeps an inconclusive release's runs (`baseline_runs`),
    and whose verdict says so (`kept.KeptBaseline`)."""
    return [r.name for r in rules if r.source == "checks" and r.max_increase is not None]


def outage_baseline(
    rule: Rule, baseline: Observation | None, period: str = "the previous release's period"
) -> str | None:
    """What an error-rate baseline of mostly errors means, or None. A README walk-through's
    background runs began before the service's stand-ins were up (96% errors) and nothing
    said so: an absolute bound does not read the baseline (its failing test is the
    release's own probes or events), but a relative one is measured against it. A
    provider's (Sentry, New Relic) is `period`: the previous release's, before the deploy
    (registration foresees it from the environment's last window's)."""
    share = None if baseline is None else outage_share(rule, baseline.count, baseline.total)
    if baseline is None or share is None:
        return None
    count, total, units = baseline.count or 0, baseline.total or 0, unit_noun(rule)
    meaning = []
    if rule.max is not None or rule.min is not None:
        absolute = bounds_in_units(rule.metric, threshold_text(replace(rule, max_increase=None)))
        meaning.append(f"its {absolute} is judged on the release's own {units}, not on these")
    if rule.max_increase is not None:
        meaning.append("a max_increase over it allows nearly any error rate")
    if rule.source == "checks":
        counted = f"{count:,.0f} of {total:,.0f} background probes in the lookback failed"
        taken = "probed"
    else:
        counted = (
            f"{count:,.0f} of {total:,.0f} {rule.source} events in the lookback, {period}, failed"
        )
        taken = "the previous release measured"
    return (
        f"rule {rule.name}: its baseline is {share:.0%} errors ({counted}): {taken} while"
        f" the service was down, or before it was up? {'; '.join(meaning)}"
    )


NextRun = Callable[[str, str], float | None]
"""When (epoch seconds) the next background run of (environment, check) starts, in the
past while one runs; None where none is planned (`BackgroundProber.next_run`)."""


def first_background_run(
    rule: Rule, env: EnvironmentSettings, environment: str, next_run: NextRun | None
) -> tuple[str, float] | None:
    """The check whose background run comes first among those `rule` reads, and when it
    starts (`next_run`); None when none is planned here."""
    if next_run is None:
        return None
    _, background = env.background_checks_of(rule)
    planned = [(name, at) for name in background if (at := next_run(environment, name)) is not None]
    return min(planned, key=lambda run: run[1], default=None)


def no_background_baseline(
    rule: Rule,
    env: EnvironmentSettings,
    first: tuple[str, float] | None = None,
    *,
    now: float = 0.0,
    deployed_at: float | None = None,
) -> str:
    """Why a relative checks rule will have no baseline: nothing the lookback holds of the
    checks it reads that probe between windows (those that do not are a configuration
    warning: `Settings.baseline_warnings`); with when the `first` of its background runs
    is due (`first_background_run`), which a fresh agent's registration said nothing of,
    nor a deploy's registered ahead of its `deployed_at` whose first run comes after it."""
    _, background = env.background_checks_of(rule)
    ahead = deployed_at is not None and deployed_at > now
    sentence = (
        f"rule {rule.name}: no baseline: the lookback ({format_duration(env.lookback)} before"
        f" the deploy) {'will hold' if ahead else 'holds'} no background run of"
        f" {', '.join(background) or 'its checks'} to"
        " compare with (background probing builds it between windows; a new store or an"
        " agent just started has none yet, and runs left out do not count), so this"
        " max_increase rule ends inconclusive (no baseline) whatever the release does"
    )
    if first is None:
        return sentence
    check, at = first
    if at <= now:
        when = "under way"
    else:
        wait = format_duration(max(math.ceil(at - now), 1))
        when = f"due in {wait} (at {rfc3339(at, millis=False)})"
    if ahead and deployed_at is not None:
        when += f", after the deploy (at {rfc3339(deployed_at, millis=False)})"
    return (
        f"{sentence}; the first background run of {check} is {when}: a deploy registered"
        " once it is stored is judged against it"
    )


def _latest_provider_baselines(recent: Sequence[DeployWindow]) -> dict[str, Observation]:
    """The baselines the environment's most recent window stored (its provider rules'
    lookback, fetched when it opened), by rule name, from the `PROVIDER_BASELINE_WINDOWS`
    newest of `recent` (newest first); empty if none has one yet."""
    for window in recent[:PROVIDER_BASELINE_WINDOWS]:
        if window.baseline:
            return {k: observation_from_dict(v) for k, v in window.baseline.items()}
    return {}


def _size(obs: Observation) -> float:
    if obs.total is not None:
        return float(obs.total)
    return float(len(obs.values))
