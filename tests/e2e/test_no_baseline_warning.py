"""A relative checks rule with no background run in its lookback is warned at registration.

On a new store, or right after the agent starts, background probing has built no
baseline yet; a `max_increase` rule over checks then ends `inconclusive` ("no baseline")
whatever the release does, and until now nothing said so before the window's end.
"""

from __future__ import annotations

import logging
import re

import pytest

from agent.settings import EnvironmentSettings
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import registration_warnings
from agent.windows.probing import summarize
from checks.base import Sample
from tests.config.test_validate_config import MINIMAL
from tests.e2e.conftest import AgentFactory, FlipTarget, environment

NOW = 1_800_000_000.0
RELATIVE = (
    "      - {name: p95, source: checks, check: api-health, metric: latency_p95,"
    " max_increase: 50%}\n"
)


def env(extra: str = "", analysis: str = "") -> EnvironmentSettings:
    text = MINIMAL.replace("        max: 0.05\n", "        max: 0.05\n" + RELATIVE)
    text = text.replace("    rules:\n", f"{analysis}{extra}    rules:\n")
    return load_settings_text(text).environments["production"]


def no_baseline(said: list[str]) -> list[str]:
    return [s for s in said if "no baseline" in s]


@pytest.mark.parametrize("analysis", ["", "    analysis: {policy: threshold}\n"])
async def test_an_empty_lookback_is_warned_for_each_relative_checks_rule(
    store: SqliteStore, analysis: str
) -> None:
    said = await registration_warnings(
        store, env(analysis=analysis), "production", NOW, NOW + 600, now=NOW
    )
    assert no_baseline(said) == [
        "rule p95: no baseline: the lookback (1h before the deploy) holds no background run"
        " of api-health to compare with (background probing builds it between windows; a new"
        " store or an agent just started has none yet, and runs left out do not count), so"
        " this max_increase rule ends inconclusive (no baseline) whatever the release does"
    ], said  # probe-errors (max 0.05) needs none


async def test_a_background_run_in_the_lookback_is_a_baseline(store: SqliteStore) -> None:
    production = env()
    samples = [Sample(check="api-health", ok=True, latency_s=0.03) for _ in range(10)]
    fingerprint = check_fingerprints(production)["api-health"]
    await store.add_probe_summary(
        "production", "api-health", NOW - 60, summarize(samples), fingerprint
    )
    said = await registration_warnings(store, production, "production", NOW, NOW + 600, now=NOW)
    assert no_baseline(said) == [], said


async def test_a_deploy_ahead_or_a_canary_is_not_warned(store: SqliteStore) -> None:
    ahead = await registration_warnings(store, env(), "production", NOW + 600, NOW + 1200, now=NOW)
    assert no_baseline(ahead) == []  # its lookback's runs are still to come
    canary = env(extra="    baseline_url: http://127.0.0.1:10\n")
    said = await registration_warnings(store, canary, "production", NOW, NOW + 600, now=NOW)
    assert no_baseline(said) == []  # the stable side, probed beside it, is its baseline


async def test_a_fresh_agent_says_so_in_the_registrations_warnings(
    start_agent: AgentFactory, flip_target: FlipTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the API, on the agent's own empty store: the deploy registered as it starts.
    Logged once, by the window as it takes its baseline (not by the registration too)."""
    caplog.set_level(logging.WARNING)
    rules = (
        "{name: errors, source: checks, metric: error_rate, max: 0.05}",
        "{name: p95, source: checks, metric: latency_p95, max_increase: 50%}",
    )
    agent = await start_agent(
        environment(
            "production", flip_target.url, interval="1s", background_interval="30s", rules=rules
        )
    )
    deploy = await agent.register("production", "v1")
    (said,) = no_baseline(deploy.get("warnings") or [])
    base, _, first = said.rpartition("; ")
    assert base == (
        "rule p95: no baseline: the lookback (1h before the deploy) holds no background run"
        " of api-health to compare with (background probing builds it between windows; a new"
        " store or an agent just started has none yet, and runs left out do not count), so"
        " this max_increase rule ends inconclusive (no baseline) whatever the release does"
    ), said
    # the agent's first run starts within its first 10 ms (`background_offset`), so the
    # registration may come just before it
    assert re.fullmatch(
        r"the first background run of api-health is (under way|due in 1s \(at \S+Z\)): a"
        r" deploy registered once it is stored is judged against it",
        first,
    ), said
    await agent.settled(deploy["id"], within=15)
    logged = [r for r in caplog.records if r.getMessage().startswith("rule p95: no baseline")]
    assert [getattr(r, "deploy_id", None) for r in logged] == [deploy["id"]], caplog.text
    assert "the first background run of api-health is" in logged[0].getMessage(), caplog.text


async def test_a_deploy_ahead_of_its_first_background_run_is_warned_when_it_is_due(
    store: SqliteStore,
) -> None:
    """A deploy registered ahead of its `deployed_at` was never warned, as its runs may
    still come; one whose check's first background run here starts only after it (a load
    check's turn, a slot not yet come round) has none by then, and is told when it is due.
    One whose run comes first is not warned; nor, as before, one with no run planned here."""

    async def ahead(first_run: float | None) -> list[str]:
        """The warnings of a deploy 10 minutes ahead, its check's first run at `first_run`."""
        said = await registration_warnings(
            store,
            env(),
            "production",
            NOW + 600,
            NOW + 1200,
            now=NOW,
            next_run=lambda environment, check: first_run if check == "api-health" else None,
        )
        return no_baseline(said)

    assert await ahead(NOW + 900) == [
        "rule p95: no baseline: the lookback (1h before the deploy) will hold no background"
        " run of api-health to compare with (background probing builds it between windows; a"
        " new store or an agent just started has none yet, and runs left out do not count),"
        " so this max_increase rule ends inconclusive (no baseline) whatever the release"
        " does; the first background run of api-health is due in 15m"
        " (at 2027-01-15T08:15:00Z), after the deploy (at 2027-01-15T08:10:00Z): a deploy"
        " registered once it is stored is judged against it"
    ]
    assert await ahead(NOW + 300) == []
    assert await ahead(None) == []
