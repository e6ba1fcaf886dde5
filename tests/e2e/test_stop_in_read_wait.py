"""A stop while a read that a status or an approval needs first waits to retry leaves it
at once, its claim left to the next start, kept to the end of the wait the provider
asked for (the next start read at once, inside it): the full SHA of a short `--commit`
(`GET /repos/{repository}/commits/{ref}`, before its commit status) and the Rolling
Release's state (`GET /v1/projects/{project}/rolling-release`, before its approval).

Those reads were made without the stop's event (`leaving`): the stop waited out their
retry wait within its grace and cut the call off ('did not finish within …'), its claim
left open, and the next start posted the status or approved the stage only once that
claim lapsed (`_status_lease`: 135 s, `_approval_lease`: more, with the defaults), as the
other calls no longer did. Counted at the fakes."""

from __future__ import annotations

import logging

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    commit_status_staging,
    environments,
    eventually,
    fake_github,
    fake_vercel,
    integrations,
    start_agent,
    vercel_hook,
)
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

pytestmark = pytest.mark.e2e

SERVER = "shutdown_timeout: 5s"
"""A 2 s grace: the waits below (`ASKED_S`) end past it."""
ASKED_S = 5.0
"""The wait GitHub's and Vercel's rate limits ask for below."""


def _stopped_in_the_wait(said: list[str], what: str) -> None:
    assert not [m for m in said if "cut off" in m or "did not finish" in m], said
    left = [m for m in said if "left pending to the next start" in m]
    assert left and what in left[0], said


@pytest.mark.timeout(90)
async def test_a_stop_while_a_short_commits_full_sha_waits_to_retry_hands_its_status_back(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    short = gh.COMMIT[:7]
    fake_github.fail(
        "secondary_rate_limit",
        times=1,
        reset_in=ASKED_S,
        match=lambda r: r.method == "GET" and r.path.endswith(f"/commits/{short}"),
    )
    env = commit_status_staging(flip_target, window="60s")
    extra = integrations(fake_github, fake_vercel)
    agent = await start_agent(env, extra=extra, server=SERVER, owner="replica-a")
    await agent.register("staging", "v8", commit=short)
    await eventually(lambda: len(fake_github.seen(f"/commits/{short}")) >= 1)
    with caplog.at_level(logging.INFO, logger="postflight"):
        await agent.stop()
    said = [r.getMessage() for r in caplog.records]
    assert len(fake_github.seen(f"/commits/{short}")) == 1, said  # none inside the stop
    assert fake_github.commit_statuses == [], said
    _stopped_in_the_wait(said, "commit status pending")

    await start_agent(env, extra=extra, server=SERVER, owner="replica-a")
    await eventually(lambda: len(fake_github.commit_statuses) >= 1, within=15)  # not 135 s
    assert [(s["sha"], s["state"]) for s in fake_github.commit_statuses] == [(gh.COMMIT, "pending")]
    first, again = [r for r in fake_github.requests if r.path.endswith(f"/commits/{short}")]
    assert again.at >= first.at + ASKED_S - 0.1, (first.at, again.at)  # not inside the wait


@pytest.mark.timeout(90)
async def test_a_stop_while_the_rolling_release_read_waits_to_retry_hands_the_approval_back(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The window notes its stage at its open; the passed window's approval reads the
    release first, and that read meets Vercel's rate limit (its reset `ASKED_S` away)."""
    env = environments(flip_target, window="3s", rolling_release=True)
    extra = integrations(fake_github, fake_vercel)
    agent = await start_agent(env, extra=extra, server=SERVER, owner="replica-a")
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-read", deployment=vc.NEW))
    assert status == 202
    await eventually(lambda: len(fake_vercel.seen("/rolling-release")) >= 1)  # the note
    fake_vercel.fail(
        "rate_limit",
        reset_in=ASKED_S,
        match=lambda r: r.method == "GET" and r.path.endswith("/rolling-release"),
    )
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    await eventually(lambda: len(fake_vercel.seen("/rolling-release")) >= 2)
    with caplog.at_level(logging.INFO, logger="postflight"):
        await agent.stop()
    said = [r.getMessage() for r in caplog.records]
    assert len(fake_vercel.seen("/rolling-release")) == 2, said  # none inside the stop
    assert fake_vercel.seen("/approve-stage") == [], said
    _stopped_in_the_wait(said, "Rolling Release approval")

    fake_vercel.heal()
    await start_agent(env, extra=extra, server=SERVER, owner="replica-a")
    await eventually(lambda: len(fake_vercel.approvals) >= 1, within=15)
    assert len(fake_vercel.approvals) == 1
    assert len(fake_vercel.seen("/approve-stage")) == 1
    limited, again = fake_vercel.seen("/rolling-release")[1:3]
    assert again.at >= limited.at + ASKED_S - 0.1, (limited.at, again.at)  # not inside it
