"""README, after the workflow: "When Vercel's webhook already opens the window
(`sources.vercel`), the workflow can skip the Action …; use one or the other per
environment, or every deploy opens two windows (the second supersedes the first)." A
pipeline author decides on this, so both orders are run as they happen: the Action's own
script (tests/e2e/test_github_action.py's run, GitHub's variables set) beside a signed
Vercel event of the same commit, through the real daemon. Whichever comes second opens
the watched window; the Action that came first sees its window superseded and fails the
job. Nothing tested it before (the joins of tests/e2e/test_integrations_e2e.py are of two
events)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunningAgent, environment
from tests.e2e.integrations_support import Integrated, integrated  # noqa: F401 (fixture)
from tests.e2e.test_github_action import github_env, outputs, run_action
from tests.e2e.test_integrations_e2e import vercel_hook, windows
from tests.fakes import vercel as vc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"  # the Action's GITHUB_SHA, the event's commit


async def agent_with_vercel_source(fakes: Integrated) -> RunningAgent:
    extra = f"sources: {{vercel: {{project: {vc.PROJECT}, target: production}}}}"
    return await fakes.start(environment("production", fakes.target.url, window="3s", extra=extra))


async def test_a_vercel_event_then_the_action_opens_two_windows_the_actions_watched(
    integrated: Integrated,  # noqa: F811
    tmp_path: Path,
) -> None:
    agent = await agent_with_vercel_source(integrated)
    status, answer = await vercel_hook(agent, vc.event(sha=SHA))
    assert status == 202, answer
    code, log = await run_action(github_env(tmp_path, agent.url))
    assert code == 0, log
    assert (await agent.get(answer["deploy"]["id"]))["state"] == "superseded"
    assert sorted(w["state"] for w in await windows(agent) if w["version"] == SHA) == [
        "passed",
        "superseded",
    ]


async def test_the_action_then_a_vercel_event_opens_two_windows_and_fails_the_job(
    integrated: Integrated,  # noqa: F811
    tmp_path: Path,
) -> None:
    agent = await agent_with_vercel_source(integrated)
    action = asyncio.ensure_future(run_action(github_env(tmp_path, agent.url)))
    registered: list[dict[str, Any]] = []

    async def action_registered() -> None:
        while not registered:
            registered.extend(w for w in await windows(agent) if w["version"] == SHA)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(action_registered(), 20)
    status, answer = await vercel_hook(agent, vc.event(sha=SHA))
    assert status == 202, answer
    assert answer["deploy"]["id"] != registered[0]["id"]  # a second window, not a join
    code, log = await action
    assert code != 0, log
    assert outputs(tmp_path)["state"] == "superseded", log
    assert (await agent.get(registered[0]["id"]))["state"] == "superseded"
    assert (await agent.settled(answer["deploy"]["id"]))["state"] == "passed"
