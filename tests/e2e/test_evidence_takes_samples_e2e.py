"""The README's "Evidence takes samples": at the default confidence a `latency_p99` rule
with a `max` passes only after about 650 samples, even when every one is far inside the
bound, so "a 1-minute window of 5 probes every 2 s (150) ends `inconclusive` (exit 3 from
`register --wait`)". Run as a pipeline runs it: the window's 30 rounds of 5 probes (on a
faster clock: 6 s of 200 ms rounds), `postflight register --wait` in a process of its own."""

from __future__ import annotations

import re

import numpy as np

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from tests.cli_process import awaited_cli
from tests.e2e.conftest import TOKEN, AgentFactory, FlipTarget, environment

P99 = "{name: health-p99, source: checks, metric: latency_p99, max: 2s}"


async def test_a_one_minute_window_of_p99_latencies_ends_inconclusive_exit_3(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    env = environment(
        "production",
        flip_target.url,
        window="6s",
        interval="200ms",
        background_interval="200ms",
        probes=5,
        analysis=None,  # the defaults: sequential, pass_on evidence, confidence 0.99
        rules=[P99],
    )
    agent = await start_agent(env)
    await agent.stored_runs("production", 3)  # the background baseline registration reads
    common = ("--url", agent.url, "--token", TOKEN, "--env", "production", "--version", "v2")
    code, said = await awaited_cli("register", *common, "--wait")
    assert code == 3, said
    # said before it opens (150 samples cannot even see a p99 past 2 s: "a rule also
    # warned that it cannot see its bound is told both in its one sentence")
    assert said.count("warning: rule health-p99: ") == 1, said
    [deploy_id] = set(re.findall(r"dep_\w+", said))
    final = await agent.get(deploy_id)
    assert final["state"] == "inconclusive", final
    reason = final["verdict"]["reason"]
    assert "health-p99" in reason and "not enough evidence" in reason, reason
    assert flip_target.requests >= 150  # every round probed: no pass was possible


def test_a_p99_rule_passes_after_about_650_samples_far_inside_its_bound() -> None:
    """The figure itself, folded as the daemon folds rounds: 2 ms answers against a 2 s
    `max`, 50 a round over the 30 rounds of a window; and 130 for a p95 rule (1,300 and 250
    on the normal-mixture sequence before the binomial one, `stats.binomial_cs_end`)."""
    for metric, q, figure in (("latency_p99", 0.99, 650), ("latency_p95", 0.95, 130)):
        rule = Rule("r", "checks", metric, max=2.0)
        judge = Judge([rule], {}, Policy(), horizon=30)
        for seed in range(3):
            rng = np.random.default_rng(seed)
            state, passed_at = judge.start(), None
            for index in range(30):
                values = rng.lognormal(np.log(0.002), 0.3, 50)
                obs = Observation(
                    float(np.quantile(values, q)), values=tuple(map(float, values)), quantile=q
                )
                state, verdict = judge.step(state, {"r": obs}, final=index == 29)
                if verdict.rules[0].outcome == "pass":
                    passed_at = (index + 1) * 50
                    break
            assert passed_at is not None and 0.8 * figure <= passed_at <= 1.2 * figure, (
                metric,
                passed_at,
            )
