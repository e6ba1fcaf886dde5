"""The sequential judge live, as a new user runs it: the default policy (sequential, pass on
evidence), a baseline from background probes before the deploy, sub-second rounds.

* errors x5 against an `error_rate max` rule are rolled back;
* latency x2 against a `latency_p95 max_increase 50%` rule is rolled back;
* an A/A deploy passes, on evidence (every rule shows its bound holds);
* 20 A/A windows whose errors come in bursts within rounds end with no rollback.

Truth from outside: rollbacks are counted at the receiver.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.api.models import Deploy
from agent.cli.exits import EXIT_INCONCLUSIVE
from agent.cli.render import Style, details, summary
from tests.e2e.conftest import SECRET, AgentFactory, LocalTarget, environment, held_as_overloaded
from tests.e2e.providers_support import alerting_yaml
from tests.fakes.bursty import BurstyProcess
from tests.heavy import HEAVY
from tests.receivers import JsonSink, RollbackReceiver, alert_titled, titled

pytestmark = HEAVY


class NoisyTarget(LocalTarget):
    """A service with a share of failing answers and lognormal latency (bursty errors:
    `tests.fakes.bursty`)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.error_rate = 0.0
        self.latency_s = 0.0
        self.rng = random.Random(seed)

    def _fails(self) -> bool:
        return self.rng.random() < self.error_rate

    async def health(self, request: web.Request) -> web.Response:
        if self.latency_s:
            await asyncio.sleep(self.latency_s * math.exp(0.3 * self.rng.gauss(0.0, 1.0)))
        if self._fails():
            return web.json_response({"status": "error"}, status=503)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


SEED = int(os.environ.get("POSTFLIGHT_TARGET_SEED", "0"))
"""The targets' first seed (0 in CI); set it to repeat these tests on other draws."""


@pytest.fixture
async def targets() -> AsyncIterator[list[NoisyTarget]]:
    made = [NoisyTarget(SEED + seed) for seed in range(5)]
    for target in made:
        await target.start()
    yield made
    for target in made:
        await target.stop()


def evidence_environment(
    name: str,
    url: str,
    receiver: str,
    *,
    window: str,
    rules: Sequence[str],
    probes: int = 20,
    interval: str = "200ms",
    background_interval: str = "200ms",
) -> str:
    """Defaults except what keeps a test short: sub-second rounds, seconds-long windows, a
    background run every 200 ms (each `probes_per_round` probes spread over a round's 200 ms,
    the rate rounds probe at, so both measure the same latency)."""
    return environment(
        name,
        url,
        window=window,
        interval=interval,
        background_interval=background_interval,
        probes=probes,
        timeout="2s",
        analysis=None,
        rules=rules,
        extra=f"lookback: 1m\nrollback: {{url: {receiver}, secret: {SECRET}, backoff: 100ms}}",
    )


ERRORS_MAX = "{name: errors, source: checks, metric: error_rate, max: 0.05}"
LATENCY_RELATIVE = (
    "{name: p95, source: checks, check: api-health, metric: latency_p95, max_increase: 50%}"
)
LATENCY_RELATIVE_WIDE = (
    "{name: p95, source: checks, check: api-health, metric: latency_p95, max_increase: 200%}"
)
ERRORS_RELATIVE = "{name: errors, source: checks, metric: error_rate, max_increase: 100%}"


async def test_errors_x5_are_rolled_back(
    start_agent: AgentFactory, targets: list[NoisyTarget], rollback_receiver: Any
) -> None:
    target = targets[0]
    target.error_rate = 0.02
    # 30 ms, lognormal: a busy test machine's few ms of delay in reading a 0 ms answer
    # read as a p95 +400% (5 ms against 1 ms) and rolled back for latency, not errors
    target.latency_s = 0.03
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    rules = (ERRORS_MAX, LATENCY_RELATIVE)
    agent = await start_agent(
        evidence_environment("production", target.url, receiver.url, window="12s", rules=rules)
    )
    await asyncio.sleep(6.0)  # the background baseline before the deploy
    target.error_rate = 0.10
    deploy = await agent.register("production", "v-errors")
    final = await agent.settled(deploy["id"], within=30)
    assert final["state"] == "rolled_back", final["verdict"]
    failing = [r for r in final["verdict"]["rules"] if r["outcome"] == "fail"]
    assert [r["name"] for r in failing] == ["errors"]
    assert len(receiver.attempts) == 1


