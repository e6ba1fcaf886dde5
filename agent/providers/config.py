"""Configuration models of the baseline providers (`providers:` and an environment's
`baseline:`). Pure models; the settings module composes them."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from agent.durations import Duration

HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+", max_length=2048)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _non_empty(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError("must not be empty")
    return value


class SentrySettings(_Model):
    base_url: HttpUrl = "https://sentry.io"
    org: str = Field(min_length=1)
    token: SecretStr
    markers: bool = False
    timeout: Duration = 10.0

    _token = field_validator("token")(_non_empty)


class NewRelicSettings(_Model):
    api_url: HttpUrl = "https://api.newrelic.com/graphql"
    account_id: int = Field(gt=0)
    api_key: SecretStr
    markers: bool = False
    timeout: Duration = 10.0

    _key = field_validator("api_key")(_non_empty)


class PrometheusSettings(_Model):
    url: HttpUrl = "http://127.0.0.1:9090"
    timeout: Duration = 10.0


class ProvidersSettings(_Model):
    sentry: SentrySettings | None = None
    newrelic: NewRelicSettings | None = None
    prometheus: PrometheusSettings | None = None


class SentryScope(_Model):
    project: str = Field(min_length=1)
    environment: str | None = None


class NewRelicScope(_Model):
    app_name: str | None = None


class BaselineSettings(_Model):
    sentry: SentryScope | None = None
    newrelic: NewRelicScope | None = None
