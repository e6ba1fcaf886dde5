"""Every way `postflight register --wait` ends says its outcome and exit code the same way.

Only the cancelled and superseded lines named their code (`cancelled: no verdict (exit
3)`); a pipeline's log showed `failed: …`, `gave up waiting after …` or `postflight
register: …` and no word of the 1, 3 or 2 it ended with (contract §1: 0 passed, 1 failed
or rolled back, 3 inconclusive, 2 usage / connection / auth error; a wait given up is
3). A failed window's line said "no rollback was delivered" alike when none was configured
and when one was given up, and a rolled-back one's "accepted" read as done: each now says
where its rollback stands as the wait ends. Through the real CLI, in a process of its
own, against the real daemon.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.cli_process import awaited_cli
from tests.e2e.conftest import SECRET, TOKEN, AgentFactory, FlipTarget, environment
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

ON_EVIDENCE = "{policy: sequential, pass_on: evidence}"
"""25 clean probes cannot show an error rate within 0.05: not enough evidence to pass,
none of a failure, so inconclusive (tests/e2e/test_wait_headline_e2e.py)."""


@pytest.fixture
def refusing() -> Iterator[str]:
    """A URL on 127.0.0.1 that refuses connections: a port bound, never listened on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/rollback"


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("case", "code", "starts"),
    [
        ("passed", 0, "passed: "),
        ("failed", 1, "failed: the verdict failed; no rollback was requested (none is configured)"),
        (
            "given_up",
            1,
            "failed: the verdict failed; its rollback was given up after 1 attempt, not delivered",
        ),
        (
            "rolled_back",
            1,
            "rolled back: the rollback target accepted the request (that starts the rollback;"
            " it is not known to be done)",
        ),
        ("inconclusive", 3, "inconclusive: "),
        ("timeout", 3, "timeout: gave up waiting after "),
        ("error", 2, "postflight register: error: "),
    ],
)
async def test_each_end_of_register_wait_says_its_outcome_and_exit_code(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
    case: str,
    code: int,
    starts: str,
    refusing: str,
) -> None:
    extra, analysis, window, token = "", None, "1500ms", TOKEN
    if case in ("failed", "given_up", "rolled_back"):
        flip_target.bad = True
    if case == "given_up":  # refused at once, and given up after that one attempt
        extra = f"rollback: {{url: '{refusing}', secret: {SECRET}, max_attempts: 1}}"
    if case == "rolled_back":
        receiver = await rollback_receiver(SECRET)
        extra = f"rollback: {{url: '{receiver.url}', secret: {SECRET}}}"
    if case == "inconclusive":
        analysis = ON_EVIDENCE
    if case == "timeout":
        window = "30s"
    if case == "error":
        token = "not-the-token-0123456789"
    env = environment("production", flip_target.url, window=window, extra=extra)
    if analysis is not None:
        env = environment(
            "production", flip_target.url, window=window, analysis=analysis, extra=extra
        )
    agent = await start_agent(env)
    argv = ["--url", agent.url, "--token", token, "--env", "production", "--version", "v2"]
    if case == "timeout":
        argv += ["--timeout", "2s"]
    for _ in range(3):  # a window the loaded machine's own stall held is registered again
        got, said = await awaited_cli("register", *argv, "--wait")
        if "agent overloaded" not in said or case == "inconclusive":
            break
    assert got == code, said
    ends = [line for line in said.splitlines() if re.search(r"\(exit \d+\)$", line)]
    assert len(ends) == 1, said  # one end line
    assert ends[0].startswith(starts), said
    assert ends[0].endswith(f"(exit {code})"), said
