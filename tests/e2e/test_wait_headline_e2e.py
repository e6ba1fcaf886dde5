"""`register --wait`'s headline says what a pass rested on: under the threshold policy a
pass takes no evidence (no rule past its bound `failure_limit` rounds in a row), where it
read "passed: the verdict passed (its reason says on what evidence)", as a sequential
pass on evidence does; nor is a sequential pass under `pass_on: no_failure` whose rules
lacked that evidence."""

from __future__ import annotations

import re

import pytest

from agent.appkeys import STORE
from tests.cli_process import awaited_cli
from tests.e2e.conftest import TOKEN, AgentFactory, FlipTarget, RunningAgent, environment

pytestmark = pytest.mark.e2e


async def register_wait(agent: RunningAgent) -> tuple[int, str]:
    """`postflight register --wait` of v2 on production: its exit code and output. A
    window of which the agent kept no sample is the machine's, not the headline's case:
    at load 14 a 1.5 s window's one round began after its end, which probes nothing by
    design ('no rule had data to judge over 1 round', 1 run in 6), its agent's loop
    stalled past it. One more is registered then, 3 at most (the last one's output is
    the answer, however it ended)."""
    common = ("--url", agent.url, "--token", TOKEN, "--env", "production", "--version", "v2")
    for _ in range(3):
        code, said = await awaited_cli("register", *common, "--wait")
        found = re.search(r"dep_[0-9A-Z]{26}", said)
        if found is None or await kept_samples(agent, found[0]):
            break
    return code, said


async def kept_samples(agent: RunningAgent, deploy_id: str) -> int:
    """How many probes of `deploy_id`'s window counted (run, and not dropped as the
    agent's own stall), by its stored rounds."""
    rounds = await agent.app[STORE].rounds(deploy_id)
    checks = [c for r in rounds for c in r.summary.get("checks", {}).values()]
    return sum(c["runs"] - c.get("dropped", 0) for c in checks)


@pytest.mark.timeout(60)
async def test_a_threshold_pass_is_not_said_to_rest_on_evidence(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    agent = await start_agent(environment("production", flip_target.url))  # threshold
    code, said = await register_wait(agent)
    assert code == 0, said
    assert "on what evidence" not in said, said
    assert "passed: no rule failed (threshold policy" in said, said


@pytest.mark.timeout(60)
async def test_a_no_failure_pass_is_said_to_rest_on_no_failure_not_evidence(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """Sequential with `pass_on: no_failure`: 25 clean probes cannot show an error rate
    within 0.05 (the rule ends "not enough evidence"), and the window passes as it did not
    fail, where the headline said "its reason says on what evidence"."""
    analysis = "{policy: sequential, pass_on: no_failure}"
    agent = await start_agent(environment("production", flip_target.url, analysis=analysis))
    code, said = await register_wait(agent)
    assert code == 0, said
    assert "on what evidence" not in said, said
    assert (
        "passed: no rule failed, not on evidence (pass_on: no_failure passes what did not"
        " fail; 1 of 1 rule lacked evidence of being within bounds: DETAIL says how far"
        " each got)" in said
    ), said
