"""A GitHub status, or a Vercel Rolling Release approval, that gives up on a long rate
limit (a reset past the call's retries) is tried again no earlier than the provider asked:
by this process, by its restart, or by another replica taking its claim over. It was tried
again after `STATUS_RETRY_S` (60 s) whatever was asked, and a restart or a replica took
the claim over once its lease lapsed from the claim's time (`_status_lease`,
`_approval_lease`), inside the asked wait too: GitHub may ban an integration that goes on
calling while limited. Counted at the fakes, with `STATUS_RETRY_S` and the lease made
short so that their retry would come within the test."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.windows import integrations as module
from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
    vercel_hook,
)
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

pytestmark = pytest.mark.e2e

ASKED_S = 100.0
"""GitHub's reset: past the call's retries (`call` gives up at once, not waiting it)."""


@pytest.fixture(params=["sqlite", "postgres"])
def store_yaml(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        return f"url: {request.getfixturevalue('pg_url')}"
    return f"url: sqlite:///{request.getfixturevalue('tmp_path') / 'asked.db'}"


@pytest.mark.timeout(90)
async def test_a_status_given_up_on_a_long_rate_limit_is_not_tried_before_the_asked_wait(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    store_yaml: str,
) -> None:
    monkeypatch.setattr(module, "STATUS_RETRY_S", 0.5)
    monkeypatch.setattr(module.Integrations, "_status_lease", lambda self: 1.0)
    posted = lambda: [r for r in fake_github.seen("/statuses") if r.method == "POST"]  # noqa: E731
    fake_github.fail(
        "rate_limit",
        times=1,
        reset_in=ASKED_S,
        match=lambda r: r.method == "POST" and "/statuses" in r.path,
    )
    env = environments(flip_target, window="60s")
    extra = integrations(fake_github, fake_vercel)
    caplog.set_level(logging.WARNING, logger="postflight.integrations")
    first = await start_agent(env, extra=extra, store=store_yaml, owner="replica-a")
    status, opened = await github_hook(first, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    await eventually(lambda: len(posted()) >= 1)
    await asyncio.sleep(2.0)  # its own retry after STATUS_RETRY_S would have come by now
    assert len(posted()) == 1, posted()
    await eventually(lambda: any("tried again in" in r.getMessage() for r in caplog.records))
    said = [r.getMessage() for r in caplog.records if "tried again in" in r.getMessage()]
    wait = float(said[0].rsplit("tried again in ", 1)[1].split(" s")[0])
    assert wait >= ASKED_S - 2, said  # the reset GitHub named, not STATUS_RETRY_S

    await first.stop()  # a restart (SQLite), or the other replica (PostgreSQL) taking over
    await start_agent(env, extra=extra, store=store_yaml, owner="replica-b")
    await asyncio.sleep(3.0)  # a take-over once the claim's 1 s lease lapsed: by now
    assert len(posted()) == 1, posted()
    assert fake_github.statuses == []


@pytest.mark.timeout(90)
async def test_an_approval_given_up_on_a_long_rate_limit_is_not_tried_before_the_asked_wait(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    store_yaml: str,
) -> None:
    """Vercel's 429 on a Rolling Release approval, its `X-RateLimit-Reset` 100 s away."""
    monkeypatch.setattr(module, "STATUS_RETRY_S", 0.5)
    monkeypatch.setattr(module.Integrations, "_approval_lease", lambda self: 1.0)
    fake_vercel.fail("rate_limit", times=1, reset_in=ASKED_S, match="approve-stage")
    env = environments(flip_target, window="1500ms", rolling_release=True)
    extra = integrations(fake_github, fake_vercel)
    first = await start_agent(env, extra=extra, store=store_yaml, owner="replica-a")
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    status, opened = await vercel_hook(first, vc.event(event_id="rr-wait", deployment=vc.NEW))
    assert status == 202
    assert (await first.settled(opened["deploy"]["id"]))["state"] == "passed"
    await eventually(lambda: len(fake_vercel.seen("/approve-stage")) >= 1)
    await asyncio.sleep(2.0)  # its own retry after STATUS_RETRY_S would have come by now
    assert len(fake_vercel.seen("/approve-stage")) == 1

    await first.stop()
    await start_agent(env, extra=extra, store=store_yaml, owner="replica-b")
    await asyncio.sleep(3.0)  # a take-over once the claim's 1 s lease lapsed: by now
    assert len(fake_vercel.seen("/approve-stage")) == 1
    assert fake_vercel.approvals == []
