"""The configuration: typed models of `postflight.yaml`, loaded with pydantic-settings.

Pure models plus one loader (`load_settings`). The models cover the whole public
example configuration; `agent.settings_file` reads the YAML, expands `${VAR}` and
maps errors back to file lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    AfterValidator,
    AnyUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from agent.analysis import policies
from agent.analysis.describe import exact_rate_bounds
from agent.analysis.types import PolicyName, Rule
from agent.config_models import (
    FieldError,
    HttpUrl,
    StrictModel,
    a_base,
    header_token,
    non_empty_secret,
    optional_non_empty_secret,
    query_read_by_none,
)
from agent.integrations.config import (
    FollowUp,
    GateSettings,
    GithubIntegration,
    GithubRollback,
    GithubSource,
    IntegrationsSettings,
    Slug,
    SourcesSettings,
    VercelIntegration,
    VercelSource,
)
from agent.providers.plugins import ProviderPluginError, config_model_for, plugin_names
from agent.providers.provider_settings import BaselineSettings, ProvidersSettings
from agent.store.location import SQLITE_PREFIX
from checks.base import CheckConfig
from checks.registry import config_models
from common.durations import (
    DURATION_TEXT_PATTERN,
    Duration,
    Fraction,
    PositiveDuration,
    at_least,
    at_most,
    format_bound,
    format_duration,
    parse_duration,
    schema_bounds,
)
from common.redaction import SHORTEST_SECRET, url_secrets
from common.words import counted

CHECK_METRICS = ("error_rate", "latency_p50", "latency_p95", "latency_p99", "throughput")
LATENCY_METRICS = ("latency_p50", "latency_p95", "latency_p99", "p95_duration")
DECREASE_IS_BAD = ("crash_free_rate", "throughput")
NEVER_NEGATIVE = ("error_rate", "crash_free_rate", "throughput", "error_count")
"""Metrics that are 0 or more (latencies are durations, refused below 0 as such)."""

MIN_API_TOKEN_LENGTH = 16
"""Bearer tokens guard rollbacks and cancels; shorter ones are guessable (a warning)."""

NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
"""Every name in the configuration (environments, checks, rules, tokens)."""

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]


MAX_VIEW_TTL_S = 3650 * 86400.0
"""The longest a `?view=` link may stay valid: ten years. A link carries its expiry as at
most 12 digits of seconds (`agent.web.links`), so a `view_ttl` of 99999999d validated
and gave links that no page opened."""


ApiToken = Annotated[SecretStr, AfterValidator(header_token)]
"""Not empty, and one a header can carry: an element's validator, so an error names the
token's own path (`api_tokens[0]`). A short one is a warning (`Settings.token_warnings`),
not an error."""


class ServerSettings(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={  # at least one token, in either key (`_some_token`)
            "anyOf": [
                {"required": ["api_tokens"], "properties": {"api_tokens": {"minItems": 1}}},
                {
                    "required": ["named_tokens"],
                    "properties": {"named_tokens": {"minProperties": 1}},
                },
            ]
        }
    )

    listen: str = "127.0.0.1:8787"
    api_tokens: list[ApiToken] = Field(default_factory=list)
    """Bearer tokens accepted on /v1 (none when `named_tokens` has them all)."""
    named_tokens: dict[Name, ApiToken] = Field(default_factory=dict)
    """More bearer tokens, each with a name that records who asked (a manual rollback).
    These alone are a configuration: a team whose every manual rollback must say who
    asked gives no unnamed token (it was refused, "api_tokens: required")."""
    shutdown_timeout: Annotated[PositiveDuration, at_most(10.0)] = 8.0
    """How long a stop (SIGTERM, SIGINT) may take: the contract promises an exit within 10 s."""
    public_url: HttpUrl | None = None
    """Base of the links in alerts and `register --wait` (default `http://<listen>`)."""
    ui: bool = True
    """Serve the deploy pages (`/deploys`); false answers them 404, and their event
    stream (an API route) takes API tokens only."""
    view_secret: SecretStr | None = None
    """Signs the read-only `?view=` links; default: derived from the first api token (the
    first named one when there are only those)."""
    view_ttl: Annotated[PositiveDuration, at_most(MAX_VIEW_TTL_S)] = 7 * 86400.0
    """How long a `?view=` link stays valid."""

    _public_base = field_validator("public_url")(a_base("remove it"))

    @field_validator("listen", mode="before")
    @classmethod
    def _port_alone(cls, value: Any) -> Any:
        """`listen: 8787` (YAML reads a number) is said as a HOST:PORT to write, not as
        "Input should be a valid string"."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        scheme, found, rest = value.partition("://")
        if found and scheme.isalpha():  # validated, with `http://127.0.0.1` as the host
            raise ValueError(f"{value!r} is a URL: write {rest.rstrip('/')}")
        host, sep, port = value.rpartition(":")
        if any(c.isspace() for c in host):
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8787)")
        if not sep and value.isdigit():
            raise ValueError(f"{value!r} is not HOST:PORT: write 127.0.0.1:{value}")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8787)")
        if not 0 <= int(port) < 65536:  # 0: a free port, the one bound said and linked
            raise ValueError(f"port {port} is not one of 0-65535 (in {value!r})")
        if ":" in host and not host.startswith("["):  # `::1:8787`: linked as a URL writes it
            return f"[{host}]:{port}"
        return value

    @model_validator(mode="after")
    def _some_token(self) -> ServerSettings:
        """No token at all would lock every `/v1` route: said at its key, as the empty
        list was ("is empty; at least one is needed")."""
        if not self.api_tokens and not self.named_tokens:
            message = (
                "is empty; at least one token is needed, here or in server.named_tokens"
                if "api_tokens" in self.model_fields_set
                else "required, but missing (or give server.named_tokens)"
            )
            raise ValidationError.from_exception_data(
                type(self).__name__, [_problem(("api_tokens",), message, self.api_tokens)]
            )
        return self

    def token_names(self) -> list[tuple[str, SecretStr]]:
        """Every accepted token with the name that stands for it (`api_tokens[0]`, …)."""
        named = [(f"api_tokens[{i}]", t) for i, t in enumerate(self.api_tokens)]
        return named + list(self.named_tokens.items())

    def accepted_tokens(self) -> list[SecretStr]:
        """Every bearer token accepted, `api_tokens` and `named_tokens`: on `/v1`, the
        deploy pages, their event stream and the login form alike."""
        return [token for _, token in self.token_names()]

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def base_url(self) -> str:
        """Where users reach this agent: `public_url`, else `http://<listen>`."""
        return (self.public_url or f"http://{self.listen}").rstrip("/")

    @property
    def base_path(self) -> str:
        """The path `public_url` has (`/postflight` for `https://ops.example/postflight/`,
        else empty): a reverse proxy serves the agent under it, so the pages' own links,
        forms and redirects start with it."""
        return urlsplit(self.base_url).path.rstrip("/")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def bound_to(self, port: int) -> ServerSettings:
        """These settings with `listen`'s port the one bound: `listen: 127.0.0.1:0` takes
        a free port, which the start log, the links and the pages must name."""
        if port == self.port:
            return self
        return self.model_copy(update={"listen": f"{self.listen.rpartition(':')[0]}:{port}"})


