"""Rules their configuration keeps from ever being judged, or from ever failing.

A rule is judged once it has `min_samples` samples (a rate's probes, a latency's probe
times, a bare value's rounds with data): the threshold policy counts them in each round,
`sequential` and `fixed` over the window so far (`agent.analysis.policies`). So a
`min_samples` above what a round can give (threshold), or above what the environment's
window can (the others), leaves the rule `inconclusive` in every window; and a bare
value (a PromQL query's, a checks `throughput`, a Sentry `error_count`, a New Relic query's
without a `total` column) has no count in a round, so the threshold policy judges its every
round with data whatever `min_samples` says. Said at config time (validate-config, and
`run`'s start log), as `Settings`' own warnings are; the judge is unchanged.

What a round can give is read from the configuration: an http check's
`probes_per_round`, a smoke scenario's steps that many times, a load check's measured
requests (rate × duration). A check of another type (a plugin's), or a provider rule
whose count only its answer tells, is not counted: no warning rather than a wrong one.

And under the threshold policy a rule fails after `failure_limit` consecutive rounds past
its bound: a window of fewer rounds fails nothing, however bad the release (its rules end
`inconclusive`, "too few to fail", `agent.analysis.policies.threshold`). So does a bare
value the sequential policy judges by that streak (`agent.analysis.threshold.keeps_the_streak`).

Pure: no I/O.
"""

from __future__ import annotations

import math

from agent.analysis.describe import quantile_of
from agent.analysis.threshold import keeps_the_streak
from agent.providers.plugins import config_model_for
from agent.settings import CheckSettings, EnvironmentSettings, RuleSettings, Settings
from agent.settings_units import Loc
from agent.windows.schedule import RoundSchedule
from checks.http import HttpCheckConfig
from checks.load import LoadCheckConfig
from checks.smoke import SmokeCheckConfig
from common.durations import format_duration
from common.words import counted

OVER_THE_WINDOW = ("sequential", "fixed")
"""The policies that count a rule's samples over the window so far."""


def min_samples_warnings(settings: Settings) -> list[tuple[Loc, str]]:
    """(loc, message) of each rule whose `min_samples` does not apply (a bare value under
    the threshold policy) or is never reached (above a round's samples under it, above
    the environment's window's under the others), at the rule's `min_samples`."""
    warnings: list[tuple[Loc, str]] = []
    for name, env in settings.environments.items():
        for index, rule in enumerate(env.rules):
            if rule.min_samples <= 1:
                continue
            message = _unjudged(env, rule)
            if message is not None:
                warnings.append((("environments", name, "rules", index, "min_samples"), message))
    return warnings


def check_round_samples(check: CheckSettings, env: EnvironmentSettings) -> tuple[int, str] | None:
    """The most samples one round gives a rule from `check`, and whence; None
    for a type whose count its configuration does not say (a plugin's). Registration's
    traffic reads a smoke scenario's here too (`agent.windows.foresight.round_traffic`)."""
    probes = env.probes_per_round
    if isinstance(check, HttpCheckConfig):
        return probes, f"{check.name}'s {counted(probes, 'probe')}"
    if isinstance(check, SmokeCheckConfig):
        steps = len(check.steps)
        return steps * probes, f"{check.name}'s {counted(steps, 'step')} × {counted(probes, 'run')}"
    if isinstance(check, LoadCheckConfig):
        measured = check.requests()[1]
        return measured, f"{check.name}'s {counted(measured, 'request')}, rate × duration"
    return None


def _bare(rule: RuleSettings) -> bool:
    """Whether each round's figure of `rule` has no sample count."""
    if rule.source == "checks":
        return rule.metric == "throughput"
    model = config_model_for(rule.source)
    hook = getattr(model, "bare_value", None)
    return bool(hook(rule.to_rule())) if hook is not None else False


def _round_samples(env: EnvironmentSettings, rule: RuleSettings) -> tuple[int, str] | None:
    """The most samples a round gives `rule` over checks, and from what; None when a check
    it reads is of a type not counted."""
    parts = []
    for check in env.checks:
        if rule.check not in (None, check.name):
            continue
        given = check_round_samples(check, env)
        if given is None:
            return None
        parts.append(given)
    if not parts:
        return None  # a check the rule names that is not there: an error of its own
    return sum(n for n, _ in parts), ", ".join(said for _, said in parts)


