"""`postflight status ID` of a window that failed with no rollback configured says so.

Its details ended at the rules table with no rollback line at all, alike for a rollback
never asked for and one not yet requested, where `register --wait`'s end line says "no
rollback was requested (none is configured)". Through the real CLI, in a process of its
own, against the real daemon.
"""

from __future__ import annotations

import re

import pytest

from tests.cli_process import awaited_cli
from tests.e2e.conftest import TOKEN, AgentFactory, FlipTarget, environment

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(90)
async def test_status_of_a_failure_with_no_rollback_configured_says_none_was_requested(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    flip_target.bad = True
    agent = await start_agent(environment("production", flip_target.url, window="1500ms"))
    connection = ["--url", agent.url, "--token", TOKEN]
    for _ in range(3):  # a window the loaded machine's own stall held is registered again
        code, said = await awaited_cli(
            "register", *connection, "--env", "production", "--version", "v2", "--wait"
        )
        if "agent overloaded" not in said:
            break
    assert code == 1, said
    (deploy_id,) = set(re.findall(r"\bdep_[0-9A-Z]{26}\b", said)) or {None}
    assert deploy_id is not None, said
    stored = await agent.get(deploy_id)
    assert stored["state"] == "failed" and stored["rollback"] is None, stored

    code, shown = await awaited_cli("status", deploy_id, *connection)
    assert code == 0, shown
    lines = [line.strip() for line in shown.splitlines()]
    rollback = [line for line in lines if line.startswith("rollback ")]
    assert rollback == ["rollback  no rollback configured: none was requested"], shown
    assert lines[-1] == rollback[0], shown  # the last word, as a rollback's line is