class RetentionSettings(StrictModel):
    """How long the store keeps what no window reads again; older rows are deleted in
    the background (`agent.retention`)."""

    rounds: PositiveDuration = 7 * 86400.0
    """Round summaries of windows that ended longer ago than this are deleted, and the
    message of each of their settled alerts, and idempotency keys older than this; the
    window, its verdict, its rollback and its alerts' outcomes are kept."""
    probe_summaries: Duration | None = None
    """Background probe summaries older than this are deleted. Default: the longest
    `lookback` of any environment (what baselines read); it cannot be shorter."""


class StoreSettings(StrictModel):
    url: str = "sqlite:///./postflight.db"
    """`sqlite:///path` (embedded) or `postgresql://…` (several replicas)."""
    lease: Annotated[Duration, at_least(1.0)] = 30.0
    """How long a replica's claim on a window lasts without renewal. At least 1s: a
    scheduled window renews it every third of it, and `lease: 0` did so without a pause."""
    retention: RetentionSettings = RetentionSettings()

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not re.match(r"^(sqlite:///|postgres(ql)?://)", value):
            raise ValueError("must start with sqlite:/// or postgresql://")
        for port in _postgres_ports(value):  # else "valid", and `run` failed on an int()
            if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
                # not quoted back: with a `/` unencoded in a password, what is read here
                # as a port may be the password's start
                raise ValueError("a port in it is not a number from 1 to 65535")
        if not value.startswith("sqlite:"):  # else `run` stopped on it, exit 2, once valid
            for mode in parse_qs(urlsplit(value).query).get("sslmode", []):
                if mode.replace("_", "-") not in SSL_MODES:  # asyncpg reads verify_full too
                    raise ValueError(f"sslmode {mode!r} is not one of: {', '.join(SSL_MODES)}")
        return value


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
"""The `sslmode`s libpq and asyncpg take."""


def _postgres_ports(url: str) -> list[str]:
    """The ports written in a PostgreSQL URL's hosts (`host:port`, `[::1]:port`, several
    split by commas), as the driver reads them (`urlsplit`)."""
    if url.startswith("sqlite:"):
        return []
    hosts = urlsplit(url).netloc.rpartition("@")[2]
    ports = []
    for host in hosts.split(","):
        after = host.rpartition("]")[2] if host.startswith("[") else host
        if ":" in after:
            ports.append(after.rpartition(":")[2])
    return [port for port in ports if port]


class AlertChannel(StrictModel):
    url: SecretStr
    """Any apprise URL. Secret: such URLs carry tokens and passwords."""
    tags: list[Name] = Field(default_factory=list)

    _url = field_validator("url")(non_empty_secret)


MIN_ALERT_TIMEOUT_S = 1.0
MAX_ALERT_TIMEOUT_S = 60.0


def _alert_timeout(seconds: float) -> float:
    """An alert's bound that a channel can meet, and that on-call does not wait on."""
    if seconds < MIN_ALERT_TIMEOUT_S:
        raise ValueError(
            f"must be at least {format_bound(MIN_ALERT_TIMEOUT_S)} (got"
            f" {format_duration(seconds)}): no channel answers sooner (a chat webhook, a mail"
            " server's exchange), so every alert would fail"
        )
    if seconds > MAX_ALERT_TIMEOUT_S:
        raise ValueError(
            f"must be at most {format_bound(MAX_ALERT_TIMEOUT_S)} (got"
            f" {format_duration(seconds)}): a hung channel would hold each alert that long,"
            " and an alert its crashed sender left is taken over only after twice it"
        )
    return seconds


class AlertingSettings(StrictModel):
    channels: list[AlertChannel] = Field(default_factory=list)
    timeout: Annotated[
        PositiveDuration,
        AfterValidator(_alert_timeout),
        schema_bounds(minimum=MIN_ALERT_TIMEOUT_S, maximum=MAX_ALERT_TIMEOUT_S),
    ] = 5.0
    """Bound on one notification across its channels (keep it under the 10 s stop budget)."""

    @model_validator(mode="after")
    def _apprise_can_use_every_channel(self) -> AlertingSettings:
        """A URL apprise cannot use is a configuration error now, not an alert that fails
        on the night it is needed."""
        from agent.alert_channels import unusable_channel

        problems = []
        for i, channel in enumerate(self.channels):
            problem = unusable_channel(channel.url.get_secret_value())
            if problem is not None:
                problems.append(_problem(("channels", i, "url"), problem, "<secret>"))
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


def _policy_enum(schema: dict[str, Any]) -> None:
    schema["enum"] = list(policies.names())