def _unjudged(env: EnvironmentSettings, rule: RuleSettings) -> str | None:
    threshold = env.analysis.policy == "threshold"
    if not threshold and env.analysis.policy not in OVER_THE_WINDOW:
        return None  # a registered policy of its own: how it counts is its own
    needed = rule.min_samples
    if _bare(rule):
        if threshold:
            return (
                f"rule {rule.name!r}: min_samples {needed} does not apply under analysis.policy"
                f" threshold: its {rule.display_metric} (source {rule.source}) is one figure"
                " a round, with no sample count, so every round with data is judged; remove"
                " min_samples (sequential and fixed count its rounds with data)"
            )
        return _beyond_the_window(env, rule, 1, "one figure")
    if rule.source != "checks":
        return None  # a provider's count: known only once it answers
    per_round = _round_samples(env, rule)
    if per_round is None:
        return None
    samples, how = per_round
    if not threshold:
        return _beyond_the_window(env, rule, samples, f"{samples} ({how})")
    if needed <= samples:
        return None
    reads = [c for c in env.checks if rule.check in (None, c.name)]
    more = (
        "raise the load check's rate or duration"
        if all(isinstance(c, LoadCheckConfig) for c in reads)
        else "raise probes_per_round"
    )
    return (
        f"rule {rule.name!r}: min_samples {needed} is more than a round can give it"
        f" ({samples}: {how}), and analysis.policy threshold counts each round's samples,"
        " so no round is ever judged and the rule ends inconclusive in every window;"
        f" lower min_samples to at most {samples}, or {more}"
    )


def _beyond_the_window(
    env: EnvironmentSettings, rule: RuleSettings, samples: int, each: str
) -> str | None:
    """Under `sequential` or `fixed`: `rule`'s `min_samples` above what the environment's
    window gives it at `samples` a round (`each` says them)."""
    rounds = _rounds(env)
    reach = samples * rounds
    needed = rule.min_samples
    if needed <= reach:
        return None
    longer = format_duration(math.ceil(needed / samples) * env.interval)
    return (
        f"rule {rule.name!r}: min_samples {needed} is more than the environment's window of"
        f" {format_duration(env.window)} can give it ({reach}: {counted(rounds, 'round')} of"
        f" {each} each), and analysis.policy {env.analysis.policy} counts them over the"
        " window, so the rule is never judged and ends inconclusive in every window; lower"
        f" min_samples to at most {reach}, or lengthen window to {longer}"
    )


def failure_limit_warnings(settings: Settings) -> list[tuple[Loc, str]]:
    """(loc, message) of each environment whose window has fewer rounds than its
    `failure_limit`, at the limit, where the judge counts that streak: under threshold no
    rule of it can fail a window; under sequential, none of its bare values judged by the
    streak (`keeps_the_streak`) can."""
    warnings: list[tuple[Loc, str]] = []
    for name, env in settings.environments.items():
        message = short_window_words(env, _rounds(env), env.window)
        if message is not None:
            warnings.append((("environments", name, "analysis", "failure_limit"), message))
    return warnings


def short_window_words(
    env: EnvironmentSettings, rounds: int, length: float, *, registered: bool = False
) -> str | None:
    """What a window of `rounds` rounds (`length` seconds) cannot do at `env`'s
    `failure_limit`, or None: the environment's window (`failure_limit_warnings`), or
    one a registration asked for (`registered`: its `window`, or its `deployed_at` long
    past, leaves it fewer rounds; `foresight.registration_warnings`), where a 2 s window
    of 1 s rounds at `failure_limit: 3` was answered with no warning and failed nothing."""
    limit = env.analysis.failure_limit
    if limit <= rounds:
        return None
    whose = "this window" if registered else "the environment's window"
    window = (
        f"failure_limit {limit} is more than the {counted(rounds, 'round')} of {whose}"
        f" ({format_duration(length)} of {format_duration(env.interval)} rounds)"
    )
    longer = format_duration(limit * env.interval)
    fix = (
        f"register a window of at least {longer}, or lower failure_limit to at most {rounds}"
        if registered
        else f"lower failure_limit to at most {rounds}, or lengthen window to {longer}"
    )
    if env.analysis.policy == "threshold":
        fails = "this window cannot fail" if registered else "no window ever fails"
        return (
            f"{window}, and analysis.policy threshold fails a rule after {limit}"
            f" consecutive rounds past its bound, so {fails} and nothing is rolled back: {fix}"
        )
    if env.analysis.policy == "sequential" and (streaked := _streak_judged(env)):
        names = ", ".join(repr(rule.name) for rule in streaked)
        which, none = (
            (f"rule {names}", "it never fails")
            if len(streaked) == 1
            else (f"rules {names}", "none of them ever fails")
        )
        return (
            f"{window}, and analysis.policy sequential judges {which} as threshold does"
            " (a bare value's min, relative decrease or max of 0 or below has no"
            f" sequential test), failing one after {limit} consecutive rounds past its"
            f" bound, so {none} {'this' if registered else 'a'} window: {fix}"
        )
    return None


def _streak_judged(env: EnvironmentSettings) -> list[RuleSettings]:
    """The rules of `env` the sequential judge fails by the threshold streak alone, as far
    as the configuration tells: a bare value (no rate, a percentile only without samples)
    whose bounds have no sequential test. One over a baseline of 0 or below, or whose
    values go below 0, joins them only as the window runs, unsaid here."""
    return [
        rule
        for rule in env.rules
        if (quantile_of(rule.display_metric) is None or _bare(rule))
        and keeps_the_streak(rule.to_rule())
    ]


def _rounds(env: EnvironmentSettings) -> int:
    """The rounds a window of the environment's length holds."""
    return RoundSchedule(0.0, env.interval, env.window).slots
