"""README, the deploy page: "`GET /deploys?environment=&state=`: recent windows, newest
first", through the agent: the list's rows come in the reverse of the registrations, across
environments and within one (a deploy the next one superseded stays listed), and the
environment filter keeps that order."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
async def test_the_deploy_list_is_newest_first(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    agent = await start_agent(
        environment("production", flip_target.url, window="60s")
        + environment("staging", flip_target.url, window="60s")
    )
    registered = [
        (await agent.register(env, version))["id"]
        for env, version in (("production", "v1"), ("staging", "s1"), ("production", "v2"))
    ]

    async def rows(query: str = "") -> list[str]:
        async with agent.http.get(f"{agent.url}/deploys{query}", headers=agent.headers) as r:
            assert r.status == 200, await r.text()
            return re.findall(r'<tr>\s*<td><a href="/deploys/(dep_\w+)">', await r.text())

    assert await rows() == registered[::-1]
    assert await rows("?environment=production&state=") == [registered[2], registered[0]]
