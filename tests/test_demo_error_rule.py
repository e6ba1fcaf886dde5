"""`postflight demo`'s bad version (40% of answers 500s, and 300 ms slower) is rolled back on
its latency at round 3, its errors rule still inconclusive (`probe-errors=inconclusive
(48%)`): the judge weighs each round as one piece of evidence, and at 40 probes a round 45%
errors against the old `max: 0.2` gain at most some x2.3 a round, so the errors rule alone
failed only at rounds 8-12 of the window's 12 (inconclusive in some windows). On a busy
machine the latency rule is the one an overloaded agent cannot judge (its stalled probes are
dropped, `agent.windows.overload`): the bad deploy then rested on errors alone, and could end
inconclusive. The errors rule must fail the bad version alone within half the window."""

from __future__ import annotations

import random
from pathlib import Path

from agent.analysis import Observation
from agent.analysis.judge import judge
from agent.demo import demo_config
from agent.settings_file import load_settings_text
from agent.windows.foresight import policy_of

BAD_ERROR_RATE = 0.4
"""What `agent.demo.DemoService`'s bad version answers with 500s."""


def test_the_demos_errors_rule_alone_fails_the_bad_version_within_half_its_window(
    tmp_path: Path,
) -> None:
    settings = load_settings_text(
        demo_config(dict.fromkeys(("service", "receiver", "sink"), 9), tmp_path / "demo.db"),
        source="demo config",
        env={},
    )
    env = settings.environments["demo"]
    rules = [r.to_rule() for r in env.rules]
    probes = env.probes_per_round
    horizon = round(env.window / env.interval)
    failed_at = []
    for seed in range(20):
        rng, rounds = random.Random(seed), []
        for number in range(1, horizon + 1):
            bad = sum(rng.random() < BAD_ERROR_RATE for _ in range(probes))
            # the latency rule held (an overloaded agent's): no latency this round
            rounds.append(
                {
                    "probe-errors": Observation(bad / probes, count=bad, total=probes),
                    "health-latency": Observation(None),
                }
            )
            verdict = judge(
                rules, {}, rounds, policy_of(env), final=number == horizon, horizon=horizon
            )
            if verdict.rules[0].outcome == "fail":
                break
        failed_at.append(number if verdict.rules[0].outcome == "fail" else None)
    assert all(n is not None and n <= horizon // 2 for n in failed_at), failed_at
