"""A rate rule bounded at its very end (`error_rate max: 0`) in an environment that passes on
evidence can only fail: registration answers so in its `warnings`, the window logs it once as
it opens, and a clean window ends `inconclusive`, as warned (`agent.analysis.describe.
exact_rate_bounds`; the judge's side: `tests/analysis/test_exact_rate_bounds.py`)."""

from __future__ import annotations

import logging
import re

import pytest

from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.foresight import registration_warnings
from tests.config.test_validate_config import MINIMAL
from tests.e2e.conftest import AgentFactory, FlipTarget, environment

NOW = 1_800_000_000.0
SAID = (
    "rule errors: error_rate max 0 can only fail: no number of probes shows a rate of exactly"
    " 0, so with pass_on: evidence every window it does not fail ends inconclusive, however"
    " good the release; use a bound such as max 0.001, or pass_on: no_failure"
)


@pytest.mark.parametrize(
    ("analysis", "warned"),
    [
        ("", [SAID]),
        ("    analysis: {pass_on: no_failure}\n", []),
        ("    analysis: {policy: threshold}\n", []),
    ],
)
async def test_registration_says_it_on_evidence_only(
    store: SqliteStore, analysis: str, warned: list[str]
) -> None:
    """With no baseline yet (an empty lookback), which the sentence does not need."""
    text = MINIMAL.replace("      - name: probe-errors\n", "      - name: errors\n").replace(
        "        max: 0.05\n", "        max: 0\n"
    )
    text = text.replace("    rules:\n", f"{analysis}    rules:\n")
    env = load_settings_text(text).environments["production"]
    said = await registration_warnings(store, env, "production", NOW, NOW + 600, now=NOW)
    assert said == warned


async def test_the_agent_answers_and_logs_it_once(
    start_agent: AgentFactory, flip_target: FlipTarget, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rules = ("{name: errors, source: checks, metric: error_rate, max: 0}",)
    agent = await start_agent(
        environment("production", flip_target.url, analysis="{policy: sequential}", rules=rules)
    )
    deploy = await agent.register("production", "v1")
    assert deploy.get("warnings") == [SAID], deploy
    final = await agent.settled(deploy["id"], within=15)
    assert final["state"] == "inconclusive", final
    logged = [r for r in caplog.records if r.getMessage() == SAID]
    assert [getattr(r, "deploy_id", None) for r in logged] == [deploy["id"]], caplog.text


async def test_the_first_failed_probe_fails_the_window_at_its_round(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """The daemon's path, its stored state holding the infinite evidence: a 30 s window
    whose first round has a 5xx (two of every five probes) fails at that round."""
    rules = ("{name: errors, source: checks, metric: error_rate, max: 0}",)
    agent = await start_agent(
        environment(
            "production",
            flip_target.url,
            window="30s",
            analysis="{policy: sequential}",
            rules=rules,
        )
    )
    flip_target.bad = True
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"], within=15)
    assert final["state"] == "failed" and final["rounds"] == 1, final
    # two of every five of the target's requests fail, background probes' included: the
    # round's five see two or three (0.4, 0.6), whichever were counted first
    reason = final["verdict"]["reason"]
    assert re.match(r"errors: error_rate [1-9]\d*(\.\d+)?% > max 0% after \d+ probes", reason), (
        reason
    )
