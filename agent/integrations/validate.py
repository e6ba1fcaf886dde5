"""Cross-section checks of the §7 configuration: what a rollback target, a source or a
gate needs from `integrations`. Pure: reads a validated `Settings`, returns messages
that name the field path. Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent.integrations.config import GateSettings, IntegrationsSettings, SourcesSettings
    from agent.settings import RollbackSettings


class EnvironmentParts(Protocol):
    """What these checks read of an environment: an `EnvironmentSettings`, or the parts of
    one that validated in a document that did not (`agent.settings`)."""

    @property
    def sources(self) -> SourcesSettings: ...
    @property
    def gate(self) -> GateSettings | None: ...
    @property
    def rollback(self) -> RollbackSettings | None: ...


def integration_errors(
    integrations: IntegrationsSettings,
    environments: Mapping[str, EnvironmentParts],
    names: Collection[str] | None = None,
) -> list[str]:
    """`dotted.path: message` of each problem. `names`: every environment's name, when
    `environments` holds only some of them (a gate may follow any)."""
    github = integrations.github
    vercel = integrations.vercel
    known = environments if names is None else names
    errors: list[str] = []
    seen_vercel: dict[tuple[str, str], str] = {}
    seen_github: dict[tuple[str, str], str] = {}
    for name, env in environments.items():
        at = f"environments.{name}"
        if env.sources.vercel is not None:
            if vercel is None:
                errors.append(f"{at}.sources.vercel: needs integrations.vercel")
            key = (env.sources.vercel.project, env.sources.vercel.target.lower())
            if key in seen_vercel:
                errors.append(
                    f"{at}.sources.vercel: {key[0]}/{key[1]} is already mapped to"
                    f" environments.{seen_vercel[key]}"
                )
            seen_vercel[key] = name
        if env.sources.github is not None:
            if github is None:
                errors.append(f"{at}.sources.github: needs integrations.github")
            gkey = (env.sources.github.repository.lower(), env.sources.github.environment.lower())
            if gkey in seen_github:
                errors.append(
                    f"{at}.sources.github: {gkey[0]} {gkey[1]} is already mapped to"
                    f" environments.{seen_github[gkey]}"
                )
            seen_github[gkey] = name
        if env.gate is not None:
            if env.gate.after not in known:
                errors.append(f"{at}.gate.after: no environment {env.gate.after!r}")
            if env.sources.github is None or github is None or github.token is None:
                errors.append(
                    f"{at}.gate: needs sources.github and integrations.github.token"
                    " (the protection rule is answered through the GitHub API)"
                )
        rollback = env.rollback
        if rollback is None:
            continue
        if rollback.target == "vercel":
            if vercel is None or vercel.token is None:
                errors.append(f"{at}.rollback.target: vercel needs integrations.vercel.token")
            if env.sources.vercel is None:
                errors.append(
                    f"{at}.rollback.target: vercel needs sources.vercel.project (which project)"
                )
        if rollback.target == "github":
            if github is None or github.token is None:
                errors.append(f"{at}.rollback.target: github needs integrations.github.token")
            if env.sources.github is None:
                errors.append(
                    f"{at}.rollback.target: github needs sources.github.repository"
                    " (where the workflow lives)"
                )
    return errors
