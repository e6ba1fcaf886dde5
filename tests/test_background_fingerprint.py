"""A pre-deploy baseline pools only background runs of the checks as configured now: after
`base_url` (or a check) changes and the agent restarts, runs against the old target are
left out (the audit saw a baseline error rate of 0.5 from a dead port while the new target
had served no error)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.metrics import Metrics
from agent.settings import EnvironmentSettings
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.fingerprint import check_fingerprints, probe_fingerprint
from agent.windows.foresight import background_baseline, baseline_runs
from agent.windows.probing import BackgroundProber, EnvironmentProbe
from checks.base import CheckConfig
from checks.sessions import TargetSessions

CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    lookback: 1h
    background_interval: 30s
    interval: 200ms
    probes_per_round: 4
    checks:
      - {{name: health, type: http, {target}{extra}}}
    rules:
      - {{name: errors, source: checks, check: health, metric: error_rate, max_increase: 5%}}
"""

DEPLOYED_AT = 10_000.0


def environment(url: str, extra: str = "", target: str = "path: /health") -> EnvironmentSettings:
    text = CONFIG.format(url=url, extra=extra, target=target)
    return load_settings_text(text).environments["production"]


async def serving(status: int) -> TestServer:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": status}, status=status)

    app = web.Application()
    app.router.add_get("/health", health)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def targets() -> AsyncIterator[tuple[str, str]]:
    """An old target that fails every probe (A) and the new, healthy one (B)."""
    old, new = await serving(503), await serving(200)
    yield str(old.make_url("")).rstrip("/"), str(new.make_url("")).rstrip("/")
    await old.close()
    await new.close()


async def background_runs(store: SqliteStore, env: EnvironmentSettings, at: list[float]) -> None:
    """One agent process probing `env` in the background: a run at each of `at`."""
    sessions = TargetSessions()
    try:
        probe = EnvironmentProbe("production", env, sessions, Metrics())
        prober = BackgroundProber({"production": probe}, store, lambda _: False, iter(at).__next__)
        for _ in at:
            await prober.probe_once("production", probe, probe.checks[0])
    finally:
        await sessions.aclose()


async def error_baseline(store: SqliteStore, env: EnvironmentSettings) -> Any:
    """The `errors` rule's baseline, as a window deployed at DEPLOYED_AT takes it."""
    since = DEPLOYED_AT - env.lookback
    runs = await baseline_runs(store, "production", env, since, DEPLOYED_AT)
    return background_baseline(env.rules[0].to_rule(), runs.periods, env)


async def test_after_base_url_changes_the_baseline_uses_only_the_new_targets_runs(
    store: SqliteStore, targets: tuple[str, str]
) -> None:
    old_url, new_url = targets
    await background_runs(store, environment(old_url), [9_000.0, 9_030.0])
    assert (await error_baseline(store, environment(old_url))).value == 1.0

    restarted = environment(new_url)  # base_url changed, the agent restarted
    none_yet = await error_baseline(store, restarted)
    assert not none_yet.has_data, "runs against the old base_url stood for the new one's"

    await background_runs(store, restarted, [9_060.0, 9_090.0])
    baseline = await error_baseline(store, restarted)
    assert baseline.value == 0.0
    assert baseline.total == 2 * restarted.probes_per_round  # B's two runs, none of A's


async def test_a_changed_check_definition_restarts_its_baseline(
    store: SqliteStore, targets: tuple[str, str]
) -> None:
    _, url = targets
    await background_runs(store, environment(url), [9_000.0])
    stricter = environment(url, ", expect: {status: 201}")
    assert not (await error_baseline(store, stricter)).has_data
    assert (await error_baseline(store, environment(url))).has_data


async def test_runs_stored_without_a_fingerprint_are_left_out(store: SqliteStore) -> None:
    """Rows from before fingerprints were kept: nothing says what they probed."""
    await store.add_probe_summary("production", "health", 9_000.0, {"ok": [0], "latency": [0.1]})
    assert not (await error_baseline(store, environment("http://127.0.0.1:9"))).has_data


def test_the_fingerprint_is_what_is_probed_not_its_credentials() -> None:
    def of(url: str, extra: str = "", target: str = "path: /health") -> str:
        return check_fingerprints(environment(url, extra, target))["health"]

    plain = of("http://a.test")
    assert plain == of("http://a.test/")  # the same URL once joined
    assert plain != of("http://b.test")
    assert plain != of("http://a.test", ", method: HEAD")
    assert plain != of("http://a.test", ", expect: {max_latency: 1s}")
    token = of("http://a.test", ", headers: {Authorization: Bearer one}")
    assert token == of("http://a.test", ", headers: {Authorization: Bearer two}")
    assert token != plain
    absolute = "url: 'http://elsewhere.test/health'"  # base_url plays no part
    assert of("http://a.test", target=absolute) == of("http://b.test", target=absolute)


def test_a_plugin_checks_own_fields_are_part_of_its_fingerprint() -> None:
    """A plugin's `url` or `path` means what the plugin says: kept, beside base_url."""

    class PingConfig(CheckConfig):
        type: str = "ping"
        url: str = "tcp://a.test:1"

    a, b = PingConfig(name="p"), PingConfig(name="p", url="tcp://b.test:1")
    assert probe_fingerprint(a, "http://x.test") != probe_fingerprint(b, "http://x.test")
    assert probe_fingerprint(a, "http://x.test") != probe_fingerprint(a, "http://y.test")


def test_the_fingerprint_is_stable_across_processes() -> None:
    """A fixed digest (not Python's salted `hash`): a restart matches its own runs. A new
    digest restarts every environment's baseline at the upgrade: change it knowingly."""
    check = environment("http://a.test").checks[0]
    assert probe_fingerprint(check, "http://a.test/") == "1d9f31c27efbb216"


async def test_a_restart_says_once_per_environment_why_its_baseline_starts_afresh(
    store: SqliteStore, targets: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    old_url, new_url = targets
    await background_runs(store, environment(old_url), [9_000.0, 9_030.0])
    for url, said in ((old_url, False), (new_url, True)):
        probe = EnvironmentProbe("production", environment(url), TargetSessions(), Metrics())
        prober = BackgroundProber({"production": probe}, store, lambda _: False, lambda: 9_100.0)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="postflight"):
            await prober.note_changed_checks(["production"])
        lines = [r for r in caplog.records if "starts afresh" in r.getMessage()]
        assert len(lines) == int(said), caplog.text
    assert "2 stored run(s) of health" in lines[0].getMessage()
    assert lines[0].environment == "production"  # type: ignore[attr-defined]
