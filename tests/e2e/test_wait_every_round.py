"""`register --wait` shows every round of a window whose `interval` is under 2 s.

It polled every 2 s whatever the interval: with `interval: 500ms` and `failure_limit: 4`
the rule's breach short of the limit (`! breach probe-errors 100% (max 5%, 1 of 4
rounds)`, which the README says `--wait` shows) was over between two polls, and the
pipeline's log went from `watching` to `failed` with no round between.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.cli_process import awaited_cli
from tests.e2e.conftest import SECRET, TOKEN, AgentFactory, FlipTarget
from tests.e2e.test_deploy_windows import environment
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


async def test_register_wait_shows_a_breach_short_of_the_limit_under_a_short_interval(
    start_agent: AgentFactory, flip_target: FlipTarget, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(flip_target, receiver.url, window="30s", interval="500ms", failure_limit=4)
    )
    flip_target.bad = True
    code, said = await awaited_cli(
        *("register", "--env", "production", "--version", "v2", "--wait", "--timeout", "60s"),
        *("--url", agent.url, "--token", TOKEN),
    )
    assert code == 1, said  # failed, rolled back
    short = re.findall(r"round +(\d+) .*! breach probe-errors [\d.]+% \(max 5%, (\d) of 4", said)
    assert short, said  # was: no round line before the verdict
    assert all(int(n) < 4 for _, n in short), said
