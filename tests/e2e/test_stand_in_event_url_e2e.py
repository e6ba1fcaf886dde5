"""A window that probes its deploy event's own URL stands in for no background run of
`base_url` (`agent.windows.fingerprint`: background runs "never probe a canary's
`baseline_url` or a deploy event's own URL")."""

from __future__ import annotations

import asyncio

from agent.appkeys import SETTINGS, STORE
from agent.records import DeployWindow
from agent.windows.fingerprint import check_fingerprints
from tests.e2e.conftest import AgentFactory, FlipTarget, environment
from tests.e2e.crash import free_port
from tests.e2e.test_integrations_e2e import (  # noqa: F401  (fixtures)
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,  # stopped before the fakes
)
from tests.fakes import github as gh
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel


async def test_rounds_on_a_deploy_events_url_do_not_stand_in_for_base_urls_runs(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    # base_url is dead: every true background run of it has no passing probe; the
    # deploy event names a live URL (flip_target), which the window probes instead
    env = environment(
        "preview",
        f"http://127.0.0.1:{free_port()}",
        window="2s",
        interval="200ms",
        background_interval="200ms",
        extra=(
            f"sources: {{github: {{repository: {gh.REPOSITORY}, environment: Preview,"
            " use_environment_url: true}}\nlookback: 1m"
        ),
    )
    agent = await start_agent(env, extra=integrations(fake_github, fake_vercel))
    await asyncio.sleep(1.0)  # background runs of the dead base_url
    body = gh.deployment_status(environment="Preview").replace(
        b"https://web-new.vercel.app", flip_target.url.encode()
    )
    status, opened = await github_hook(agent, "deployment_status", body, "preview-1")
    assert status == 202, opened
    final = await agent.settled(opened["deploy"]["id"], within=20)
    assert final["state"] == "passed", final["verdict"]
    window = await agent.app[STORE].get_window(opened["deploy"]["id"])
    assert isinstance(window, DeployWindow) and window.ended_at is not None
    settings = agent.app[SETTINGS].environments["preview"]
    rows = await agent.app[STORE].probe_summaries(
        "preview",
        window.deployed_at,
        window.ended_at + 0.001,
        list(check_fingerprints(settings).values()),
    )
    # runs stored as base_url's whose probes passed probed another target
    passing = [at for _check, at, summary in rows if any(summary["ok"])]
    assert passing == [], f"{len(passing)} runs of the event's URL stored as base_url's"
