"""`register --wait`'s headline says what a pass rested on: under the threshold policy a
pass takes no evidence (no rule past its bound `failure_limit` rounds in a row), where it
read "passed: the verdict passed (its reason says on what evidence)", as a sequential
pass on evidence does."""

from __future__ import annotations

import pytest

from tests.cli_process import awaited_cli
from tests.e2e.conftest import TOKEN, AgentFactory, FlipTarget, environment

pytestmark = pytest.mark.e2e


async def register_wait(url: str) -> tuple[int, str]:
    """`postflight register --wait` of v2 on production: its exit code and output."""
    common = ("--url", url, "--token", TOKEN, "--env", "production", "--version", "v2")
    return await awaited_cli("register", *common, "--wait")


@pytest.mark.timeout(60)
async def test_a_threshold_pass_is_not_said_to_rest_on_evidence(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    agent = await start_agent(environment("production", flip_target.url))  # threshold
    code, said = await register_wait(agent.url)
    assert code == 0, said
    assert "on what evidence" not in said, said
    assert "passed: no rule failed (threshold policy" in said, said
