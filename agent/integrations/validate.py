"""Cross-section checks of the §7 configuration: what a rollback target, a source or a
gate needs from `integrations`. Pure: reads a validated `Settings`, returns messages
that name the field path. Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent.integrations.config import IntegrationsSettings, SourcesSettings


class GatePart(Protocol):
    """What these checks read of a gate: the environment it waits on (None: given, but
    not readable)."""

    @property
    def after(self) -> str | None: ...


class RollbackPart(Protocol):
    """What these checks read of a rollback: its target."""

    @property
    def target(self) -> str: ...


class EnvironmentParts(Protocol):
    """What these checks read of an environment: an `EnvironmentSettings`, or the parts of
    one that validated in a document that did not (`agent.settings`)."""

    @property
    def sources(self) -> SourcesSettings: ...
    @property
    def gate(self) -> GatePart | None: ...
    @property
    def rollback(self) -> RollbackPart | None: ...


def integration_errors(
    integrations: IntegrationsSettings,
    environments: Mapping[str, EnvironmentParts],
    names: Collection[str] | None = None,
    unread: Collection[str] = (),
) -> list[str]:
    """`dotted.path: message` of each problem. `names`: every environment's name, when
    `environments` holds only some of them (a gate may follow any). `unread`: the paths
    of parts given that did not validate (`integrations.github`,
    `environments.<name>.sources.vercel`), None in these settings: a check that would say
    one is missing is left out (its own error says what is wrong with it)."""
    github = integrations.github
    vercel = integrations.vercel
    known = environments if names is None else names
    errors: list[str] = []
    seen_vercel: dict[tuple[str, str], str] = {}
    seen_github: dict[tuple[str, str], str] = {}

    def lacks(part: object, path: str) -> bool:
        return part is None and path not in unread

    for name, env in environments.items():
        at = f"environments.{name}"
        no_vercel_source = lacks(env.sources.vercel, f"{at}.sources.vercel")
        no_github_source = lacks(env.sources.github, f"{at}.sources.github")
        no_vercel_token = lacks(vercel, "integrations.vercel") or (
            vercel is not None and vercel.token is None
        )
        no_github_token = lacks(github, "integrations.github") or (
            github is not None and github.token is None
        )
        if env.sources.vercel is not None:
            if lacks(vercel, "integrations.vercel"):
                errors.append(f"{at}.sources.vercel: needs integrations.vercel")
            key = (env.sources.vercel.project, env.sources.vercel.target.lower())
            if key in seen_vercel:
                errors.append(
                    f"{at}.sources.vercel: {key[0]}/{key[1]} is already mapped to"
                    f" environments.{seen_vercel[key]}"
                )
            seen_vercel[key] = name
        if env.sources.github is not None:
            if lacks(github, "integrations.github"):
                errors.append(f"{at}.sources.github: needs integrations.github")
            gkey = (env.sources.github.repository.lower(), env.sources.github.environment.lower())
            if gkey in seen_github:
                errors.append(
                    f"{at}.sources.github: {gkey[0]} {gkey[1]} is already mapped to"
                    f" environments.{seen_github[gkey]}"
                )
            seen_github[gkey] = name
        if env.gate is not None:
            if env.gate.after is not None and env.gate.after not in known:
                errors.append(f"{at}.gate.after: no environment {env.gate.after!r}")
            readable = {f"{at}.sources.github", "integrations.github"}.isdisjoint(unread)
            if readable and (no_github_source or no_github_token):  # one message names both
                errors.append(
                    f"{at}.gate: needs sources.github and integrations.github.token"
                    " (the protection rule is answered through the GitHub API)"
                )
        rollback = env.rollback
        if rollback is None:
            continue
        if rollback.target == "vercel":
            if no_vercel_token:
                errors.append(f"{at}.rollback.target: vercel needs integrations.vercel.token")
            if no_vercel_source:
                errors.append(
                    f"{at}.rollback.target: vercel needs sources.vercel.project (which project)"
                )
        if rollback.target == "github":
            if no_github_token:
                errors.append(f"{at}.rollback.target: github needs integrations.github.token")
            if no_github_source:
                errors.append(
                    f"{at}.rollback.target: github needs sources.github.repository"
                    " (where the workflow lives)"
                )
    return errors
