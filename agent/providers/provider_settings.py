"""Configuration models of the baseline providers (`providers:` and an environment's
`baseline:`). Pure models; the settings module composes them.

Every field added here beyond the public example has a default, so the example
configuration validates unchanged. Budgets are explicit: `timeout` bounds one whole
fetch (every retry and page included), so a slow or rate-limiting provider can never
hold a round for longer than that.
"""

from __future__ import annotations

import re
import string
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from yarl import URL

from agent.analysis.describe import is_duration, is_rate
from agent.analysis.types import Rule
from agent.config_models import (
    TOKEN_BESIDE_CREDENTIALS,
    FieldError,
    HttpUrl,
    StrictModel,
    a_base,
    has_credentials,
    header_token,
    optional_header_token,
    query_read_by_none,
    without_credentials_beside_a_token,
)
from agent.providers.plugins import config_model_for, plugin_names
from common.durations import Duration, PositiveDuration

SENTRY_METRICS = ("error_count", "error_rate", "crash_free_rate", "p95_duration")
SENTRY_REGIONS = {"us": "https://us.sentry.io", "de": "https://de.sentry.io"}
NEWRELIC_REGIONS = {
    "us": "https://api.newrelic.com/graphql",
    "eu": "https://api.eu.newrelic.com/graphql",
    "jp": "https://api.jp.newrelic.com/graphql",
}


def _region_url(data: Any, field: str, regions: dict[str, str], default: str) -> Any:
    """`region: eu` is shorthand for the region's URL; giving both must agree."""
    if not isinstance(data, dict) or data.get("region") is None:
        return data
    region = data["region"]
    if region not in regions:
        return data  # the Literal field reports the bad value
    given = data.get(field)
    if given is None or given == default:
        return {**data, field: regions[region]}
    ours = URL(regions[region])
    try:
        theirs = URL(str(given))
        theirs_port = theirs.port
    except ValueError:
        return data  # the field's own check says what is wrong with it
    if (ours.host, ours.port) != (theirs.host, theirs_port):  # the URL is not quoted:
        raise ValueError(  # a user:password or a query's token may be in it
            f"region {region!r} is {ours.host}, and {field}'s host is {theirs.host}:"
            " they disagree; give one of them"
        )
    return data


class ProviderSettings(StrictModel):
    """A provider's section of `providers:`. Built-ins and plugins share the hook below."""

    @classmethod
    def check_rule(cls, rule: Rule, baseline: BaselineSettings) -> None:
        """Raise ValueError (one sentence) when `rule` is not one this provider can answer.

        Called by the settings for every rule whose `source` is this provider, with the
        environment's `baseline:`; a plugin's config model may define it too.
        """

    @classmethod
    def bare_value(cls, rule: Rule) -> bool:
        """Whether each round's figure of `rule` comes without a sample count (a PromQL
        query's value): the threshold policy, which counts a round's samples, then judges
        every round with data, whatever its `min_samples` (`agent.windows.unjudged`).
        False when it may have one; a plugin's config model may define it too."""
        return False


class HttpProviderSettings(ProviderSettings):
    """What every HTTP provider has: budgets, retries and concurrency."""

    timeout: PositiveDuration = 10.0
    """Bound on one whole fetch: every attempt, backoff and page included."""
    request_timeout: Duration | None = None
    """Bound on one HTTP attempt (default: half of `timeout`, so one retry fits)."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts per request for 5xx, 429 and timeouts (1 = no retry)."""
    max_in_flight: int = Field(default=8, ge=1, le=256)
    """Requests in flight at once to this provider, across every window."""

    @property
    def attempt_timeout(self) -> float:
        return self.request_timeout or self.timeout / 2


