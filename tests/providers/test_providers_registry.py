"""Entry-point registry, configuration, and what every provider guarantees (fail soft,
budgets, single flight, secrets, cancellation)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import typing
from collections.abc import Iterator
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from pydantic import ValidationError

from agent.analysis.types import Observation
from agent.metrics import Metrics
from agent.providers import plugins, registry
from agent.providers.base import Provider
from agent.providers.client import Plan
from agent.providers.newrelic import NewRelicProvider
from agent.providers.prometheus import PrometheusProvider
from agent.providers.provider_settings import ProvidersSettings, SentrySettings
from agent.providers.sentry import SentryProvider
from agent.settings import settings_from_document
from common.redaction import Redactor
from tests.fakes.sentry import FakeSentry, SentryStats
from tests.providers.support import (
    AFTER,
    SENTRY_TOKEN,
    requests_counted,
    rule,
    scope,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "postflight.example.yaml"


def test_builtin_providers_are_entry_points() -> None:
    assert {"sentry", "newrelic", "prometheus"} <= registry.plugin_names()
    assert registry.load_plugin("sentry") is SentryProvider
    assert registry.load_plugin("newrelic") is NewRelicProvider
    assert registry.load_plugin("prometheus") is PrometheusProvider


def test_only_configured_providers_are_built() -> None:
    settings = ProvidersSettings.model_validate(
        {
            "prometheus": {"url": "http://127.0.0.1:9"},
            "sentry": {"org": "acme", "token": SENTRY_TOKEN},
        }
    )
    built = registry.build_providers(settings, Metrics(), Redactor())
    assert sorted(built) == ["prometheus", "sentry"]
    assert isinstance(built["sentry"], SentryProvider)
    provider: Provider = built["prometheus"]
    assert provider.name == "prometheus"


def test_the_public_example_providers_validate() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())["providers"]
    document["sentry"]["base_url"] = "https://sentry.io"
    document["sentry"]["token"] = "sntrys_x"
    document["newrelic"]["api_url"] = "https://api.newrelic.com/graphql"
    document["newrelic"]["api_key"] = "NRAK-x"
    document["prometheus"]["url"] = "http://127.0.0.1:9090"
    settings = ProvidersSettings.model_validate(document)
    assert settings.newrelic is not None and settings.newrelic.max_in_flight == 25
    assert settings.sentry is not None and settings.sentry.timeout == 10.0


def test_an_unknown_provider_is_an_error_naming_the_installed_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown provider 'sentyr'.*installed: .*sentry"):
        ProvidersSettings.model_validate({"sentyr": {"org": "acme"}})


@pytest.fixture
def echo_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def entry_points(*, group: str) -> EntryPoints:
        found = list(importlib.metadata.entry_points(group=group))
        if group == plugins.ENTRY_POINT_GROUP:
            found.append(
                EntryPoint(
                    "echo",
                    "tests.providers.plugin_example:EchoProvider",
                    plugins.ENTRY_POINT_GROUP,
                )
            )
        return EntryPoints(found)

    monkeypatch.setattr(plugins, "entry_points", entry_points)
    plugins.plugin_names.cache_clear()
    plugins.load_plugin.cache_clear()
    yield
    plugins.plugin_names.cache_clear()
    plugins.load_plugin.cache_clear()


async def test_a_third_party_provider_joins_through_its_entry_point(echo_plugin: None) -> None:
    settings = ProvidersSettings.model_validate({"echo": {"value": 7}})
    built = registry.build_providers(settings, Metrics())
    obs = await built["echo"].fetch(
        rule(source="prometheus", query="x", max=1), scope(), AFTER, None
    )
    assert obs.value == 7
    with pytest.raises(ValidationError, match="value"):
        ProvidersSettings.model_validate({"echo": {"valeu": 7}})


def echo_document(rule: dict[str, Any], **environment: Any) -> dict[str, Any]:
    """A configuration document with the echo provider and `rule` in `production`, whose
    other keys are `environment`'s."""
    production = {"base_url": "http://127.0.0.1:1", "rules": [rule], **environment}
    return {
        "server": {"api_tokens": ["tok-1234567890abcdef"]},
        "providers": {"echo": {"value": 7}},
        "environments": {"production": production},
    }


