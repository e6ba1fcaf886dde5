"""A stop while a GitHub deployment status waits to retry (GitHub's secondary rate limit:
403 with `Retry-After`) leaves it at once, its claim kept to the wait's end for the next
start, which posts it then: not inside the wait GitHub asked for (it posted at once, and
GitHub may block a token that goes on calling while limited), nor once the claim lapsed.

Nothing of the status is out in its wait (`call`'s sleep between attempts): the stop
waited it out within its grace, sent the next attempt inside the stop when the wait ended
within the grace, and cut it off ('did not finish within …') when not, its claim left
open: the next start posted it only once that claim lapsed (`_status_lease`: 135 s with
the defaults). Counted at the fake GitHub."""

from __future__ import annotations

import logging

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
)
from tests.fakes import github as gh
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(90)
@pytest.mark.parametrize("retry_after", [1, 6], ids=["within-the-grace", "past-it"])
async def test_a_stop_while_a_github_status_waits_to_retry_leaves_it_to_the_next_start(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    retry_after: int,
) -> None:
    """The window's `in_progress` status meets the rate limit once; the agent stops in
    its wait; the next start on the same store posts it, once, as the wait ends."""
    fake_github.fail("secondary_rate_limit", times=1, reset_in=retry_after, match="/statuses")
    env = environments(flip_target, window="60s")
    extra = integrations(fake_github, fake_vercel)
    server = "shutdown_timeout: 5s"  # a 2 s grace: a 1 s wait ended within it
    agent = await start_agent(env, extra=extra, server=server, owner="replica-a")
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    await eventually(lambda: len(fake_github.seen("/statuses")) >= 1)
    with caplog.at_level(logging.INFO, logger="postflight"):
        await agent.stop()
    said = [r.getMessage() for r in caplog.records]
    assert len(fake_github.seen("/statuses")) == 1, said  # none inside the stop
    assert not [m for m in said if "cut off" in m], said
    left = [m for m in said if "left pending to the next start" in m]
    assert left and "GitHub deployment status in_progress" in left[0], said

    await start_agent(env, extra=extra, server=server, owner="replica-a")
    await eventually(lambda: len(fake_github.statuses) >= 1, within=15)  # not 135 s
    assert [s["state"] for s in fake_github.statuses] == ["in_progress"]
    # posted twice in all (the second after a look at GitHub's list: a claim taken over)
    posted = [r for r in fake_github.seen("/statuses") if r.method == "POST"]
    assert len(posted) == 2, posted
    # not inside the wait GitHub asked for (`Retry-After`: whole seconds from its answer)
    assert posted[1].at >= posted[0].at + retry_after - 0.1, (posted[0].at, posted[1].at)
