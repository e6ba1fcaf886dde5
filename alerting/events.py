"""What the agent tells on-call about: one `Alert` per deploy and event. Pure data.

An alert carries the evidence a human needs to act without opening a dashboard:
the rules with observed, baseline and threshold, the reason, and the deploy id.
No I/O here; `alerting.templates` renders it, `alerting.notifier` sends it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.records import DeployWindow

AlertEvent = Literal[
    "breach",
    "resolved",
    "failed",
    "rollback_requested",
    "rollback_skipped",
    "rollback_delivered",
    "rollback_failed",
    "passed",
    "inconclusive",
    "provider_unreachable",
]
"""`failed`: the verdict failed and no rollback webhook is configured.
`rollback_skipped`: the verdict failed and the environment's `rollback.dry_run` is on."""

NotifyType = Literal["info", "success", "warning", "failure"]
"""apprise's notify types (they pick each service's colour and icon)."""

NOTIFY_TYPES: dict[AlertEvent, NotifyType] = {
    # Something looks wrong but nothing has been decided yet.
    "breach": "warning",
    "inconclusive": "warning",
    "provider_unreachable": "warning",
    # The deploy is bad, or the automatic remedy did not happen: a human must look.
    "failed": "failure",
    "rollback_requested": "failure",
    "rollback_skipped": "failure",
    "rollback_failed": "failure",
    # The remedy happened; the pipeline now owns the rollback.
    "rollback_delivered": "info",
    # All good.
    "resolved": "success",
    "passed": "success",
}


def breach_key(rule: str) -> str:
    """The dedup key of a rule's breach: one per deploy and rule, not per round."""
    return f"breach:{rule}"


def resolved_key(rule: str) -> str:
    """The dedup key of a rule's resolve (sent only after its breach was)."""
    return f"resolved:{rule}"


def provider_key(provider: str) -> str:
    """One `provider_unreachable` per deploy and provider."""
    return f"provider_unreachable:{provider}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One notification's content.

    `rules` are dicts in the API's rule shape: name, source, metric, observed,
    baseline, threshold, detail and optionally link (`rule` is accepted for
    `name`, so the rollback body's breaches work as they are). Values are in base
    units (latency in seconds, rates as fractions); the template formats them.
    """

    event: AlertEvent
    environment: str
    version: str
    deploy_id: str
    reason: str = ""
    rules: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    previous_version: str | None = None
    commit: str | None = None
    detail: str = ""
    """Event-specific facts: the rollback's attempts and last status, the provider's error…"""
    provider: str | None = None
    """For `provider_unreachable`: which provider."""
    link: str | None = None
    """Where to look at the deploy (e.g. the API's `/v1/deploys/{id}` on a public address)."""

    @property
    def notify_type(self) -> NotifyType:
        return NOTIFY_TYPES[self.event]

    @classmethod
    def for_window(
        cls,
        window: DeployWindow,
        event: AlertEvent,
        *,
        reason: str = "",
        rules: Sequence[Mapping[str, Any]] = (),
        detail: str = "",
        provider: str | None = None,
        link: str | None = None,
    ) -> Alert:
        """An alert about `window`, carrying its identity (id, environment, versions, commit)."""
        return cls(
            event=event,
            environment=window.environment,
            version=window.version,
            deploy_id=window.id,
            reason=reason,
            rules=tuple(rules),
            previous_version=window.previous_version,
            commit=window.commit,
            detail=detail,
            provider=provider,
            link=link,
        )