def _percent(value: Any) -> Any:
    """`99%` is 0.99: a confidence is as often written as a percentage."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            return value
    return value


def _probability(value: float) -> float:
    if not 0.5 < value < 1:
        raise ValueError(
            f"must be more than 0.5 and less than 1 (got {value:g}): a probability,"
            " such as 0.99 or 99%"
        )
    return value


Confidence = Annotated[
    float,
    BeforeValidator(_percent),
    AfterValidator(_probability),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 1},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?%\s*$"},
            ],
            "description": "a probability above 0.5 and below 1: 0.99, or 99%",
        }
    ),
]


class AnalysisSettings(StrictModel):
    policy: PolicyName = Field(default="sequential", json_schema_extra=_policy_enum)
    """A registered policy (`agent.analysis.policies`)."""
    failure_limit: int = Field(default=3, ge=1, le=1000)
    """threshold policy: consecutive failing rounds that fail the window."""
    confidence: Confidence = 0.99
    pass_on: Literal["evidence", "no_failure"] = "evidence"
    """sequential policy: `evidence` passes a rule only when its confidence sequence lies
    within its bounds (else `inconclusive` at the end); `no_failure` passes what did not fail."""

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value in policies.names():
            return value
        raise ValueError(f"unknown policy {value!r} (one of: {', '.join(policies.names())})")


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("a bound must be a finite number (.nan and .inf judge nothing)")
    return value


Bound = Annotated[
    float | None,
    AfterValidator(_finite),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "pattern": DURATION_TEXT_PATTERN},
                {"type": "null"},
            ],
            "description": "a number; for latency metrics a duration such as 300ms",
        }
    ),
]


class RuleSettings(StrictModel):
    name: Name
    source: str
    """`checks`, or an installed provider (built-in or plugin) by its entry-point name."""
    metric: str | None = None
    check: Name | None = None
    """source checks: only this check's samples (default: every check)."""
    nrql: str | None = Field(default=None, max_length=4096)
    query: str | None = Field(default=None, max_length=4096)
    max: Bound = None
    min: Bound = None
    max_increase: Fraction | None = None
    direction: Literal["increase", "decrease"] | None = None
    min_samples: int = Field(default=1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _latency_bounds_are_durations(cls, data: Any) -> Any:
        """A latency rule's `max`/`min` is a duration (`300ms`); an error is at its key."""
        if isinstance(data, dict) and data.get("metric") in LATENCY_METRICS:
            data = dict(data)
            problems = []
            for key in ("max", "min"):
                if key in data and data[key] is not None:
                    try:
                        data[key] = parse_duration(data[key])
                    except ValueError as exc:
                        problems.append(_problem((key,), str(exc), data[key]))
            if problems:
                raise ValidationError.from_exception_data(cls.__name__, problems)
        return data

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value == "checks" or value in plugin_names():
            return value
        known = ", ".join(sorted({"checks", *plugin_names()}))
        raise ValueError(f"unknown source {value!r} (one of: {known})")

    @model_validator(mode="after")
    def _coherent(self) -> RuleSettings:
        problems = []  # each at its own key, all at once (a missing bound hid a bad metric)
        if self.max is None and self.min is None and self.max_increase is None:
            problems.append(_problem((), NO_BOUND, None))
        if self.max is not None and self.min is not None and self.min > self.max:
            problems.append(_problem(("min",), f"min {self.min} is above max {self.max}", self.min))
        problems.extend(self._rate_bounds_beyond_one())
        problems.extend(self._bounds_below_zero())
        if self.bad_direction == "decrease" and (self.max_increase or 0) >= 1:
            message = (
                f"a decrease rule's max_increase is the fall it allows: {self.max_increase:.0%}"
                " leaves a bound of zero or below, which never fails; give less than 100%"
            )
            problems.append(_problem(("max_increase",), message, self.max_increase))
        if self.source == "checks" and self.metric not in CHECK_METRICS:
            problems.append(_problem(("metric",), not_a_check_metric(self.metric), self.metric))
        for key in ("query", "nrql") if self.source == "checks" else ():
            if getattr(self, key) is not None:
                message = query_read_by_none(key, "checks")
                problems.append(_problem((key,), message, getattr(self, key)))
        if self.source != "checks" and self.check:
            problems.append(_problem(("check",), "check applies only to source checks", self.check))
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    def _rate_bounds_beyond_one(self) -> list[InitErrorDetails]:
        """A rate (`error_rate`, `crash_free_rate`) is a fraction from 0 to 1, so a bound
        above 1 is a percentage missing its scale: `max: 5` never fails and `min: 99.5`
        always does."""
        if not (self.metric or "").endswith("_rate"):
            return []
        problems = []
        for key in ("max", "min"):
            bound = getattr(self, key)
            if bound is not None and bound > 1:
                message = (
                    f"{self.metric} is a fraction from 0 to 1: {key} {bound:g} is {bound * 100:g}%;"
                    f" write {bound / 100:g} for {bound:g} percent"
                )
                problems.append(_problem((key,), message, bound))
        return problems

    def _bounds_below_zero(self) -> list[InitErrorDetails]:
        """A metric that is never negative (a rate, a throughput, a count) bounded below 0:
        `max: -1` fails every round, so every deploy is rolled back; `min: -0.5` never
        fails."""
        if self.metric not in NEVER_NEGATIVE:
            return []
        problems = []
        for key, effect in (
            ("max", "fails every round (every deploy rolled back)"),
            ("min", "never fails"),
        ):
            bound = getattr(self, key)
            if bound is not None and bound < 0:
                message = f"{self.metric} is never below 0: {key} {bound:g} {effect}"
                problems.append(_problem((key,), message, bound))
        return problems

    @property
    def bad_direction(self) -> Literal["increase", "decrease"]:
        if self.direction:
            return self.direction
        return "decrease" if self.metric in DECREASE_IS_BAD else "increase"

    @property
    def display_metric(self) -> str:
        return self.metric or ("nrql" if self.nrql else "query")

    def to_rule(self) -> Rule:
        """The judge's view of this rule."""
        return Rule(
            name=self.name,
            source=self.source,
            metric=self.display_metric,
            max=self.max,
            min=self.min,
            max_increase=self.max_increase,
            direction=self.bad_direction,
            min_samples=self.min_samples,
            check=self.check,
            query=self.nrql or self.query,
            query_key="nrql" if self.nrql else "query" if self.query else None,
        )


RollbackTarget = Literal["webhook", "vercel", "github"]
ROLLBACK_TARGETS: tuple[str, ...] = get_args(RollbackTarget)


class RollbackSettings(StrictModel):
    target: RollbackTarget = "webhook"
    """Where a rollback goes: the signed webhook (§3), Vercel's instant rollback, or a
    GitHub workflow_dispatch (§7)."""
    url: HttpUrl | None = None
    """The webhook (target webhook)."""
    secret: SecretStr | None = None
    """Signs the webhook and the `then` follow-ups."""
    github: GithubRollback | None = None
    """target github: the workflow to dispatch."""
    then: list[FollowUp] = Field(default_factory=list, max_length=16)
    """Follow-up webhooks sent once after the rollback is delivered, in order."""
    dry_run: bool = False
    """true: watch and alert, never call the webhook."""
    max_attempts: int = Field(default=8, ge=1, le=100)
    timeout: PositiveDuration = 10.0
    """One attempt (aiohttp read a total of 0 as none: a hung webhook held the rollback)."""
    backoff: Duration = 1.0
    """First retry delay; doubles each attempt (with jitter), capped at max_backoff."""
    max_backoff: Duration = 60.0

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        return optional_non_empty_secret(value)

    @model_validator(mode="after")
    def _target_needs(self) -> RollbackSettings:
        section = {
            "target": self.target,
            "url": self.url,
            "secret": self.secret,
            "github": self.github,
            "then": [{"name": f.name, "secret": f.secret} for f in self.then],
        }
        problems = [_problem((), m, self.target) for m in rollback_needs_in_document(section)]
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


class AlertRouting(StrictModel):
    tags: list[Name] = Field(default_factory=list)


def _union(models: tuple[type[BaseModel], ...]) -> Any:
    union: Any = models[0]
    for model in models[1:]:
        union = union | model
    return union


def _check_settings() -> Any:
    """One model per check type found through the `postflight.checks` entry points."""
    models = config_models()
    if len(models) == 1:
        return models[0]
    return Annotated[_union(models), Field(discriminator="type")]


if TYPE_CHECKING:
    CheckSettings = CheckConfig
else:
    CheckSettings = _check_settings()


MIN_INTERVAL_S = 0.01
"""The shortest round and background period: each runs its checks and stores what they
found, and nothing bounded them from below (`interval: 1ms` ran a thousand rounds a
second for each window, a store write each, keeping a core busy for no better judgement).
Low enough for a test's window of seconds (ours use 100–200ms rounds, 50ms background
probing); a floor of 100ms refused such configurations outright."""


def _period_floor(seconds: float) -> float:
    if seconds < MIN_INTERVAL_S:
        raise ValueError(  # `format_duration` says a sub-ms period too (`0.01ms`)
            f"must be at least {format_bound(MIN_INTERVAL_S)} (got {format_duration(seconds)}):"
            " a shorter period only keeps the agent busy running checks and storing what"
            " they found"
        )
    return seconds


Interval = Annotated[Duration, AfterValidator(_period_floor)]
"""A round's `interval` or the `background_interval`: at least `MIN_INTERVAL_S`."""


def _some_lookback(seconds: float) -> float:
    """`lookback: 0s` validated, and every relative rule then ended inconclusive, "no
    baseline", with no word at start."""
    if seconds <= 0:
        raise ValueError(
            "must be more than 0s: the baselines are read from the lookback before a deploy,"
            " and one of 0s holds nothing to compare with"
        )
    return seconds


MAX_WINDOW_S = 7 * 86400.0
"""The longest window, as the API's `window` (agent.api.models): a registration without
its own took the environment's, and one of 99999999999999d answered 500."""


class EnvironmentSettings(StrictModel):
    base_url: HttpUrl
    window: Annotated[Duration, at_most(MAX_WINDOW_S)] = 900.0
    interval: Interval = 30.0
    lookback: Annotated[Duration, AfterValidator(_some_lookback)] = 3600.0
    background_interval: Interval = 30.0
    """Between windows, http checks keep probing at this pace (the pre-deploy baseline)."""
    baseline_url: HttpUrl | None = None
    """A canary's stable side: the same checks run against it during a window."""
    max_concurrency: int = Field(default=16, ge=1, le=1024)
    """Requests in flight at once against this environment."""
    probes_per_round: int = Field(default=40, ge=1, le=1000)
    """How often each http and smoke check runs in one round, spread evenly over the
    interval: a round judges a rate, not a single coin toss. 40 (1.3 requests/s at the
    30 s interval) lets a window of 30 rounds catch an error rate twice its `max` and pass
    an unchanged release on evidence; 10 caught it in 5 of 12 windows and passed none
    (bench/live_judge.py trial, README "What a rule can see")."""
    checks: list[CheckSettings] = Field(default_factory=list)
    baseline: BaselineSettings = BaselineSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    rules: list[RuleSettings] = Field(default_factory=list)
    rollback: RollbackSettings | None = None
    alerts: AlertRouting = AlertRouting()
    sources: SourcesSettings = SourcesSettings()
    """Which GitHub / Vercel deploy events open this environment's windows (§7)."""
    gate: GateSettings | None = None
    """A GitHub deployment protection rule for this environment waits on another's window."""

    _base = field_validator("base_url", "baseline_url")(
        a_base("remove it (a check's own query goes in its path: path: /health?x=1)")
    )

    @field_validator("checks")
    @classmethod
    def _checks_fit(cls, checks: list[CheckSettings], info: ValidationInfo) -> list[CheckSettings]:
        """Names given once, and each load check within a round. Judged per field, with
        the fields before it (`info.data`), not in one validator of the whole environment:
        pydantic runs that only when every field is valid, so one error hid the rest."""
        errors = _second_names("check", [c.name for c in checks])
        interval = info.data.get("interval")
        if interval is not None:  # None: its own error is reported
            errors += _checks_beyond(enumerate(checks), interval)
        if errors:
            raise ValidationError.from_exception_data("checks", errors)
        return checks

    @field_validator("rules")
    @classmethod
    def _rules_fit(cls, rules: list[RuleSettings], info: ValidationInfo) -> list[RuleSettings]:
        """Each provider's config model judges its own rules (`check_rule`), so a plugin's
        rules are validated exactly as the built-ins' are. Names and a rule's `check` are
        judged here too, with them: an error here keeps `_coherent` from running, and a
        misnamed check showed only once every provider rule was fixed."""
        errors = _second_names("rule", [r.name for r in rules])
        checks = info.data.get("checks")
        names = None if checks is None else {c.name for c in checks}  # None: reported
        for index, rule in enumerate(rules):
            if names is not None and rule.check and rule.check not in names:
                message = misnamed_check(rule.name, rule.check, names)
                errors.append(_problem((index, "check"), message, rule.check))
            elif names == set() and rule.source == "checks":
                message = f"rule {rule.name!r} has source checks but there are no checks"
                errors.append(_problem((index, "source"), message, rule.source))
        baseline = info.data.get("baseline")
        if baseline is not None:  # None: already reported
            errors += _provider_rules_unfit(enumerate(rules), baseline)
        if errors:
            raise ValidationError.from_exception_data("rules", errors)
        return rules

    def background_checks_of(self, rule: Rule) -> tuple[list[CheckSettings], list[str]]:
        """The checks `rule` reads, and the names of those that probe between windows
        (the background runs its baseline is made of; a type no plugin provides counts,
        its own error is reported elsewhere)."""
        from checks.registry import check_types

        types = check_types()
        reads = [c for c in self.checks if rule.check in (None, c.name)]
        background = [c.name for c in reads if getattr(types.get(c.type), "background", True)]
        return reads, background

    @model_validator(mode="after")
    def _coherent(self) -> EnvironmentSettings:
        """A window of at least one round (the one check of two fields, the first before
        the second: the rest are judged per field, `_checks_fit`, `_rules_fit`)."""
        if self.window < self.interval:
            message = window_below_interval(self.window, self.interval)
            problem = _problem(("window",), message, self.window)
            raise ValidationError.from_exception_data(type(self).__name__, [problem])
        return self


def _provider_rules_unfit(
    rules: Iterable[tuple[int, RuleSettings]], baseline: BaselineSettings
) -> list[InitErrorDetails]:
    """Each provider's config model judges its own rules (`check_rule`), at the rule (or
    at its key, for a FieldError); `rules` with their places in the list."""
    errors = []
    for index, rule in rules:
        if rule.source == "checks":
            continue
        try:
            hook = getattr(config_model_for(rule.source), "check_rule", None)
            if hook is not None:
                hook(rule.to_rule(), baseline)
        except (ValueError, ProviderPluginError) as exc:
            loc: tuple[int | str, ...] = (index,)
            if isinstance(exc, FieldError):
                loc = (index, exc.field)
            context = {"name": repr(rule.name), "error": str(exc)}
            error = PydanticCustomError("rule", "rule {name}: {error}", context)
            errors.append(InitErrorDetails(type=error, loc=loc, input=rule.name))
    return errors


def _checks_beyond(
    checks: Iterable[tuple[int, CheckSettings]], interval: float
) -> list[InitErrorDetails]:
    """Every check of a round runs within the round: a load check's run (its `duration`,
    and its `warmup` when set) must fit the `interval`; an unset warm-up is cut to what
    the interval leaves (`agent.windows.probing.fit_to_round`). `checks` with their places."""
    problems: list[InitErrorDetails] = []
    every = format_duration(interval)
    for i, check in checks:
        duration = getattr(check, "duration", None)
        if duration is None:
            continue
        if duration > interval:
            message = (
                f"load check {check.name!r} runs for {format_duration(duration)}, longer than"
                f" this environment's interval ({every}): a round's checks must finish"
                " within the round; shorten duration or lengthen interval"
            )
            problems.append(_problem((i, "duration"), message, duration))
            continue
        rate = getattr(check, "rate", None)
        if isinstance(rate, int | float) and 0 < rate * duration < 1:
            message = (
                f"load check {check.name!r} at {_rate_text(rate)} sends one request every"
                f" {format_duration(1 / rate)}, longer than its duration"
                f" ({format_duration(duration)}), so a run never ends: raise rate to at least"
                f" 1/{format_duration(duration)} ({_rate_text(1 / duration)}) or lengthen"
                " duration"
            )
            problems.append(_problem((i, "rate"), message, rate))
            continue
        warmup = getattr(check, "warmup", None)
        if warmup and "warmup" in check.model_fields_set and duration + warmup > interval:
            message = (
                f"load check {check.name!r} needs warmup {format_duration(warmup)} +"
                f" duration {format_duration(duration)}, longer than this environment's"
                f" interval ({every}): a round's checks must finish within the round;"
                " shorten warmup (or leave it out: it is then cut to fit)"
            )
            problems.append(_problem((i, "warmup"), message, warmup))
    return problems


def _rate_text(per_second: float) -> str:
    """A rate as a load check's `rate` is written, in the first unit where it is 1 or
    more: 20/h, 6/m, 5/s."""
    for unit, seconds in (("s", 1), ("m", 60)):
        if per_second * seconds >= 1:
            return f"{per_second * seconds:.3g}/{unit}"
    return f"{per_second * 3600:.3g}/h"


OVERRIDE_PREFIX = "POSTFLIGHT__"
ROOT_DIRECTORIES = frozenset(
    {"var", "tmp", "home", "etc", "opt", "srv", "mnt", "usr", "root", "run"}
)
"""A relative SQLite path starting with one of these was most likely meant from `/`."""
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*"})
"""Listen hosts meaning every interface: no address to link to."""


def _second_names(kind: str, names: Sequence[object]) -> list[InitErrorDetails]:
    """The second (third…) of each name given twice, at its own `name` key (a name that
    is not a string is its own error)."""
    seen: set[str] = set()
    errors = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in seen:
            message = f"two {kind}s are named {name!r}; names must be unique"
            errors.append(_problem((i, "name"), message, name))
        seen.add(name)
    return errors


def environments_named_alike(names: Iterable[object]) -> list[tuple[tuple[str, str], str]]:
    """(loc, message) of each environment named as one before it to an override variable,
    whose names are case-blind and read `_` as `-` (`production` and `Production`): a
    `POSTFLIGHT__ENVIRONMENTS__PRODUCTION__…` set one of them, unsaid."""
    seen: dict[str, str] = {}
    found = []
    for name in names:
        if not isinstance(name, str):
            continue
        blind = name.lower().replace("-", "_")
        if blind in seen:
            message = (
                f"environments {seen[blind]!r} and {name!r} differ only in case or - and _,"
                f" which a {OVERRIDE_PREFIX}ENVIRONMENTS__{blind.upper()}__… variable cannot"
                " tell apart; rename one"
            )
            found.append((("environments", name), message))
        seen.setdefault(blind, name)
    return found


def _problem(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    """One validation error at `loc` below the model being validated."""
    return InitErrorDetails(type=PydanticCustomError("does_not_fit", message), loc=loc, input=value)


class Settings(BaseSettings):
    """The whole configuration. Sources, first wins: keyword arguments, environment
    variables `POSTFLIGHT__SECTION__KEY`, then the YAML file."""

    # The environment variables are not a source of this class: `agent.settings_file`
    # merges `environment_overrides` into the document, so that a variable it cannot read
    # is a configuration error that names it.

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=OVERRIDE_PREFIX,
        env_nested_delimiter="__",
    )

    server: ServerSettings
    store: StoreSettings = StoreSettings()
    providers: ProvidersSettings = ProvidersSettings()
    alerting: AlertingSettings = AlertingSettings()
    integrations: IntegrationsSettings = IntegrationsSettings()
    environments: dict[Name, EnvironmentSettings] = Field(min_length=1)
    _variable_secrets: tuple[str, ...] = PrivateAttr(default=())
    """Values the file read from a `${VAR}` named as a secret (`agent.settings_file`)."""

    def with_variable_secrets(self, values: Iterable[str]) -> Settings:
        """These settings, also hiding `values` wherever they hide a SecretStr's."""
        self._variable_secrets = tuple(values)
        return self

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        """Every problem across sections, all at once, each at its own key (one at a
        time, fixing each only showed the next)."""
        problems = [
            *(_problem(loc, m, loc[-1]) for loc, m in environments_named_alike(self.environments)),
            *self._integration_problems(),
            *self._unconfigured_providers(),
            *self._probe_summaries_before_the_lookback(),
        ]
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    def _integration_problems(self) -> list[InitErrorDetails]:
        from agent.integrations.validate import integration_errors

        errors = integration_errors(self.integrations, self.environments)
        return [
            _problem(loc, message, ".".join(map(str, loc)))
            for loc, message in _located(errors, self.environments)
        ]

    def _unconfigured_providers(self) -> list[InitErrorDetails]:
        """Every rule and baseline naming a provider that is not configured."""
        problems = []
        for env_name, env in self.environments.items():
            for i, rule in enumerate(env.rules):
                if rule.source != "checks" and not _configured(self, rule.source):
                    at = ("environments", env_name, "rules", i, "source")
                    message = unconfigured_source(rule.name, rule.source)
                    problems.append(_problem(at, message, rule.source))
            for name in type(env.baseline).model_fields:
                if getattr(env.baseline, name) is not None and not _configured(self, name):
                    loc = ("environments", env_name, "baseline", name)
                    problems.append(_problem(loc, f"needs providers.{name}", name))
        return problems

    def _probe_summaries_before_the_lookback(self) -> list[InitErrorDetails]:
        kept = self.store.retention.probe_summaries
        lookbacks = {name: env.lookback for name, env in self.environments.items()}
        return [
            _problem(loc, message, kept)
            for loc, message in _summaries_gone_before_lookback(kept, lookbacks)
        ]

    def alert_routing_warnings(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(loc, message) of each environment whose alerts reach no channel, routed as
        the notifier routes them (`agent.alert_channels.routed`). Warnings, not errors:
        a configuration without channels may be deliberate (a test, the demo)."""
        from agent.alert_channels import routed

        channels = self.alerting.channels
        if not channels:
            message = (
                "no alert channels are configured: every environment's alerts (breaches,"
                " rollbacks, verdicts) are sent nowhere"
            )
            return [(("alerting", "channels"), message)]
        have = sorted({tag for channel in channels for tag in channel.tags})
        warnings: list[tuple[tuple[str | int, ...], str]] = []
        for name, env in self.environments.items():
            if routed([c.tags for c in channels], env.alerts.tags):
                continue
            message = (
                f"no alert channel has any of the tags {', '.join(env.alerts.tags)}"
                f" (the channels' tags: {', '.join(have) or 'none'}): this environment's"
                " alerts are sent nowhere"
            )
            warnings.append((("environments", name, "alerts", "tags"), message))
        return warnings

    def channel_warnings(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(loc, message) of each alert channel whose URL apprise took with a part
        dropped (a `to=` that is no address: the mail goes to its sender)."""
        from agent.alert_channels import channel_warnings

        return [
            (("alerting", "channels", i, "url"), f"apprise: {warning}")
            for i, channel in enumerate(self.alerting.channels)
            for warning in channel_warnings(channel.url.get_secret_value())[:1]
        ]

    def baseline_warnings(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(loc, message) of each rule over checks bounded by `max_increase` alone that can
        never have a baseline: no check it reads probes between windows (smoke scenarios,
        plugins that do not opt in) and no `baseline_url` runs them beside the deploy, so
        it ends `inconclusive` in every window. A warning: the rest of the configuration
        works."""
        warnings: list[tuple[tuple[str | int, ...], str]] = []
        for name, env in self.environments.items():
            if env.baseline_url is not None:
                continue
            for index, rule in enumerate(env.rules):
                judged = rule.to_rule()
                if rule.source != "checks" or not judged.only_relative:
                    continue
                reads, background = env.background_checks_of(judged)
                if background:
                    continue
                named = ", ".join(f"{c.name} ({c.type})" for c in reads)
                message = (
                    f"rule {rule.name!r} is relative (max_increase) but no check it reads"
                    f" probes between windows ({named} {'runs' if len(reads) == 1 else 'run'}"
                    " only during windows), so it has"
                    " no baseline and ends inconclusive in every window; give it an"
                    " absolute bound (max or min), point it at an http or load check, or"
                    " set baseline_url"
                )
                warnings.append((("environments", name, "rules", index, "max_increase"), message))
        return warnings

    def token_warnings(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(loc, message) of each API token shorter than `MIN_API_TOKEN_LENGTH` (never its
        value). A warning, not an error: the contract's reference configuration must
        validate with its `${VAR}`s set, whatever value a user or a pipeline chose."""
        server = self.server
        tokens: list[tuple[tuple[str | int, ...], SecretStr]] = [
            (("server", "api_tokens", index), token)
            for index, token in enumerate(server.api_tokens)
        ]
        tokens += [(("server", "named_tokens", name), t) for name, t in server.named_tokens.items()]
        return [
            (
                loc,
                f"has {counted(length, 'character')}; an API token shorter"
                f" than {MIN_API_TOKEN_LENGTH} is guessable (make one with `openssl rand -hex 24`)",
            )
            for loc, token in tokens
            if (length := len(token.get_secret_value())) < MIN_API_TOKEN_LENGTH
        ]

    def link_warnings(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(loc, message) when the links (alerts, `register --wait`, the pages, GitHub
        statuses) would be built on a listen address no one can open: every interface
        (`0.0.0.0`, `::`, as in the container image) with no `public_url`. Port 0 is
        said as the port taken at start, which the links name (read before the bind)."""
        server = self.server
        if server.public_url is not None or server.host not in WILDCARD_HOSTS:
            return []
        base = server.base_url
        if server.port == 0:
            base = f"{base.rpartition(':')[0]}:<the port taken at start>"
        message = (
            f"links in alerts, pages and deployment statuses would read {base}/…,"
            " which no one can open: set server.public_url to the URL on-call reaches"
            " this agent at"
        )
        return [(("server", "listen"), message)]

    def integration_warnings(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(loc, message) of an integration with no token where a source needs it to be
        heard: GitHub's deployment statuses, a Rolling Release's approval (contract §7).
        The windows open without it (the webhook secret checks the events) and nothing
        was posted, with no word. Warnings: a hook that only opens windows is valid."""
        envs = self.environments.items()
        statuses = [n for n, env in envs if env.sources.github is not None]
        rolling = [
            n
            for n, env in envs
            if env.sources.vercel is not None and env.sources.vercel.rolling_release
        ]
        return [
            *_tokenless(
                "github",
                self.integrations.github,
                [f"environments.{n}.sources.github" for n in statuses],
                "windows opened from GitHub deployments ({}) get no deployment statuses",
            ),
            *_tokenless(
                "vercel",
                self.integrations.vercel,
                [f"environments.{n}.sources.vercel.rolling_release" for n in rolling],
                "{} cannot approve a stage (nor complete the release)",
            ),
        ]

    def store_warnings(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(loc, message) of a SQLite URL whose three slashes make a relative path that
        reads as a root one (`sqlite:///var/lib/postflight.db` is `./var/lib/…`, as
        SQLAlchemy reads it): an agent started elsewhere made a new, empty store."""
        url = self.store.url
        if not url.startswith(SQLITE_PREFIX):
            return []
        relative = url.removeprefix(SQLITE_PREFIX)
        if relative.split("/", 1)[0] not in ROOT_DIRECTORIES:
            return []
        message = (
            f"{url} is the relative path {relative}, under the directory the agent starts"
            f" in; for /{relative} write {SQLITE_PREFIX}/{relative}"
        )
        return [(("store", "url"), message)]

    def rule_warnings(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(loc, message) of each environment without rules: nothing judges its windows,
        so each ends `inconclusive` and nothing is rolled back but by hand. And of each rate
        bound at its very end (`max: 0`, `min: 1`) where windows pass on evidence: it can
        only fail (`exact_rate_bounds`). Warnings: the rest works."""
        message = (
            "no rules: nothing judges this environment's windows, so each ends inconclusive"
            " whatever the release does and nothing is rolled back automatically; add rules"
            " over its checks or providers"
        )
        out: list[tuple[tuple[str | int, ...], str]] = [
            (("environments", name, "rules"), message)
            for name, env in self.environments.items()
            if not env.rules
        ]
        for name, env in self.environments.items():
            if env.analysis.policy != "sequential" or env.analysis.pass_on != "evidence":
                continue
            for index, rule in enumerate(env.rules):
                for key, sentence in exact_rate_bounds(rule.to_rule()):
                    out.append((("environments", name, "rules", index, key), sentence))
        return out

    @property
    def longest_lookback(self) -> float:
        return max(env.lookback for env in self.environments.values())

    @property
    def probe_summary_retention(self) -> float:
        """How long background probe summaries are kept (a minute beyond the longest
        lookback by default, so a window opening now still finds its whole lookback)."""
        kept = self.store.retention.probe_summaries
        return kept if kept is not None else self.longest_lookback + 60.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _DocumentSource(settings_cls))

    def secret_values(self) -> tuple[str, ...]:
        """Every secret in the configuration, to redact from logs, alerts and errors: each
        `SecretStr`, and the secret-bearing parts of every URL (`url_secrets`: a userinfo
        password, a query's `token=`), which a receiver, a provider or a check's target
        may quote back on their own, where no URL is around them for the redactor to see."""
        found: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, SecretStr):
                value = node.get_secret_value()
                if len(value) >= SHORTEST_SECRET:
                    found.append(value)
                if "://" in value:  # an apprise URL, say: secret as a whole
                    found.extend(url_secrets(value, whole=True))
            elif isinstance(node, AnyUrl):
                found.extend(url_secrets(str(node)))
            elif isinstance(node, str):
                if "://" in node or (node.startswith("/") and "?" in node):  # a check's path
                    found.extend(url_secrets(node))
            elif isinstance(node, BaseModel):
                for name in type(node).model_fields:
                    walk(getattr(node, name))
                for item in (node.model_extra or {}).values():  # provider plugins' sections
                    walk(item)
            elif isinstance(node, dict):
                for item in node.values():
                    walk(item)
            elif isinstance(node, list | tuple):
                for item in node:
                    walk(item)

        walk(self)
        found.extend(self._variable_secrets)
        return tuple(sorted(set(found), key=len, reverse=True))


def _tokenless(
    name: str,
    integration: GithubIntegration | VercelIntegration | None,
    needing: list[str],
    what: str,
) -> list[tuple[tuple[str | int, ...], str]]:
    """`Settings.integration_warnings`' warning of integration `name` set up without a token
    where the keys `needing` want one: `what`, formatted with their list, is never sent."""
    if integration is None or integration.token is not None or not needing:
        return []
    message = f"no token: {what.format(', '.join(needing))}; set integrations.{name}.token"
    return [(("integrations", name), message)]


def _located(
    errors: list[str], environments: Collection[Any]
) -> list[tuple[tuple[str | int, ...], str]]:
    """`dotted.path: message` errors as (loc, message); an environment's name may hold
    dots, so the longest name the path starts with is the environment. A document's
    names may be YAML numbers (`2024:`, an error of its own): compared as written."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for error in errors:
        path, _, message = error.partition(": ")
        loc = _parts(path)
        head, _, rest = path.partition(".")
        if head == "environments":
            for name in sorted(environments, key=lambda n: len(str(n)), reverse=True):
                written = str(name)
                if rest == written or rest.startswith(f"{written}."):
                    loc = (head, name, *_parts(rest[len(written) + 1 :]))
                    break
        found.append((loc, message))
    return found


def _summaries_gone_before_lookback(
    kept: float | None, lookbacks: Mapping[str, float]
) -> list[tuple[tuple[str | int, ...], str]]:
    if kept is None or not lookbacks or kept >= max(lookbacks.values()):
        return []
    name, lookback = max(lookbacks.items(), key=lambda item: item[1])
    message = (
        f"background probe summaries kept {format_duration(kept)} would be gone before"
        f" environments.{name}.lookback ({format_duration(lookback)}) reads them;"
        " keep them at least that long, or leave this out (it defaults to the longest"
        " lookback)"
    )
    return [(("store", "retention", "probe_summaries"), message)]


@dataclass(frozen=True, slots=True)
class _Gate:
    after: str | None
    """None: given, but not a name (its own error)."""


@dataclass(frozen=True, slots=True)
class _Rollback:
    target: str


@dataclass(frozen=True, slots=True)
class _ValidParts:
    """The parts of an environment the integration checks read, each key valid on its own."""

    sources: SourcesSettings
    gate: _Gate | None
    rollback: _Rollback | None


def _readable(
    section: Any, models: Mapping[str, type[BaseModel]], at: str, unread: set[str]
) -> dict[str, Any]:
    """Each of `models`' keys of `section` that validates on its own; the path of one given
    that does not is added to `unread`, as is each of a section that is not a mapping, and
    each one absent beside an unknown key (`githib:` may be it, misspelled)."""
    found: dict[str, Any] = {}
    mapping = isinstance(section, Mapping)
    misspelled = mapping and any(key not in models for key in section)
    for key, model in models.items():
        value = section.get(key) if mapping else section
        valid = None if value is None else _valid(TypeAdapter(model), value)
        if valid is not None:
            found[key] = valid
        elif value is not None or misspelled:
            unread.add(f"{at}.{key}")
    return found


def _environment_parts(name: str, env: Mapping[str, Any], unread: set[str]) -> _ValidParts:
    """What the integration checks read of `env`, key by key: a part with an error of its
    own (a rollback `target: github` without its `github:` workflow, a gate's `timeout`)
    hid every other error of its environment's sources, gate and rollback."""
    at = f"environments.{name}"
    sources = _readable(
        env.get("sources"),
        {"vercel": VercelSource, "github": GithubSource},
        f"{at}.sources",
        unread,
    )
    gate, rollback = env.get("gate"), env.get("rollback")
    after = _valid(TypeAdapter(Slug), gate.get("after")) if isinstance(gate, Mapping) else None
    target = rollback.get("target", "webhook") if isinstance(rollback, Mapping) else None
    return _ValidParts(
        SourcesSettings(**sources),
        None if gate is None else _Gate(after),
        _Rollback(target) if rollback is not None and target in ROLLBACK_TARGETS else None,
    )


def _cross_sections_in_document(
    document: Mapping[str, Any], environments: Mapping[str, Any]
) -> list[tuple[tuple[str | int, ...], str]]:
    """`Settings`' own checks across sections (integrations, the retention of probe
    summaries), on the keys that validate on their own; a check that reads one that does
    not is left out, as is the retention's when a lookback does not validate (their own
    errors say why)."""
    from agent.integrations.validate import integration_errors

    found: list[tuple[tuple[str | int, ...], str]] = []
    unread: set[str] = set()
    integrations = IntegrationsSettings(
        **_readable(
            document.get("integrations"),
            {"github": GithubIntegration, "vercel": VercelIntegration},
            "integrations",
            unread,
        )
    )
    parts: dict[str, _ValidParts] = {}
    lookbacks: dict[str, float] | None = {}  # None: one is not readable, so no check
    default_lookback = EnvironmentSettings.model_fields["lookback"].default
    for name, env in environments.items():
        if not isinstance(env, dict):
            lookbacks = None
            continue
        parts[name] = _environment_parts(name, env, unread)
        try:
            if lookbacks is not None:
                lookbacks[name] = parse_duration(env.get("lookback", default_lookback))
        except (TypeError, ValueError):
            lookbacks = None
    errors = integration_errors(integrations, parts, names=list(environments), unread=unread)
    found += _located(errors, list(environments))
    store = document.get("store") or {}
    try:  # the retention alone: a bad `lease` or `url` beside it has its own error
        retention = RetentionSettings.model_validate(
            store.get("retention") or {} if isinstance(store, Mapping) else {}
        )
    except ValidationError:
        return found
    if lookbacks is not None:
        found += _summaries_gone_before_lookback(retention.probe_summaries, lookbacks)
    return found


def _parts(path: str) -> tuple[str | int, ...]:
    """`a.b[2].c` or `a.b.2.c` as the loc `("a", "b", 2, "c")`."""
    parts: list[str | int] = []
    for part in filter(None, path.replace("[", ".").replace("]", "").split(".")):
        parts.append(int(part) if part.isdigit() else part)
    return tuple(parts)


def unconfigured_source(rule: str, source: str) -> str:
    return f"rule {rule!r} uses source {source!r} but providers.{source} is not configured"


NO_BOUND = "give at least one bound: max, min or max_increase"


def not_a_check_metric(metric: object) -> str:
    if metric is None:
        return f"required for source checks: one of {', '.join(CHECK_METRICS)}"
    return f"metric must be one of {', '.join(CHECK_METRICS)} for source checks (got {metric!r})"


def misnamed_check(rule: str, check: str, names: Collection[str]) -> str:
    return (
        f"rule {rule!r} names check {check!r}, which this environment does not have"
        f" (checks: {', '.join(sorted(names)) or 'none'})"
    )


def window_below_interval(window: float, interval: float) -> str:
    return (
        f"window ({format_duration(window)}) must be at least one interval"
        f" ({format_duration(interval)})"
    )


def cross_checks_in_document(
    document: Mapping[str, Any],
) -> list[tuple[tuple[str | int, ...], str]]:
    """The checks of two keys or sections, read from the document itself, for a document
    that did not validate: pydantic runs a validator of a whole model only when every
    field is valid, and leaves a field that failed out of what later fields' validators
    see, so a rule on an unconfigured provider, a rule's metric or missing bound beside
    another of its errors (`max: abc`, a bad name), a rule's misnamed `check` beside a check
    named twice, a window shorter than its interval, a gate or rollback target lacking its
    integration, or probe summaries kept shorter than a lookback showed only once every
    other error was fixed. Best effort: a value not shaped as expected is left to its own
    error, and the caller drops what pydantic said already (the messages are the models')."""
    from agent.providers.plugins import plugin_names

    known = plugin_names()
    channels = channels_in_document(document)
    providers = document.get("providers")
    configured = (
        {k for k, v in providers.items() if v is not None} if isinstance(providers, dict) else set()
    )
    environments = document.get("environments")
    if not isinstance(environments, dict):
        return channels
    found = channels + _cross_sections_in_document(document, environments)
    found += environments_named_alike(environments)
    for env_name, env in environments.items():
        if not isinstance(env, dict):
            continue
        at: tuple[str | int, ...] = ("environments", env_name)
        checks = env.get("checks", [])
        names = (
            {c["name"] for c in checks if isinstance(c, dict) and isinstance(c.get("name"), str)}
            if isinstance(checks, list)
            else None
        )
        rules = env.get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else ()):
            if not isinstance(rule, dict):
                continue
            name, source, check = rule.get("name"), rule.get("source"), rule.get("check")
            if isinstance(source, str) and source in known and source not in configured:
                found.append(((*at, "rules", i, "source"), unconfigured_source(str(name), source)))
            if names is not None and isinstance(check, str) and check and check not in names:
                found.append(((*at, "rules", i, "check"), misnamed_check(str(name), check, names)))
            # a rule's own checks of two keys, beside an error of another of its keys
            metric = rule.get("metric")
            known_metric = not isinstance(metric, str | None) or metric in CHECK_METRICS
            if source == "checks" and not known_metric:
                found.append(((*at, "rules", i, "metric"), not_a_check_metric(metric)))
            if all(rule.get(key) is None for key in ("max", "min", "max_increase")):
                found.append(((*at, "rules", i), NO_BOUND))
        rollback = env.get("rollback")
        if isinstance(rollback, dict):
            found.extend(((*at, "rollback"), m) for m in rollback_needs_in_document(rollback))
        baseline = env.get("baseline")
        for section_name, section in baseline.items() if isinstance(baseline, dict) else ():
            if section is not None and section_name in known and section_name not in configured:
                found.append(((*at, "baseline", section_name), f"needs providers.{section_name}"))
        found += _list_items_in_document(env, at)
        defaults = EnvironmentSettings.model_fields
        try:
            window = parse_duration(env.get("window", defaults["window"].default))
            interval = parse_duration(env.get("interval", defaults["interval"].default))
        except (TypeError, ValueError):
            continue  # its own error
        if 0 < window < interval:
            found.append(((*at, "window"), window_below_interval(window, interval)))
    return found


def _list_items_in_document(
    env: Mapping[str, Any], at: tuple[str | int, ...]
) -> list[tuple[tuple[str | int, ...], str]]:
    """An environment's checks of its checks and rules against each other and its other
    keys (a name given twice, a load check longer than the interval, each provider's
    judgement of its rules), on the items that validate on their own: pydantic judges a
    list only once every item of it is valid, so one check's bad `timeout` hid another's
    name given twice."""
    said: list[tuple[str, InitErrorDetails]] = []
    checks, rules = env.get("checks"), env.get("rules")
    if isinstance(checks, list):
        said += [("checks", e) for e in _second_names("check", _names(checks))]
        default = EnvironmentSettings.model_fields["interval"].default
        interval = _valid(TypeAdapter(Interval), env.get("interval", default))
        if interval is not None:
            valid = _valid_items(TypeAdapter(CheckSettings), checks)
            said += [("checks", e) for e in _checks_beyond(valid, interval)]
    if isinstance(rules, list):
        said += [("rules", e) for e in _second_names("rule", _names(rules))]
        baseline = _valid(TypeAdapter(BaselineSettings), env.get("baseline", {}))
        if baseline is not None:
            valid_rules = _valid_items(TypeAdapter(RuleSettings), rules)
            said += [("rules", e) for e in _provider_rules_unfit(valid_rules, baseline)]
    return [((*at, key, *e["loc"]), _message(e)) for key, e in said]


def channels_in_document(document: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Each alert channel whose URL apprise cannot use, among those whose `url` validates
    (`AlertingSettings` judges them only once every channel is valid): judged by the URL
    alone, so that a channel's bad `tags` or unknown key does not hide it."""
    from agent.alert_channels import unusable_channel

    alerting = document.get("alerting")
    channels = alerting.get("channels") if isinstance(alerting, dict) else None
    found: list[tuple[tuple[str | int, ...], str]] = []
    listed = channels if isinstance(channels, list) else []
    urls = [{"url": item.get("url")} if isinstance(item, dict) else item for item in listed]
    for i, channel in _valid_items(TypeAdapter(AlertChannel), urls):
        problem = unusable_channel(channel.url.get_secret_value())
        if problem is not None:
            found.append((("alerting", "channels", i, "url"), problem))
    return found


T = TypeVar("T")


def _names(items: list[Any]) -> list[object]:
    return [item.get("name") if isinstance(item, dict) else None for item in items]


def _valid(adapter: TypeAdapter[T], value: Any) -> T | None:
    try:
        return adapter.validate_python(value)
    except (ValidationError, TypeError, ValueError):
        return None


def _valid_items(adapter: TypeAdapter[T], items: list[Any]) -> Iterator[tuple[int, T]]:
    for i, item in enumerate(items):
        valid = _valid(adapter, item)
        if valid is not None:
            yield i, valid


def _message(error: InitErrorDetails) -> str:
    kind = error["type"]
    return kind.message() if isinstance(kind, PydanticCustomError) else str(kind)


def rollback_needs_in_document(rollback: Mapping[str, Any]) -> list[str]:
    """What a rollback section lacks for its target, else each follow-up lacking a secret
    (one message each: only the first was said): `RollbackSettings._target_needs`, and on
    the raw section of one with a field error (a `url` that is not a URL hid its missing
    `secret`). A key given counts as given, whatever its value: that value's own error
    says what is wrong with it."""
    target = rollback.get("target", "webhook")
    needs: list[str] = []
    if target == "webhook":
        missing = [k for k in ("url", "secret") if rollback.get(k) is None]
        if missing:
            needs.append(f"target webhook needs {' and '.join(missing)}")
    elif target == "github" and rollback.get("github") is None:
        needs.append("target github needs github: {workflow: rollback.yml, ref: main}")
    if needs:  # its follow-ups' secrets default to the one it lacks
        return needs
    then = rollback.get("then")
    given = rollback.get("secret") is not None
    for i, follow in enumerate(then if isinstance(then, list) and not given else ()):
        if isinstance(follow, dict) and follow.get("secret") is None:
            name = follow.get("name")  # one without its own is said by its place
            which = f" {name!r}" if isinstance(name, str) else f"[{i}]"
            needs.append(f"then{which} needs a secret (or set rollback.secret)")
    return needs


def _configured(settings: Settings, provider: str) -> bool:
    section = getattr(settings.providers, provider, None)
    return (section or (settings.providers.model_extra or {}).get(provider)) is not None


_DOCUMENT: ContextVar[dict[str, Any] | None] = ContextVar("postflight_document", default=None)


class _DocumentSource(PydanticBaseSettingsSource):
    """The already-read, already-expanded YAML document (see `agent.settings_file`).

    pydantic-settings' own YAML source silently skips a missing file; reading the
    file ourselves makes a missing or unreadable one an error with its path.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        document = _DOCUMENT.get() or {}
        return document.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_DOCUMENT.get() or {})


def settings_from_document(document: dict[str, Any]) -> Settings:
    """Validate an expanded YAML document (raises pydantic.ValidationError)."""
    token = _DOCUMENT.set(document)
    try:
        return Settings()
    finally:
        _DOCUMENT.reset(token)


class _OverrideSource(EnvSettingsSource):
    """pydantic-settings' reading of `POSTFLIGHT__…` variables, from a given mapping
    rather than `os.environ`: the loader decides which environment applies, and reads
    each variable on its own to say which one is wrong."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ  # read by _load_env_vars, which the base __init__ calls
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The part of the document that `POSTFLIGHT__SECTION__KEY` variables in `environ`
    set: JSON for a section, list or map, the text as is otherwise. Raises
    `pydantic_settings.SettingsError` for a value that should be JSON and is not."""
    return _OverrideSource(environ)()
