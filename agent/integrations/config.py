"""Configuration models of contract §7: `integrations.github` / `integrations.vercel`,
an environment's `sources`, `gate`, and the rollback target's own keys. Pure models;
`agent.settings` composes them.

Every field has a default or is optional, so a configuration without integrations
validates unchanged. Tokens and webhook secrets are `SecretStr`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from agent.config_models import (
    HttpUrl,
    StrictModel,
    a_base,
    optional_header_token,
    optional_non_empty_secret,
    without_credentials_beside_a_token,
)
from common.durations import Duration, PositiveDuration

Repository = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", max_length=200)]
Slug = Annotated[str, Field(min_length=1, max_length=200)]


class GithubIntegration(StrictModel):
    api_url: HttpUrl = "https://api.github.com"
    """Overridable for GitHub Enterprise (and tests)."""
    token: SecretStr | None = None
    """Deployment statuses, workflow dispatches, protection-rule answers."""
    webhook_secret: SecretStr | None = None
    """Needed for `POST /v1/hooks/github`; without it every delivery is refused (401)."""
    timeout: PositiveDuration = 10.0
    """One call to the GitHub API."""

    _token = field_validator("token")(optional_header_token)
    _hook_secret = field_validator("webhook_secret")(optional_non_empty_secret)
    _api_url = field_validator("api_url")(without_credentials_beside_a_token)
    _base = field_validator("api_url")(
        a_base("remove it (a token goes in integrations.github.token)")
    )


class VercelIntegration(StrictModel):
    api_url: HttpUrl = "https://api.vercel.com"
    token: SecretStr | None = None
    """Rollbacks and Rolling Releases approvals."""
    team_id: str | None = None
    """Sent as `?teamId=` when set (an empty value means unset)."""
    webhook_secret: SecretStr | None = None
    """Needed for `POST /v1/hooks/vercel` (for an integration: its client secret)."""
    timeout: PositiveDuration = 10.0

    _token = field_validator("token")(optional_header_token)
    _hook_secret = field_validator("webhook_secret")(optional_non_empty_secret)
    _api_url = field_validator("api_url")(without_credentials_beside_a_token)
    _base = field_validator("api_url")(
        a_base(
            "remove it (a token goes in integrations.vercel.token, a team in"
            " integrations.vercel.team_id)"
        )
    )

    @field_validator("team_id")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class IntegrationsSettings(StrictModel):
    github: GithubIntegration | None = None
    vercel: VercelIntegration | None = None


class VercelSource(StrictModel):
    project: Slug
    """The project id (`prj_…`) as Vercel's events carry it (`payload.project.id`)."""
    target: Slug = "production"
    """`production`, `preview` (events whose target is null), or a custom environment;
    compared case-insensitively."""
    rolling_release: bool = False
    """true: when this environment's window passes, approve the Rolling Release's next stage."""
    use_deployment_url: bool = False
    """true: a window opened by a Vercel event probes that deployment's own URL
    (`https://<payload.deployment.url>`, e.g. a preview) instead of `base_url`."""


class GithubSource(StrictModel):
    repository: Repository
    """`owner/name`."""
    environment: Slug
    """The GitHub deployment environment (e.g. `Production`); compared case-insensitively."""
    commit_status: bool = False
    """true: every window of this environment with a commit also sets a commit status
    `postflight/<environment>` on it (pending, then success, failure or error)."""
    use_environment_url: bool = False
    """true: a window opened by a `deployment_status` event probes its `environment_url`
    (for Vercel, the deployment's URL) instead of `base_url`."""


class SourcesSettings(StrictModel):
    vercel: VercelSource | None = None
    github: GithubSource | None = None


class GateSettings(StrictModel):
    after: Slug
    """GitHub deployment protection rule for this environment: approve when the window of
    the same sha in this environment passed, reject when it failed, wait while it runs."""
    timeout: Duration = 3600.0
    """How long to wait for that window to exist and end before rejecting."""


class GithubRollback(StrictModel):
    workflow: Slug
    """The workflow file (`rollback.yml`) or id run by `workflow_dispatch`."""
    ref: Slug = "main"


class FollowUp(StrictModel):
    """A webhook sent after the rollback is delivered (a migration rollback, a cache purge)."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    url: HttpUrl
    secret: SecretStr | None = None
    """Signs it like the rollback webhook; default: `rollback.secret`."""

    _secret = field_validator("secret")(optional_non_empty_secret)
