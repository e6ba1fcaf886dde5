"""The provider contract: a rule and a period in, an `Observation` out.

A provider never raises out of `fetch`: an outage, a 429, a timeout or a body it
cannot parse becomes `Observation(value=None, error=...)`, which the judge treats
as `inconclusive` — never a reason to roll back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from agent.analysis.types import Observation
from agent.providers.config import BaselineSettings
from agent.settings import RuleSettings


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


class Provider(Protocol):
    """One baseline source. Built by `agent.providers.registry.build_providers`."""

    name: str

    async def fetch(
        self, rule: RuleSettings, scope: DeployScope, period: Period, release: str | None
    ) -> Observation: ...

    async def mark(self, scope: DeployScope, event: Literal["deploy", "rollback"]) -> None:
        """Record a deploy marker (Sentry deploy, New Relic change event) if enabled."""
        ...

    def link(
        self,
        rule: RuleSettings,
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