@pytest.mark.timeout(120)
async def test_a_hotfix_as_bad_as_the_release_it_replaces_is_rolled_back_too(
    start_agent: AgentFactory, targets: list[NoisyTarget], rollback_receiver: Any
) -> None:
    """v2 brings 20% errors (2% before) and is rolled back; the environment goes on running
    it a while (a rollback takes time to land), and background probing resumes meanwhile.
    Then a hotfix, v3, as bad. Old code pooled v2's runs into v3's baseline, so v3 looked
    no worse than "normal" and was not rolled back (1 rollback at the receiver); its
    baseline is now v1's runs alone, and v3 is rolled back (2, each naming its version)."""
    target = targets[0]
    target.error_rate = 0.02
    target.latency_s = 0.03
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        evidence_environment(
            "production", target.url, receiver.url, window="8s", rules=(ERRORS_RELATIVE,)
        )
    )
    await asyncio.sleep(6.0)  # v1's background baseline
    target.error_rate = 0.20
    v2 = await agent.register("production", "v2", previous_version="v1")
    assert (await agent.settled(v2["id"], within=30))["state"] == "rolled_back"
    await asyncio.sleep(6.0)  # v2 still live: background runs probe it
    v3 = await agent.register("production", "v3", previous_version="v1")
    assert any("they probed v2" in w for w in v3.get("warnings") or []), v3
    final = await agent.settled(v3["id"], within=30)
    assert final["state"] == "rolled_back", final["verdict"]
    bodies = [json.loads(a.body)["deploy"]["version"] for a in receiver.attempts]
    assert bodies == ["v2", "v3"]


@pytest.mark.timeout(240)
async def test_latency_x2_on_a_max_increase_rule_is_rolled_back(
    start_agent: AgentFactory,
    targets: list[NoisyTarget],
    rollback_receiver: Any,
    tmp_path: Path,
) -> None:
    """On a loaded machine (load average 9-16) a 20 s window ran out before the evidence
    came (observed p95 368 ms against 176 ms, likelihood ratio 103 of 533 needed): the
    agent's own delays blur each round's latencies. The window now ends when the rule
    fails (6-11 rounds at load 16, as when quiet) or after 60 rounds; the baseline is
    10 s of background runs (some 25 runs of 40 probes), since the rank tests place each
    sample among the baseline's and the window's earlier ones, and a small baseline is
    soon outnumbered (with 1 s background runs, 60 rounds at load 13-16 did not suffice,
    4 of 4).

    At load 12 the agent's loop was stalled past a tenth of most latencies: with 611
    samples of 2281 probes kept (the baseline's as few) the rule is not judged, by design
    (`agent.windows.overload`), and the window ended inconclusive saying so after 57
    rounds; with 958 of 2307 and a baseline of 94 samples, it ended inconclusive on the
    evidence (p = 0.00054 of 0.0005 needed). Nothing was rolled back. A run that ends
    inconclusive with samples the agent dropped as its own is the machine's: one more is
    made, by an agent on a store of its own (none of the first's runs in its baseline),
    which must roll back. At a load that lasts, the second may end so too (2 of 5 runs at -n 4
    beside 4 CPU burners, load 12): most rounds are then stalled rounds, their latencies
    dropped whole (`STALLED_ROUND_SHARE`), the background runs' as the window's (a
    baseline of 50-144 samples of some 1000 probes; background runs every 500 ms instead
    of 200 ms kept no more)."""
    target = targets[0]
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    final, dropped = await latency_doubles(start_agent, target, receiver)
    if final["state"] == "inconclusive" and dropped:
        assert receiver.attempts == [], final["verdict"]
        store = f"url: sqlite:///{tmp_path / 'again.db'}"
        final, _ = await latency_doubles(start_agent, target, receiver, store=store)
    assert final["state"] == "rolled_back", json.dumps(final["verdict"]["rules"])
    rule = next(r for r in final["verdict"]["rules"] if r["name"] == "p95")
    assert rule["outcome"] == "fail"
    assert rule["baseline"] is not None and rule["observed"] > 1.5 * rule["baseline"]
    assert len(receiver.attempts) == 1


async def latency_doubles(
    start_agent: AgentFactory,
    target: NoisyTarget,
    receiver: RollbackReceiver,
    store: str | None = None,
) -> tuple[dict[str, Any], float]:
    """A new agent learns `target` at 100 ms, then watches it answer in 200 ms: the final
    deploy (the agent stopped after), and how many of the window's samples or latencies
    it dropped as its own stall's (`checks.lag`)."""
    target.latency_s = 0.1  # large beside a busy event loop's own delays
    rules = (ERRORS_MAX, LATENCY_RELATIVE)
    # 1 s rounds: a probe is a timeout once the round ends, so a 0.2 s answer needs the
    # room of a 1 s round (half a round at least), not the 0.2 s rounds of the other tests
    agent = await start_agent(
        evidence_environment(
            "production",
            target.url,
            receiver.url,
            window="60s",
            rules=rules,
            probes=40,
            interval="1s",
        ),
        store=store,
    )
    try:
        # background runs of 40 probes every 200 ms or so: about a thousand samples
        await asyncio.sleep(10.0)
        target.latency_s = 0.2
        deploy = await agent.register("production", "v-slow")
        final: dict[str, Any] = await agent.settled(deploy["id"], within=80)
    finally:
        await agent.stop()
    dropped = sum(
        agent.metric("postflight_samples_dropped_total", environment="production", result=r)
        for r in ("agent_lag", "agent_lag_latency")
    )
    return final, dropped


