"""Judging in a live daemon: background and canary baselines, and the evidence shown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import (
    SECRET,
    AgentFactory,
    FlipTarget,
    LocalTarget,
    environment,
    held_as_overloaded,
)
from tests.e2e.crash import free_port
from tests.heavy import HEAVY
from tests.receivers import JsonSink, RollbackReceiver

pytestmark = HEAVY


class SlowTarget(LocalTarget):
    """Answers in about `delay` seconds; the deploy makes it slow. 100 ms before, 300 ms
    after: a loaded machine adds its own delay to every measured latency (67 ms at load
    average 13), which made a 0 → 80 ms change read as 67 → 87 ms, inside +50%."""

    FAST, SLOW = 0.1, 0.3

    def __init__(self, delay: float = FAST) -> None:
        super().__init__()
        self.delay = delay

    async def health(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


@pytest.fixture
async def slow_targets() -> AsyncIterator[tuple[SlowTarget, SlowTarget]]:
    deploy, stable = SlowTarget(), SlowTarget()
    await deploy.start()
    await stable.start()
    yield deploy, stable
    await deploy.stop()
    await stable.stop()


BASELINE_RUNS = 10
"""Background runs stored before the deploy (1.5 s of them on a quiet machine): waited
for, where a fixed 1.5 s held however few a loaded machine had made by then."""

WINDOW_S = 20
"""The windows' length: a rollback usually ends them in a few rounds, and on a loaded
machine later; one that passes ends at the window's end, and fails the test then."""


def latency_env(
    base_url: str, receiver: str, *, extra: str = "", background_interval: str = "50ms"
) -> str:
    return environment(
        "production",
        base_url,
        window=f"{WINDOW_S}s",
        interval="1s",
        background_interval=background_interval,
        probes=10,
        timeout="2s",
        rules=[
            "{name: health-p95, source: checks, check: api-health, metric: latency_p95,"
            " max_increase: 50%}"
        ],
        extra=f"""
        {extra}
        lookback: 1m
        rollback: {{url: {receiver}, secret: {SECRET}, backoff: 100ms}}
        """,
    )


async def test_max_increase_on_probe_latency_uses_the_background_baseline(
    start_agent: AgentFactory,
    slow_targets: tuple[SlowTarget, SlowTarget],
    rollback_receiver: Any,
    tmp_path: Path,
) -> None:
    """A run the overload guard held (the judge failed the rule, the agent's loop was too
    stalled to say it was the target's: one full e2e run at load 20 dropped 10 of 10
    probes a round) is the machine's: nothing was rolled back, and one more run is made
    by a new agent on a store of its own, which must roll back."""
    deploy_target, _ = slow_targets
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    final = await slows_after_deploy(start_agent, deploy_target, receiver.url)
    if held_as_overloaded(final):
        assert receiver.attempts == [], final["verdict"]
        store = f"url: sqlite:///{tmp_path / 'again.db'}"
        final = await slows_after_deploy(start_agent, deploy_target, receiver.url, store)
    assert final["state"] == "rolled_back", final["verdict"]
    rule = final["verdict"]["rules"][0]
    assert rule["outcome"] == "fail"
    assert rule["baseline"] is not None, "no pre-deploy baseline from background probing"
    assert rule["baseline"] < SlowTarget.SLOW <= rule["observed"]
    assert rule["threshold"] == "max_increase 50%"
    assert len(receiver.attempts) == 1


async def slows_after_deploy(
    start_agent: AgentFactory, target: SlowTarget, receiver: str, store: str | None = None
) -> dict[str, Any]:
    """A new agent learns `target` at its usual latency; the deploy makes it 200 ms
    slower: the final deploy (the agent stopped after)."""
    target.delay = SlowTarget.FAST
    agent = await start_agent(latency_env(target.url, receiver), store=store)
    try:
        await agent.stored_runs("production", BASELINE_RUNS)  # the pre-deploy latency
        target.delay = SlowTarget.SLOW
        deploy = await agent.register("production", "v-slow")
        return await agent.settled(deploy["id"], within=WINDOW_S + 10)
    finally:
        await agent.stop()