class SentrySettings(HttpProviderSettings):
    base_url: HttpUrl = "https://sentry.io"
    """sentry.io, a region host (https://us.sentry.io, https://de.sentry.io) or self-hosted."""
    region: Literal["us", "de"] | None = None
    """Shorthand for the region host (base_url then defaults to it)."""
    org: str = Field(min_length=1)
    token: SecretStr
    markers: bool = False
    """Create a Sentry deploy (and the release if missing) at window start and rollback."""
    web_url: HttpUrl | None = None
    """Where the Sentry UI is, for links in alerts (default: sentry.io for its hosts,
    else base_url)."""
    sample_limit: int = Field(default=200, ge=0, le=2000)
    """p95_duration: transaction durations fetched (Link-header pages of 100) so the
    judge can rank-test the distribution; 0 fetches only the aggregate."""

    _token = field_validator("token")(header_token)
    _base_url = field_validator("base_url")(without_credentials_beside_a_token)
    _base = field_validator("base_url")(
        a_base("remove it (a token goes in providers.sentry.token)")
    )
    _web_base = field_validator("web_url")(a_base("remove it"))

    @model_validator(mode="before")
    @classmethod
    def _region(cls, data: Any) -> Any:
        return _region_url(data, "base_url", SENTRY_REGIONS, "https://sentry.io")

    @classmethod
    def check_rule(cls, rule: Rule, baseline: BaselineSettings) -> None:
        if rule.query_key is not None:
            raise FieldError(rule.query_key, query_read_by_none(rule.query_key, "sentry"))
        if rule.metric not in SENTRY_METRICS:  # at the rule's `metric`, as a checks rule's is
            message = (
                f"required for source sentry: one of {', '.join(SENTRY_METRICS)}"
                if rule.query_key is None and rule.metric == "query"  # no metric written
                else f"metric must be one of {', '.join(SENTRY_METRICS)} for source sentry"
                f" (got {rule.metric!r})"
            )
            raise FieldError("metric", message)
        if baseline.sentry is None:
            raise ValueError(
                "source sentry: set baseline.sentry.project (which Sentry project to compare)"
            )

    @classmethod
    def bare_value(cls, rule: Rule) -> bool:
        """An error_count is the round's errors alone, with no events it is a share of."""
        return rule.metric == "error_count"


class NewRelicSettings(HttpProviderSettings):
    api_url: HttpUrl = "https://api.newrelic.com/graphql"
    """NerdGraph: US https://api.newrelic.com/graphql, EU https://api.eu.newrelic.com/graphql."""
    region: Literal["us", "eu", "jp"] | None = None
    """Shorthand for the region's NerdGraph URL."""
    account_id: int = Field(gt=0)
    api_key: SecretStr
    markers: bool = False
    """Record a change-tracking event on the app at window start and rollback."""
    max_in_flight: int = Field(default=25, ge=1, le=25)
    """NerdGraph allows 25 concurrent requests per user; more only earns 429s."""
    web_url: HttpUrl | None = None
    """Where the New Relic UI is, for links (default: one.newrelic.com or one.eu…)."""

    _key = field_validator("api_key")(header_token)
    _web_base = field_validator("web_url")(a_base("remove it"))

    @model_validator(mode="before")
    @classmethod
    def _region(cls, data: Any) -> Any:
        return _region_url(data, "api_url", NEWRELIC_REGIONS, NEWRELIC_REGIONS["us"])

    @classmethod
    def check_rule(cls, rule: Rule, baseline: BaselineSettings) -> None:
        if rule.query_key == "query":
            raise FieldError("query", "source newrelic takes nrql (NRQL), not query")
        if not rule.query:
            raise ValueError("source newrelic needs nrql (without SINCE/UNTIL)")
        plain = nrql_clauses(rule.query)
        if re.search(r"\b(SINCE|UNTIL)\b", plain, re.IGNORECASE):
            raise FieldError(
                "nrql", "nrql must not contain SINCE or UNTIL: the agent adds the periods"
            )
        shaped = re.search(r"\b(FACET|TIMESERIES|COMPARE\s+WITH)\b", plain, re.IGNORECASE)
        if shaped:
            clause = " ".join(shaped.group(1).upper().split())
            raise FieldError(
                "nrql",
                f"nrql must not use {clause}: a rule needs one number per period (one"
                " row of results), and the agent compares the periods itself",
            )
        if is_rate(rule.metric) and _PERCENTAGE.search(plain) and not _HUNDREDTH.search(plain):
            raise FieldError(
                "nrql",
                f"percentage() answers 0-100, and metric {rule.metric} is a fraction from 0"
                " to 1 (0.5% errors would read as 50%): divide it by 100, e.g."
                " SELECT percentage(count(*), WHERE error IS true) / 100 FROM Transaction",
            )

    @classmethod
    def bare_value(cls, rule: Rule) -> bool:
        """A row has a count only beside a column named `total` (`observation_from_rows`):
        a query that never says `total` gives none. One that does may (said of none)."""
        return "total" not in (rule.query or "").lower()


