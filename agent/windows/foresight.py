"""What a deploy's rules can see, said at registration: bounds below what they can detect.

Reads the background probes the store holds for the lookback (no provider calls: a
registration must answer at once), pools them as the window's baseline will be, and asks
the judge (pure) which bounds are tighter than the change it could detect by the window's
end. Must not decide anything: warnings only.
"""

from __future__ import annotations

import math

from agent.analysis.judge import Judge
from agent.analysis.observe import merge, observe
from agent.analysis.types import Observation, Policy, Rule
from agent.settings import EnvironmentSettings, RuleSettings
from agent.store.base import Store
from agent.windows.probing import unsummarize
from checks.base import Sample


async def background_periods(
    store: Store, environment: str, since: float, until: float
) -> list[list[Sample]]:
    """The background probes of [since, until), one list per background run."""
    rows = await store.probe_summaries(environment, since, until)
    runs: dict[float, list[Sample]] = {}
    for check, at, summary in rows:
        runs.setdefault(at, []).extend(unsummarize(check, summary))
    return list(runs.values())


def background_baseline(
    rule: Rule, periods: list[list[Sample]], env: EnvironmentSettings
) -> Observation:
    """A checks rule's baseline: one observation per background run, pooled (`merge`
    measures how bursty errors are across runs, which the sequential test needs)."""
    seen = [observe(rule, p, env.background_interval) for p in periods]
    with_data = [o for o in seen if o.has_data]
    return merge(with_data) if with_data else observe(rule, [], env.lookback)


def policy_of(env: EnvironmentSettings) -> Policy:
    return Policy(
        name=env.analysis.policy,
        failure_limit=env.analysis.failure_limit,
        confidence=env.analysis.confidence,
        pass_on=env.analysis.pass_on,
    )


async def registration_warnings(
    store: Store, env: EnvironmentSettings, environment: str, deployed_at: float, ends_at: float
) -> list[str]:
    """One sentence per checks rule whose bound it cannot see by the window's end, at the
    traffic of its baseline period (a background run per round)."""
    rules: list[RuleSettings] = [r for r in env.rules if r.source == "checks"]
    if not rules or env.analysis.policy != "sequential":
        return []
    periods = await background_periods(store, environment, deployed_at - env.lookback, deployed_at)
    if not periods:
        return []
    judged = [r.to_rule() for r in rules]
    baselines = {r.name: background_baseline(r, periods, env) for r in judged}
    per_round = {
        name: _size(obs) / max(1, obs.periods) for name, obs in baselines.items() if obs.has_data
    }
    horizon = max(1, math.ceil((ends_at - deployed_at) / env.interval))
    return Judge(judged, baselines, policy_of(env), horizon=horizon).blind_spots(per_round)


def _size(obs: Observation) -> float:
    if obs.total is not None:
        return float(obs.total)
    return float(len(obs.values))
