"""The defaults and bounds the README's "Configuration walkthrough" gives are the
settings' own: each is read from the README, where `{}` marks it in the words around it,
and compared with the model's default or the constant that bounds it. A default or
bound changed on one side only fails here. Pure: no agent runs."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from agent.providers.provider_settings import (
    HttpProviderSettings,
    NewRelicSettings,
    PrometheusSettings,
    SentrySettings,
)
from agent.settings import (
    MAX_ALERT_TIMEOUT_S,
    MAX_VIEW_TTL_S,
    MAX_WINDOW_S,
    MIN_ALERT_TIMEOUT_S,
    MIN_INTERVAL_S,
    AlertingSettings,
    AnalysisSettings,
    EnvironmentSettings,
    RetentionSettings,
    RollbackSettings,
    RuleSettings,
    ServerSettings,
    StoreSettings,
)
from checks.base import CheckConfig
from checks.http import HttpCheckConfig
from checks.load import LoadCheckConfig
from common.durations import parse_duration
from tests.readme import section

_FIGURE = r"([^\s,;()]+)"
"""A figure as the README writes one: `30s`, `7d`, `1%`, `127.0.0.1:8787`, `GET`."""


SAID = section("Configuration walkthrough")


def figures(words: str) -> list[str]:
    """The figures at each `{}` in `words`, as the walkthrough says them (once)."""
    pattern = _FIGURE.join(re.escape(part) for part in words.split("{}"))
    found = re.findall(pattern, SAID)
    assert len(found) == 1, f"the walkthrough says {words!r} {len(found)} times"
    match = found[0]  # a tuple when `words` has more than one `{}`
    return [
        text.strip("`").rstrip(":.") for text in ((match,) if isinstance(match, str) else match)
    ]


def seconds(*said: str) -> list[float]:
    return [parse_duration(text) for text in said]


def default(model: type[BaseModel], field: str) -> Any:
    return model.model_fields[field].get_default(call_default_factory=True)


def bound(model: type[BaseModel], field: str, which: str) -> float:
    """`which` (`minimum`, `maximum`, `exclusiveMinimum`) of a field's JSON Schema: a
    duration's from the branch that takes numbers, where its bounds are."""
    schema = model.model_json_schema()["properties"][field]
    branches = schema.get("anyOf", [schema])
    (value,) = [b[which] for b in branches if b.get("type") in ("number", "integer")]
    return float(value)


def test_the_servers_and_stores_figures_are_the_settings() -> None:
    (listen,) = figures("`listen` (HOST:PORT, default {};")
    assert listen == default(ServerSettings, "listen")
    ttl, floor, most = seconds(
        *figures("`view_ttl` (how long a link stays valid, default {}, more than {}, at most {}")
    )
    assert ttl == default(ServerSettings, "view_ttl")
    assert floor == bound(ServerSettings, "view_ttl", "exclusiveMinimum")
    assert most == bound(ServerSettings, "view_ttl", "maximum") == MAX_VIEW_TTL_S
    stop, most = seconds(*figures("send what is due: default {}, at most {}, the contract's bound"))
    assert stop == default(ServerSettings, "shutdown_timeout")
    assert most == bound(ServerSettings, "shutdown_timeout", "maximum")
    lease, least = seconds(*figures("a lease of `lease`, default {}, at least {},"))
    assert lease == default(StoreSettings, "lease")
    assert least == bound(StoreSettings, "lease", "minimum")
    assert seconds(*figures("`rounds` (default {})")) == [default(RetentionSettings, "rounds")]


def test_the_providers_and_alertings_figures_are_the_settings() -> None:
    (limit,) = figures("`sample_limit`, default {}:")
    assert int(limit) == default(SentrySettings, "sample_limit")
    (points,) = figures("`max_points`, default {}:")
    assert int(points) == default(PrometheusSettings, "max_points")
    assert seconds(*figures("`timeout` (default {}: one whole fetch")) == [
        default(HttpProviderSettings, "timeout")
    ]
    (attempts,) = figures("`max_attempts` (default {}: a 5xx, 429 or timeout")
    assert int(attempts) == default(HttpProviderSettings, "max_attempts")
    most, newrelic = figures("across every window: default {}, New Relic's {})")
    assert int(most) == default(HttpProviderSettings, "max_in_flight")
    assert int(newrelic) == default(NewRelicSettings, "max_in_flight")
    timeout, low, high = seconds(
        *figures("`alerting.timeout` (default {}) bounds one alert across its channels ({} to {}:")
    )
    assert timeout == default(AlertingSettings, "timeout")
    assert (low, high) == (MIN_ALERT_TIMEOUT_S, MAX_ALERT_TIMEOUT_S)


def test_an_environments_figures_are_the_settings() -> None:
    window, longest = seconds(*figures("`window` (default {}, at most {} as the API's `window`)"))
    assert (window, longest) == (default(EnvironmentSettings, "window"), MAX_WINDOW_S)
    for field in ("interval", "background_interval"):
        period, least = seconds(*figures(f"`{field}` ({{}}; at least {{}}"))
        assert (period, least) == (default(EnvironmentSettings, field), MIN_INTERVAL_S)
    lookback, floor = seconds(*figures("`lookback` ({}; more than {})"))
    assert (lookback, floor) == (default(EnvironmentSettings, "lookback"), 0.0)
    (probes,) = figures("`probes_per_round` ({})")
    assert int(probes) == default(EnvironmentSettings, "probes_per_round")
    (concurrency,) = figures("`max_concurrency` ({}:")
    assert int(concurrency) == default(EnvironmentSettings, "max_concurrency")


def test_the_checks_figures_are_the_settings() -> None:
    assert figures("`method` (default {})") == [default(HttpCheckConfig, "method")]
    assert seconds(*figures("`timeout` (default {}), `verify_tls`")) == [
        default(CheckConfig, "timeout")
    ]
    (days,) = figures("`tls_expiry_warning_days` (default {}:")
    assert int(days) == default(HttpCheckConfig, "tls_expiry_warning_days")
    duration, warmup = seconds(*figures("`duration` (default {}), `warmup` (default {})"))
    assert duration == default(LoadCheckConfig, "duration")
    assert warmup == default(LoadCheckConfig, "warmup")
    (in_flight,) = figures("`max_in_flight` (default {}: past it a due request")
    assert int(in_flight) == default(LoadCheckConfig, "max_in_flight")
    (errors,) = figures("`max_error_rate` (default {})")
    assert errors.endswith("%")
    assert float(errors[:-1]) / 100 == default(LoadCheckConfig, "max_error_rate")


def test_the_judges_and_rollbacks_figures_are_the_settings() -> None:
    (limit,) = figures("`failure_limit` consecutive rounds, default {},")
    assert int(limit) == default(AnalysisSettings, "failure_limit")
    assert figures("`sequential` (the {}") == ["default"]
    assert default(AnalysisSettings, "policy") == "sequential"
    (samples,) = figures("`min_samples` (default {})")
    assert int(samples) == default(RuleSettings, "min_samples")
    attempts, timeout, backoff, most = figures(
        "`max_attempts` (default {}), `timeout` (default {}), `backoff` (default {};"
        " doubles each attempt, with full jitter), `max_backoff` (default {};"
    )
    assert int(attempts) == default(RollbackSettings, "max_attempts")
    assert seconds(timeout, backoff, most) == [
        default(RollbackSettings, field) for field in ("timeout", "backoff", "max_backoff")
    ]
