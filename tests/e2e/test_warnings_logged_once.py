"""Each of a window's warnings is logged once: not by the registration and again by the
window, nor again by each watch that resumes it after a restart.

A bound below what its rule can detect was logged three times for one window with one
restart (the API at registration, the first watch, the resumed watch), and runs left out
of the baseline twice (registration, window open): on-call read N warnings as N problems.
The registration's `warnings` in the API answer are unchanged.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment, slow_rounds

BLIND = "{name: errors, source: checks, metric: error_rate, max_increase: 10%}"


def said(caplog: pytest.LogCaptureFixture, words: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and words in r.getMessage()]


async def until_said(caplog: pytest.LogCaptureFixture, words: str, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not said(caplog, words):
        assert loop.time() < deadline, f"never logged {words!r}: {caplog.text}"
        await asyncio.sleep(0.05)


async def test_a_bound_below_detectable_is_logged_once_across_registration_and_a_restart(
    start_agent: AgentFactory, flip_target: FlipTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent stops while the window is live and starts again on its SQLite store."""
    await blind_window_handed_over(start_agent, flip_target, caplog, owners=(None, None))


async def test_a_replica_taking_the_window_over_does_not_log_it_again(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    caplog: pytest.LogCaptureFixture,
    pg_url: str,
) -> None:
    """Another replica on the shared PostgreSQL takes the window over once the first
    one's lease lapses."""
    store = f"url: {pg_url}\n  lease: 1s"
    await blind_window_handed_over(
        start_agent, flip_target, caplog, owners=("replica-a", "replica-b"), store=store
    )


async def blind_window_handed_over(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    caplog: pytest.LogCaptureFixture,
    *,
    owners: tuple[str | None, str | None],
    store: str | None = None,
) -> None:
    """A window whose rule cannot detect its bound, registered on one agent and finished
    by a second one started after the first stopped: the rule's warning is logged once."""
    # sequential (analysis None), 2 probes a round: a +10% error bound is far below what
    # 10 rounds can show
    env = environment(
        "production",
        flip_target.url,
        window="3s",
        interval="300ms",
        probes=2,
        analysis=None,
        rules=[BLIND],
    )
    caplog.set_level(logging.WARNING)
    first = await start_agent(env, owner=owners[0], store=store)
    await asyncio.sleep(0.6)  # background runs: the registration's foresight sizes from them
    deploy = await first.register("production", "v2")
    warnings = deploy.get("warnings") or []
    assert any(w.startswith("rule errors: its max_increase bound is tighter") for w in warnings)
    await until_said(caplog, "rule errors: max_increase 10%: it can detect no", within=5)
    await first.stop()  # the window is still live: the second agent resumes it
    second = await start_agent(env, owner=owners[1], store=store)
    final = await second.settled(deploy["id"], within=20)
    (rule,) = final["verdict"]["rules"]
    assert rule["evidence"]["detectable"]["bound_below_detectable"], rule
    evaluated = sum(
        second.metric(
            "postflight_rule_evaluations_total",
            environment="production",
            rule="errors",
            outcome=outcome,
        )
        for outcome in ("pass", "breaching", "fail", "inconclusive")
    )
    assert evaluated >= 1, "the second agent did not watch the window"
    # what it can detect (registration logs, once, that it cannot pass: its own words)
    logged = said(caplog, "rule errors: max_increase")
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert len(said(caplog, "rule errors: cannot pass on evidence")) == 1
    # its baseline's rate too uncertain: no regression of any size
    assert "it can detect no regression of any size" in logged[0].getMessage()
    assert getattr(logged[0], "deploy_id", None) == deploy["id"]


async def test_runs_left_out_of_the_baseline_are_logged_once(
    start_agent: AgentFactory, flip_target: FlipTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """v2 fails (no rollback configured: it stays live, and background probing resumes on
    it); v3's baseline leaves those runs out: said in v3's answer, logged once."""
    env = environment("production", flip_target.url, window="2s")
    caplog.set_level(logging.WARNING)
    agent = await start_agent(env)
    flip_target.bad = True
    v2 = await agent.register("production", "v2")
    assert (await agent.settled(v2["id"], within=15))["state"] == "failed"
    await asyncio.sleep(1.0)  # background runs of v2, still live
    v3 = await agent.register("production", "v3")
    warnings = v3.get("warnings") or []
    assert any("left out of the baseline: they probed v2" in w for w in warnings), warnings
    await agent.settled(v3["id"], within=15)
    logged = said(caplog, "left out of the baseline")
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert getattr(logged[0], "deploy_id", None) == v3["id"]


async def test_a_round_overrun_is_logged_once_across_a_restart(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every round's checks take 600 ms more than its 300 ms slot (a slow machine): the
    first overrun is logged, and the watch that resumes the window after a restart counts
    its own overruns without logging the window's again."""
    slow_rounds(monkeypatch, 0.6)
    env = environment("production", flip_target.url, window="5s", interval="300ms", probes=1)
    caplog.set_level(logging.WARNING)
    first = await start_agent(env)
    deploy = await first.register("production", "v2")
    await until_said(caplog, "overran its", within=5)
    await first.stop()  # the window is still live: the second agent resumes it
    second = await start_agent(env)
    await second.settled(deploy["id"], within=20)
    assert second.metric("postflight_round_overruns_total", environment="production") >= 1
    logged = said(caplog, "overran its")
    assert len(logged) == 1, [r.getMessage() for r in logged]


async def test_a_rule_that_can_detect_nothing_is_logged_in_words_that_parse(
    start_agent: AgentFactory, flip_target: FlipTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """A latency rule with too few samples by the window's end (4 rounds of 2 probes)
    detects no regression of any size: the log said "max_increase 50% is below what it
    can detect no regression of any size (too little data by then) by the window's end",
    which reads as if the bound were below nothing (seen on a live daemon)."""
    rule = "{name: p95, source: checks, metric: latency_p95, max_increase: 50%}"
    env = environment(
        "production", flip_target.url, window="1200ms", probes=2, analysis=None, rules=[rule]
    )
    caplog.set_level(logging.WARNING)
    agent = await start_agent(env)
    await asyncio.sleep(0.6)  # background runs: the rule's baseline
    deploy = await agent.register("production", "v2")
    await until_said(caplog, "rule p95: max_increase", within=5)
    (logged,) = said(caplog, "rule p95: max_increase")
    assert logged.getMessage() == (
        "rule p95: max_increase 50%: it can detect no regression of any size four times in"
        " five (too little data by then: a large one may still be caught at times) by the"
        " window's end at this traffic"
    )
    assert getattr(logged, "deploy_id", None) == deploy["id"]