def test_a_plugin_validates_its_own_rules_as_built_ins_do(echo_plugin: None) -> None:
    document = echo_document({"name": "r", "source": "echo", "metric": "echo_value", "max": 1})
    assert settings_from_document(document).environments["production"].rules[0].source == "echo"
    document["environments"]["production"]["rules"][0]["metric"] = "other"
    with pytest.raises(ValidationError, match="metric must be echo_value for source echo"):
        settings_from_document(document)
    sentry_rule = {"name": "s", "source": "sentry", "metric": "nope", "max": 1}
    document["environments"]["production"]["rules"] = [sentry_rule]
    document["providers"] = {"sentry": {"org": "acme", "token": "sntrys_x1234"}}
    with pytest.raises(ValidationError, match=r"metric must be one of .* for source sentry"):
        settings_from_document(document)


def test_a_plugin_says_which_of_its_rules_have_no_sample_count(
    echo_plugin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bare_value(rule)` on a plugin's config model, as the built-ins': where it is true, a
    `min_samples` under the threshold policy does not apply and is warned so; a plugin
    without it is taken to count (no warning rather than a wrong one)."""
    from agent.windows.unjudged import min_samples_warnings
    from tests.providers.plugin_example import EchoSettings

    rule = {"name": "r", "source": "echo", "metric": "echo_value", "max": 1, "min_samples": 5}
    document = echo_document(rule, analysis={"policy": "threshold"})
    assert min_samples_warnings(settings_from_document(document)) == []
    bare = classmethod(lambda cls, rule: rule.metric == "echo_value")
    monkeypatch.setattr(EchoSettings, "bare_value", bare, raising=False)
    ((loc, said),) = min_samples_warnings(settings_from_document(document))
    assert loc == ("environments", "production", "rules", 0, "min_samples")
    assert "its echo_value (source echo) is one figure a round" in said, said


@pytest.mark.parametrize(
    "answer",
    [Observation(value="0.5"), Observation(value=0.5, values=("0.1",)), Observation(value=True)],  # type: ignore[arg-type]
    ids=["a text value", "text values", "a bool value"],
)
async def test_a_malformed_observation_becomes_an_error_observation(
    sentry: SentryProvider, metrics: Metrics, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    """A plugin's plan that answers with something other than numbers fails soft here,
    where it was passed on to the judge as it was."""

    async def malformed(deadline: float) -> Observation:
        return typing.cast(Observation, answer)

    monkeypatch.setattr(sentry, "plan", lambda *a: Plan(key="k", query="q", run=malformed))
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=1), scope(), AFTER, "v1"
    )
    assert obs.value is None
    assert obs.error == "unexpected failure talking to Sentry (TypeError)"
    assert requests_counted(metrics, "sentry", "error") == 1


async def test_an_unexpected_exception_becomes_an_error_observation(
    sentry: SentryProvider, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(deadline: float) -> Observation:
        raise KeyError("surprise")

    monkeypatch.setattr(sentry, "plan", lambda *a: Plan(key="k", query="q", run=explode))
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=1), scope(), AFTER, "v1"
    )
    assert obs.value is None
    assert obs.error == "unexpected failure talking to Sentry (KeyError)"
    assert requests_counted(metrics, "sentry", "error") == 1
    histogram = metrics.registry.get_sample_value(
        "postflight_provider_request_duration_seconds_count", {"provider": "sentry"}
    )
    assert histogram == 1


UNREACHABLE = SentrySettings.model_validate(
    {
        "base_url": "http://127.0.0.1:9",
        "org": "acme",
        "token": SENTRY_TOKEN,
        "timeout": "1s",
        "request_timeout": "300ms",
        "max_attempts": 2,
    }
)
"""Sentry on a port nothing listens on: every request refused."""


async def test_an_unreachable_provider_is_an_error_observation(metrics: Metrics) -> None:
    provider = SentryProvider(UNREACHABLE, metrics=metrics)
    try:
        obs = await provider.fetch(
            rule(source="sentry", metric="error_rate", max=1), scope(), AFTER, "v1"
        )
    finally:
        await provider.aclose()
    assert obs.error is not None and obs.error.startswith("could not reach Sentry")


@pytest.mark.usefixtures("heap_set_aside")
async def test_an_unreachable_provider_leaves_no_exceptions_for_the_collector(
    metrics: Metrics,
) -> None:
    """A refused request's exceptions are freed with the fetch, without a collection:
    aiohttp keeps each in a frame its traceback holds (`common.tracebacks`), and the daemon
    collects rarely (`agent.windows.heap`): a provider down piled them up every round."""
    import gc

    provider = SentryProvider(UNREACHABLE, metrics=metrics)
    which = rule(source="sentry", metric="error_rate", max=1)
    await provider.fetch(which, scope(), AFTER, "v1")  # warm: what stays for good
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if isinstance(o, BaseException))
        for _ in range(3):
            obs = await provider.fetch(which, scope(), AFTER, "v1")
            assert obs.error is not None and obs.error.startswith("could not reach Sentry")
        alive = sum(1 for o in gc.get_objects() if isinstance(o, BaseException)) - before
    finally:
        gc.enable()
        await provider.aclose()
    assert alive == 0


async def test_secrets_in_a_provider_answer_never_reach_errors_or_logs(
    aiohttp_server: Any, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    other_secret = "rollback-secret-value"

    async def leaky(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        return web.json_response(
            {"detail": f"bad request for {auth} and {other_secret}"}, status=400
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", leaky)
    server = await aiohttp_server(app)
    settings = SentrySettings.model_validate(
        {
            "base_url": str(server.make_url("")).rstrip("/"),
            "org": "acme",
            "token": SENTRY_TOKEN,
            "max_attempts": 1,
        }
    )
    provider = SentryProvider(
        settings, metrics=metrics, redact=Redactor([SENTRY_TOKEN, other_secret])
    )
    caplog.set_level(logging.DEBUG)
    try:
        s = scope(
            baseline=scope().baseline.model_copy(
                update={
                    "sentry": scope().baseline.sentry.model_copy(  # type: ignore[union-attr]
                        update={"project": "42"}
                    )
                }
            )
        )
        obs = await provider.fetch(
            rule(source="sentry", metric="error_rate", max=1), s, AFTER, "v1"
        )
    finally:
        await provider.aclose()
    assert obs.error is not None and obs.error.startswith("Sentry rejected the query: ")
    assert SENTRY_TOKEN not in obs.error and other_secret not in obs.error
    assert SENTRY_TOKEN not in caplog.text and other_secret not in caplog.text


async def test_a_cancelled_caller_is_cancelled_but_a_shared_fetch_goes_on(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.delay = 0.3
    sentry_fake.set_stats(SentryStats(failure_rate=0.01), release="v1")
    r = rule(source="sentry", metric="error_rate", max=1)
    first = asyncio.create_task(sentry.fetch(r, scope(), AFTER, "v1"))
    second = asyncio.create_task(sentry.fetch(r, scope(), AFTER, "v1"))
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    obs = await second
    assert obs.error is None and obs.value == 0.01


async def test_closing_the_provider_ends_fetches_in_flight_softly(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.fail("hang")
    task = asyncio.create_task(
        sentry.fetch(rule(source="sentry", metric="error_rate", max=1), scope(), AFTER, "v1")
    )
    await asyncio.sleep(0.1)
    await sentry.aclose()
    obs = await task
    assert obs.value is None and obs.error == "Sentry fetch cancelled"
    after = await sentry.fetch(
        rule(source="sentry", metric="error_count", max=1), scope(), AFTER, "v1"
    )
    assert after.error == "the Sentry provider is closed"