@pytest.mark.timeout(90)
async def test_an_aa_deploy_passes_on_evidence(
    start_agent: AgentFactory,
    targets: list[NoisyTarget],
    rollback_receiver: Any,
    json_sink: JsonSink,
    tmp_path: Path,
) -> None:
    """1 s rounds: a probe has half a round (500 ms) to answer before it counts as a failed
    one, far above what this 50 ms target takes on a loaded machine (150-190 ms at load
    average 5-8, which broke 200 ms rounds: 100 ms to answer). 40 rounds of 40 probes are
    the evidence the error bound needs to pass (its confidence sequence's upper end then
    lies near 3.5% against max 5%, at this target's 1%). The latency bound is relative but
    wide (+200%): on a loaded machine the agent's own lag moves a window's p95 against its
    background baseline's by up to 2x either way (173 ms vs 86 ms, and 88 ms vs 154 ms, at
    load average 8-9), which a +50% bound reads as too little evidence of a pass.

    A window the overload guard held (inconclusive "agent overloaded": 1360 and 1577 of
    1600 probes dropped at load ~20, 2 of 2 full e2e runs beside CPU hogs) is the
    machine's, nothing rolled back: one more is made, by a new agent on its own store."""
    target = targets[0]
    target.error_rate = 0.01
    target.latency_s = 0.05
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    rules = (ERRORS_MAX, LATENCY_RELATIVE_WIDE)
    env = evidence_environment(
        "production",
        target.url,
        receiver.url,
        window="40s",
        rules=rules,
        probes=40,
        interval="1s",
        background_interval="1s",
    )
    for store in (None, f"url: sqlite:///{tmp_path / 'again.db'}"):
        agent = await start_agent(env, alerting_yaml(json_sink.url()), store=store)
        await agent.stored_runs("production", 6)  # six background runs of 40 probes
        deploy = await agent.register("production", "v-same")
        final = await agent.settled(deploy["id"], within=60)
        if not held_as_overloaded(final):
            break
        await agent.stop()  # the machine's run: one more, on a store of its own
        assert receiver.attempts == [], final["verdict"]
    assert final["state"] == "passed", final["verdict"]
    for rule in final["verdict"]["rules"]:
        assert rule["outcome"] == "pass"
        assert "within bounds on evidence" in rule["detail"]
        assert all(bound["holds"] for bound in rule["evidence"]["evidence"])
    assert receiver.attempts == []
    # on-call reads the same: every rule shown within its bound (counted at the sink)
    passed = await alert_titled(json_sink, "deploy passed")
    assert passed.message.startswith("**Deploy passed.** Every rule was shown within its bound")
    assert len(titled(json_sink, "deploy passed")) == 1


@pytest.fixture
async def bursty_targets() -> AsyncIterator[list[BurstyProcess]]:
    """Five services with 3% errors in bursts: a tenth of the blocks of 20 requests (a
    round's probes) fail 30% of theirs. Each in a process of its own, bursts by request
    count (`tests.fakes.bursty`: on the test's loop, a stall of the agent's silenced them,
    and an A/A window's rounds read 2-14% timeouts against its baseline's 1-2%)."""
    made = [BurstyProcess(SEED + seed, error_rate=0.03, burst=0.1, block=20) for seed in range(5)]
    try:
        await asyncio.gather(*(target.start() for target in made))
        yield made
    finally:
        await asyncio.gather(*(target.stop() for target in made))