async def test_a_restart_on_a_new_base_url_leaves_the_old_targets_runs_out_of_the_baseline(
    start_agent: AgentFactory, flip_target: FlipTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit's run: background runs against a dead port, a restart with base_url on the
    live target, a deploy. The baseline is the new target's runs (no error) or none yet,
    never the dead port's (it read 0.5 and 0.33: a relative rule blind to any regression)."""
    errors = "{name: errors, source: checks, metric: error_rate, max_increase: 5%}"
    dead = f"http://127.0.0.1:{free_port()}"
    first = await start_agent(environment("production", dead, rules=[errors]))
    await asyncio.sleep(1.0)  # background runs against the dead port, every 200 ms
    await first.stop()
    with caplog.at_level(logging.INFO, logger="postflight"):
        second = await start_agent(environment("production", flip_target.url, rules=[errors]))
        deploy = await second.register("production", "v2")
        final = await second.settled(deploy["id"], within=15)
    rule = final["verdict"]["rules"][0]
    assert rule["baseline"] in (None, 0.0), rule
    assert "background baseline starts afresh" in caplog.text


async def test_a_canary_is_judged_against_its_stable_side_probed_side_by_side(
    start_agent: AgentFactory,
    slow_targets: tuple[SlowTarget, SlowTarget],
    rollback_receiver: Any,
    tmp_path: Path,
) -> None:
    """Held by the overload guard (a loaded machine's run), one more run is made, as in
    `test_max_increase_on_probe_latency_uses_the_background_baseline`."""
    canary, stable = slow_targets
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    env = latency_env(
        canary.url, receiver.url, extra=f"baseline_url: {stable.url}", background_interval="1h"
    )
    canary.delay = SlowTarget.SLOW
    for store in (None, f"url: sqlite:///{tmp_path / 'again.db'}"):
        agent = await start_agent(env, store=store)
        deploy = await agent.register("production", "v-canary")
        final = await agent.settled(deploy["id"], within=WINDOW_S + 10)
        await agent.stop()
        if not held_as_overloaded(final):
            break
        assert receiver.attempts == [], final["verdict"]
    assert final["state"] == "rolled_back", final["verdict"]
    rule = final["verdict"]["rules"][0]
    # no background probing happened: the baseline can only be the stable side
    assert rule["baseline"] is not None
    assert rule["baseline"] < SlowTarget.SLOW <= rule["observed"]


async def test_a_sequential_window_shows_its_evidence_live_in_the_api_and_in_the_alert(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(
            "production",
            flip_target.url,
            window=f"{WINDOW_S}s",
            interval="500ms",
            background_interval="100ms",
            probes=20,
            analysis="{policy: sequential, confidence: 0.99}",
            extra=f"rollback: {{url: {receiver.url}, secret: {SECRET}, backoff: 100ms}}",
        ),
        f"""
        alerting:
          channels:
            - url: {json_sink.url()}
        """,
    )
    deploy = await agent.register("production", "v-seq")
    live = await agent.wait_until(deploy["id"], lambda d: d["rounds"] >= 1, within=10)
    assert live["state"] == "watching"
    progress = live["progress"]
    assert progress["outcome"] == "pending"
    evidence = progress["rules"][0]["evidence"]
    assert evidence["policy"] == "sequential"
    assert "likelihood_ratio" in evidence and "p_value" in evidence

    flip_target.bad = True
    final = await agent.settled(deploy["id"], within=WINDOW_S + 10)
    assert final["state"] == "rolled_back", final["verdict"]
    rule = final["verdict"]["rules"][0]
    assert rule["outcome"] == "fail"
    assert rule["evidence"]["likelihood_ratio"] >= rule["evidence"]["likelihood_ratio_needed"]
    assert rule["evidence"]["p_value"] <= rule["evidence"]["alpha"]
    alerts = await json_sink.wait_for(2, within=10)
    requested = [a for a in alerts if "rollback requested" in a.title]
    assert requested, [a.title for a in alerts]
    assert "likelihood ratio" in requested[0].message


@pytest.mark.timeout(120)
async def test_a_target_that_stops_answering_mid_window_fails_its_latency_rule(
    start_agent: AgentFactory,
    slow_targets: tuple[SlowTarget, SlowTarget],
    rollback_receiver: Any,
    tmp_path: Path,
) -> None:
    """A timeout is a latency too (at least what it waited). Left out, a latency rule judged
    only the answers that got through: a target that hung after a few good rounds kept its
    last good figure, and the rule passed.

    A probe's timeout is the agent's own, and dropped, when its loop was stalled past a
    tenth of the wait (50 ms of 500 ms, `checks.lag`): a full run at load 9 dropped 120
    samples, most of the window's, and it ended inconclusive saying so ('agent
    overloaded'), by design, nothing rolled back. Such a run is the machine's: one more is
    made, by a new agent on a store of its own, which must roll back."""
    deploy_target, _ = slow_targets
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    final, dropped = await hangs_mid_window(start_agent, deploy_target, receiver.url)
    if final["state"] == "inconclusive" and dropped:
        assert receiver.attempts == [], final["verdict"]
        store = f"url: sqlite:///{tmp_path / 'again.db'}"
        final, _ = await hangs_mid_window(start_agent, deploy_target, receiver.url, store=store)
    assert final["state"] == "rolled_back", final["verdict"]
    rule = final["verdict"]["rules"][0]
    assert rule["outcome"] == "fail"
    assert rule["observed"] >= 0.4  # what the probes waited (half a 1 s round), not 100 ms
    assert len(receiver.attempts) == 1


async def hangs_mid_window(
    start_agent: AgentFactory, target: SlowTarget, receiver: str, store: str | None = None
) -> tuple[dict[str, Any], float]:
    """A new agent learns `target` at its usual latency, watches a deploy a few good rounds,
    then the target stops answering within the probes' wait: the final deploy (the agent
    stopped after), and the samples or latencies it dropped as its own stall's."""
    target.delay = SlowTarget.FAST
    agent = await start_agent(latency_env(target.url, receiver), store=store)
    try:
        await agent.stored_runs("production", BASELINE_RUNS)  # the pre-deploy latency
        deploy = await agent.register("production", "v-hangs")
        await agent.rounds(deploy["id"], 3)  # a few good rounds: the latency as before
        # then no answer within the probes' wait (half the 1 s round)
        target.delay = 2.0
        final: dict[str, Any] = await agent.settled(deploy["id"], within=25)
    finally:
        await agent.stop()
    dropped = sum(
        agent.metric("postflight_samples_dropped_total", environment="production", result=r)
        for r in ("agent_lag", "agent_lag_latency")
    )
    return final, dropped
