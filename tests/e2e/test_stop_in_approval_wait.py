"""A stop while a Vercel Rolling Release approval waits to retry (Vercel's 429, its reset
in `X-RateLimit-Reset`) leaves it at once, its claim kept to the reset for the next start,
which approves then: not inside the wait Vercel asked for (it approved at once).

Nothing of the approval is out in its wait (`call`'s sleep between attempts): the stop
waited it out within its grace, sent the next attempt inside the stop when the wait ended
within the grace, and cut it off ('did not finish within …') when not, its claim left
open: the next start approved only once that claim lapsed (`_approval_lease`). Counted
at the fake Vercel."""

from __future__ import annotations

import logging

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    eventually,
    fake_github,
    fake_vercel,
    integrations,
    start_agent,
    vercel_hook,
)
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(90)
@pytest.mark.parametrize("reset_in", [1.0, 6.0], ids=["within-the-grace", "past-it"])
async def test_a_stop_while_a_stage_approval_waits_to_retry_leaves_it_to_the_next_start(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    reset_in: float,
) -> None:
    """The passed window's approval meets the rate limit once; the agent stops in its
    wait; the next start on the same store approves the stage, once, at the reset."""
    env = environments(flip_target, window="1500ms", rolling_release=True)
    extra = integrations(fake_github, fake_vercel)
    server = "shutdown_timeout: 5s"  # a 2 s grace: a 1-2 s wait ends within it
    agent = await start_agent(env, extra=extra, server=server, owner="replica-a")
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    fake_vercel.fail("rate_limit", times=1, reset_in=reset_in, match="approve-stage")
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-stop", deployment=vc.NEW))
    assert status == 202
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    await eventually(lambda: len(fake_vercel.seen("/approve-stage")) >= 1)
    with caplog.at_level(logging.INFO, logger="postflight"):
        await agent.stop()
    said = [r.getMessage() for r in caplog.records]
    assert len(fake_vercel.seen("/approve-stage")) == 1, said  # none inside the stop
    assert not [m for m in said if "cut off" in m], said
    left = [m for m in said if "left pending to the next start" in m]
    assert left and "Rolling Release approval" in left[0], said

    await start_agent(env, extra=extra, server=server, owner="replica-a")
    await eventually(lambda: len(fake_vercel.approvals) >= 1, within=15)
    assert len(fake_vercel.approvals) == 1
    sent = fake_vercel.seen("/approve-stage")
    assert len(sent) == 2, sent
    # not before the reset Vercel named (epoch seconds, rounded up)
    assert sent[1].at >= sent[0].at + reset_in - 0.1, (sent[0].at, sent[1].at)