async def test_twenty_aa_windows_with_bursty_errors_end_without_a_rollback(
    start_agent: AgentFactory, bursty_targets: list[BurstyProcess], rollback_receiver: Any
) -> None:
    """Five environments side by side, four windows each. Errors come in bursts: a per-request
    test would read a burst as strong evidence; one factor per round does not."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    rules = (ERRORS_RELATIVE, "{name: cap, source: checks, metric: error_rate, max: 0.2}")
    envs = "".join(
        evidence_environment(f"env{i}", t.url, receiver.url, window="2s", rules=rules)
        for i, t in enumerate(bursty_targets)
    )
    agent = await start_agent(envs)
    # 3 s of bursty background baseline (15 runs): one that missed the bursts has too few
    # errors to measure their burstiness, so its runs, not its requests, are the units
    # (with the requests as units this rolled back about one run in twelve)
    await asyncio.sleep(3.0)

    async def four_windows(env: str) -> list[dict[str, Any]]:
        ended = []
        for k in range(4):
            deploy = await agent.register(env, f"v{k}")
            ended.append(await agent.settled(deploy["id"], within=20))
            await asyncio.sleep(0.3)  # background probing resumes between windows
        return ended

    finals = [
        d
        for group in await asyncio.gather(*(four_windows(f"env{i}") for i in range(5)))
        for d in group
    ]
    assert len(finals) == 20
    bad = [d for d in finals if d["state"] in ("rolled_back", "failed")]
    assert bad == [], [(d["environment"], d["version"], d.get("verdict")) for d in bad]
    assert receiver.attempts == []
    # the bursts were real: some blocks of requests failed together
    assert sum([await t.bad_bursts() for t in bursty_targets]) > 0


async def test_a_window_too_short_for_evidence_ends_inconclusive_naming_the_rule(
    start_agent: AgentFactory,
    targets: list[NoisyTarget],
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    """Nothing failed, but a few rounds cannot show a rule holds: `inconclusive`, and the
    verdict, the alert and `register --wait`'s summary say which rule lacked evidence.

    A second, not less: a round begun after the window's end probes nothing (by design,
    `lifecycle._gather_round`), and a loaded machine (load 10-15) began a 300 ms window's
    first round after its end, "errors: no data (no samples)" (6 of 8 runs beside CPU
    hogs). Three rounds of 20 clean probes lack evidence whatever the mixture: with none
    failed, no sequence at 0.99 shows a rate under 5% before 90 probes (the exact one-sided
    bound, 1 - 0.01^(1/N)); five rounds, 100 probes, pass since a short window's pass side
    puts weight on no event (`stats.no_event_weight`)."""
    target = targets[0]
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    env = evidence_environment(
        "production", target.url, receiver.url, window="600ms", rules=[ERRORS_MAX]
    )
    alerting = f"""
    alerting:
      channels:
        - url: {json_sink.url()}
    """
    agent = await start_agent(env, alerting)
    deploy = await agent.register("production", "v-short")
    final = await agent.settled(deploy["id"], within=15)
    assert final["state"] == "inconclusive", final["verdict"]
    reason = final["verdict"]["reason"]
    assert "lacked evidence of a pass" in reason and "errors: error_rate upper bound" in reason
    (rule,) = final["verdict"]["rules"]
    assert rule["outcome"] == "inconclusive" and "not enough evidence" in rule["detail"]
    shown = details(Deploy.model_validate(final), Style())
    assert "errors: error_rate upper bound" in shown
    # the headline above those details does not say there was no data: there was
    headline = summary(Deploy.model_validate(final), Style(), EXIT_INCONCLUSIVE)
    assert "no rule had data" not in headline and "the rules below say why" in headline
    alerts = await json_sink.wait_for(1, within=10)
    assert any("errors: error_rate upper bound" in a.message for a in alerts), alerts
    assert receiver.attempts == []


async def test_a_bound_below_what_the_rule_can_detect_is_logged_once(
    start_agent: AgentFactory,
    targets: list[NoisyTarget],
    rollback_receiver: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = targets[0]
    target.latency_s = 0.01
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    tight = "{name: p95, source: checks, check: api-health, metric: latency_p95, max_increase: 1%}"
    agent = await start_agent(
        evidence_environment("production", target.url, receiver.url, window="1s", rules=[tight])
    )
    # a background baseline (2 s of runs on a quiet machine), waited for: a fixed 2 s held
    # none on a loaded one, and the registration said "no baseline" instead
    await agent.stored_runs("production", 10)
    caplog.set_level("WARNING", logger="postflight.window")
    deploy = await agent.register("production", "v-tight")
    # said at registration too, in the answer, from the background baseline; logged
    # once, by the window (tests/e2e/test_warnings_logged_once.py)
    (said,) = Deploy.model_validate(deploy).warnings or []
    assert said.startswith("rule p95: its max_increase bound is tighter than"), said
    final = await agent.settled(deploy["id"], within=15)
    (rule,) = final["verdict"]["rules"]
    assert (rule["evidence"].get("detectable") or {}).get("bound_below_detectable"), str(rule)
    # the window's "below what it can detect" (registration logs its "cannot pass" apart)
    warned = [
        r
        for r in caplog.records
        if r.getMessage().startswith("rule p95:")
        and "cannot pass on evidence" not in r.getMessage()
    ]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]
    assert "max_increase 1%" in warned[0].getMessage()
    # worded as the evidence says: a change it can detect, or none by the window's end (a
    # loaded machine's window kept too few probes: the 1 s window is no timing bound here)
    value = rule["evidence"]["detectable"].get("value")
    if isinstance(value, int | float) and math.isfinite(value):
        assert "is below what it can detect: it can detect " in warned[0].getMessage()
    else:
        assert ": it can detect no regression of any size" in warned[0].getMessage()
