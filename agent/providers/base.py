"""The provider contract: a rule and a period in, an `Observation` out.

A provider never raises out of `fetch`: an outage, a 429, a timeout or a body it
cannot parse becomes `Observation(value=None, error=...)`, which the judge treats
as `inconclusive` — never a reason to roll back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

from agent.analysis.types import Observation, Rule
from agent.providers.provider_settings import BaselineSettings


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in UNIX seconds."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class DeployScope:
    """Which deploy a query is about."""

    deploy_id: str
    environment: str
    version: str
    previous_version: str | None
    deployed_at: float
    baseline: BaselineSettings
    canary: bool = False
    """The environment compares against a stable side (`baseline_url`): markers say so."""


class Provider(Protocol):
    """One baseline source. Built by `agent.providers.registry.build_providers`."""

    name: str

    async def fetch(
        self, rule: Rule, scope: DeployScope, period: Period, release: str | None
    ) -> Observation: ...

    async def mark(self, scope: DeployScope, event: Literal["deploy", "rollback"]) -> str | None:
        """Record a deploy marker (Sentry deploy, New Relic change event) if enabled.

        Never raises; a marker that could not be recorded returns one message saying
        why (naming the missing permission), which the watcher sends as an alert."""
        ...

    def link(
        self,
        rule: Rule,
        scope: DeployScope,
        period: Period,
        *,
        release: str | None = None,
    ) -> str | None:
        """The provider's own page showing this rule over `period`, for alerts.

        `release` defaults to `scope.version` (what the watcher fetches the current
        period with); None when the provider has no page for it.
        """
        ...

    async def aclose(self) -> None: ...


def round_increment(previous: Observation | None, current: Observation) -> Observation:
    """This round's own evidence from two cumulative fetches over [T0, now).

    The watcher fetches the current period from the deploy on (so events Sentry or
    New Relic ingest late are still counted), but the judge's sequential tests add
    each round's counts and samples as new evidence: feeding them cumulative figures
    would count early events again every round and overstate confidence. Pure.

    - counts: `count`/`total` minus the previous round's (clamped at zero), the value
      their ratio (no new events: no data for this round, not an error);
    - values (a distribution's samples): the current ones less those already seen (a
      multiset difference: the samples are the newest transactions, so the overlap is
      the ones seen last round);
    - a percentile keeps its value (the provider's figure since T0) with this round's
      counts and samples;
    - anything else (a bare value or count, an error, no previous round): `current` as
      is, so `max: 100` on error_count still means errors since the deploy.
    """
    if previous is None or not previous.has_data or current.error is not None:
        return current
    seconds = (
        max(0.0, current.seconds - previous.seconds)
        if current.seconds is not None and previous.seconds is not None
        else current.seconds
    )
    values = current.values
    if values and previous.values:
        seen: dict[float, int] = {}
        for v in previous.values:
            seen[v] = seen.get(v, 0) + 1
        fresh: list[float] = []
        for v in values:
            if seen.get(v, 0) > 0:
                seen[v] -= 1
            else:
                fresh.append(v)
        values = tuple(fresh)
    if (
        current.count is not None
        and current.total is not None
        and previous.count is not None
        and previous.total is not None
    ):
        total = max(0, current.total - previous.total)
        count = min(max(0, current.count - previous.count), total)
        # a rate: this round's events alone; a percentile keeps the provider's own figure
        rate = count / total if total else None
        value = rate if current.quantile is None else current.value
        return replace(
            current, value=value, count=count, total=total, values=values, seconds=seconds
        )
    return replace(current, values=values, seconds=seconds)