_PERCENTAGE = re.compile(r"\bpercentage\s*\(", re.IGNORECASE)
_HUNDREDTH = re.compile(r"/\s*100(?:\.0*)?(?![\d.])|(?<![\d.])0?\.01\s*\*|\*\s*0?\.01(?![\d.])")
"""A division by 100 (or a product with 0.01): what turns a percentage into a fraction."""
_TIMES_100 = re.compile(r"(?<![\d.])100(?:\.0*)?\s*\*|\*\s*100(?:\.0*)?(?![\d.])")
_MILLISECONDS = re.compile(r"[a-zA-Z0-9]_(?:milliseconds|ms)(?:_bucket|_sum|_count|_total)?\b")
"""A metric name in milliseconds (Prometheus' convention is base units: seconds)."""
_THOUSANDTH = re.compile(r"/\s*1000(?:\.0*)?(?![\d.])|(?<![\d.])0?\.001\s*\*|\*\s*0?\.001(?![\d.])")
_PROMQL_UNREAD = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`|#[^\n]*')
"""PromQL's string literals and comments: what may say anything."""
_NRQL_UNREAD = re.compile(r"'(?:[^'\\]|\\.)*'|`[^`]*`|(?:--|//)[^\n]*|/\*.*?(?:\*/|$)", re.S)


def nrql_clauses(nrql: str) -> str:
    """`nrql` with what may say anything blanked: string literals, `quoted` names and
    comments (`--` or `//` to the end of the line, `/* … */`), which NRQL does not read
    as clauses. Pure."""
    return _NRQL_UNREAD.sub(" '' ", nrql)


class PrometheusSettings(HttpProviderSettings):
    url: HttpUrl = "http://127.0.0.1:9090"
    bearer_token: SecretStr | None = None
    """For a Prometheus-compatible API behind auth (Mimir, Thanos, a proxy)."""
    step: Duration | None = None
    """query_range resolution (default: the period / max_points, at least 1s)."""
    max_points: int = Field(default=60, ge=1, le=11000)

    _base = field_validator("url")(
        a_base("remove it (a token goes in providers.prometheus.bearer_token)")
    )
    _bearer = field_validator("bearer_token")(optional_header_token)

    @model_validator(mode="after")
    def _one_authorization(self) -> PrometheusSettings:
        """A user:password in `url` is basic auth, unless a bearer token is sent too."""
        if self.bearer_token is not None and has_credentials(self.url):
            error = PydanticCustomError("value_error", TOKEN_BESIDE_CREDENTIALS)
            details = InitErrorDetails(type=error, loc=("url",), input=self.url)
            raise ValidationError.from_exception_data(type(self).__name__, [details])
        return self

    @classmethod
    def check_rule(cls, rule: Rule, baseline: BaselineSettings) -> None:
        if rule.query_key == "nrql":
            raise FieldError("nrql", "source prometheus takes query (PromQL), not nrql")
        if not rule.query:
            raise ValueError("source prometheus needs query (PromQL)")
        plain = _PROMQL_UNREAD.sub(' "" ', rule.query)
        if is_rate(rule.metric) and _TIMES_100.search(plain) and not _HUNDREDTH.search(plain):
            raise FieldError(
                "query",
                f"the query answers a percentage (0-100): it multiplies by 100, and metric"
                f" {rule.metric} is a fraction from 0 to 1 (0.5% errors would read as 50%);"
                " drop the * 100",
            )
        if (
            is_duration(rule.metric)
            and _MILLISECONDS.search(plain)
            and not _THOUSANDTH.search(plain)
        ):
            raise FieldError(
                "query",
                f"the query reads a metric in milliseconds, and metric {rule.metric} is in"
                " seconds (650 ms would read as 650 s): divide it by 1000, e.g."
                " histogram_quantile(0.95, …) / 1000",
            )

    @classmethod
    def bare_value(cls, rule: Rule) -> bool:
        """A query's value is a number, never the requests it was read from."""
        return True


class ProvidersSettings(BaseModel):
    """Built-in providers as typed fields; a third-party provider (entry point
    `postflight.providers`) is configured under its entry-point name and validated
    by its own `config_model`. An unknown name is an error, never ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    sentry: SentrySettings | None = None
    newrelic: NewRelicSettings | None = None
    prometheus: PrometheusSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _plugins(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        extra = [k for k in data if k not in cls.model_fields]
        if not extra:
            return data
        out = dict(data)
        for name in extra:
            model = config_model_for(name)
            if model is None:
                known = ", ".join(sorted(plugin_names())) or "none"
                raise ValueError(f"unknown provider {name!r} (installed: {known})")
            try:
                out[name] = model.model_validate(data[name])
            except ValidationError as exc:  # at `providers.<name>.<key>`, not `providers.<key>`
                raise _below(name, exc) from None
        return out


def _below(name: str, exc: ValidationError) -> ValidationError:
    """`exc`'s errors, each under the key `name`: a plugin's section is validated inside
    this model's validator, which would place them at the section's parent."""
    errors = [
        InitErrorDetails(
            type=PydanticCustomError(error["type"], error["msg"]),
            loc=(name, *error["loc"]),
            input=error["input"],
        )
        for error in exc.errors(include_url=False)
    ]
    return ValidationError.from_exception_data(exc.title, errors)


def release_template(value: str) -> str:
    """`{version}` and no other field: a typo such as `{verison}` or `{sha}` would
    otherwise fail mid-window, or name a release nobody has (`{{`/`}}` are braces)."""
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"{exc}; write {{{{ or }}}} for a literal brace") from None
    fields = [
        name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        for _, name, spec, conversion in parts
        if name is not None
    ]
    if wrong := [f for f in fields if f != "version"]:
        raise ValueError(f"only {{version}} may be in braces (got {{{wrong[0]}}})")
    if not fields:
        raise ValueError('must contain {version}, e.g. "web@{version}"')
    return value


class SentryScope(StrictModel):
    project: str = Field(min_length=1)
    """Project slug (or numeric id)."""
    environment: str | None = None
    """Sentry environment; omitted: every environment."""
    release: str = "{version}"
    """Sentry's release name for a deploy's version, as the app's SDK names it (Sentry
    recommends `package@version`: `web@{version}`); every query, link and marker uses
    it. Default: the version as registered."""

    _release = field_validator("release")(release_template)

    def release_name(self, version: str) -> str:
        """The release Sentry knows `version` by."""
        return self.release.format(version=version)


class NewRelicScope(StrictModel):
    app_name: str | None = None
    """The APM app; used to place change-tracking markers."""
    entity_guid: str | None = None
    """Markers go to this entity when set (else the APM app named `app_name`)."""


class BaselineSettings(StrictModel):
    sentry: SentryScope | None = None
    newrelic: NewRelicScope | None = None
