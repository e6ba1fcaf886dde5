"""A registration of a deploy older than the one live (a pipeline's retry, or a report
that arrived after the next deploy's) against the real daemon: it is recorded
`superseded` at once, naming the newer deploy, whose watch goes on and still rolls a
bad deploy back. Before, it superseded the newer deploy (contract §2: "a new deploy …
supersedes"), so what was live went unwatched and its rollback never came."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from common.times import rfc3339
from tests.e2e.conftest import SECRET, TOKEN, AgentFactory, FlipTarget, environment
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
async def test_an_older_deploy_registered_late_does_not_end_the_watch_of_the_live_one(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    receiver = RollbackReceiver(SECRET)
    await receiver.start()
    try:
        agent = await start_agent(
            environment(
                "production",
                flip_target.url,
                window="30s",
                extra=f"rollback: {{url: '{receiver.url}', secret: {SECRET}}}",
            )
        )
        live = await agent.register("production", "v2")
        deployed = time.time() - 60
        late_body = {
            "environment": "production",
            "version": "v1",
            "window": "10m",
            "deployed_at": rfc3339(deployed, millis=False),
        }
        headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "run-41"}
        async with agent.http.post(f"{agent.url}/v1/deploys", json=late_body, headers=headers) as r:
            late = await r.json()
            assert r.status == 201, late
            assert r.headers["Location"] == f"/v1/deploys/{late['id']}"
        assert late["state"] == "superseded", late
        assert late["verdict"] is None
        [warning] = late["warnings"]
        assert warning.startswith("production v1: deployed at"), warning
        assert f"before {live['id']} (v2, deployed at" in warning, warning
        assert "recorded superseded by it, not watched" in warning, warning
        # the pipeline's retry of it, its time written with another offset: the same answer
        again_body = {**late_body, "deployed_at": rfc3339(deployed, millis=False)[:-1] + "+00:00"}
        async with agent.http.post(
            f"{agent.url}/v1/deploys", json=again_body, headers=headers
        ) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == late
        assert (await agent.get(late["id"]))["state"] == "superseded"
        assert (await agent.get(live["id"]))["state"] == "watching"
        assert (
            agent.metric("postflight_windows_total", environment="production", outcome="superseded")
            == 1.0
        )
        # what is live goes bad: its watch, still on, rolls it back
        flip_target.bad = True
        final = await agent.settled(live["id"])
        assert final["state"] == "rolled_back", final
        assert list(receiver.delivered) == [live["id"]]
    finally:
        await receiver.stop()


@pytest.mark.timeout(60)
async def test_a_deploy_registered_before_a_scheduled_one_goes_live_still_supersedes_it(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """A `scheduled` window is not live yet: a deploy that went live before its time is
    what serves now, and supersedes it as any new deploy does (README, States)."""
    agent = await start_agent(environment("production", flip_target.url, window="30s"))
    scheduled = await agent.register(
        "production", "v3", deployed_at=rfc3339(time.time() + 1800, millis=False)
    )
    assert scheduled["state"] == "scheduled"
    now_live = await agent.register(
        "production", "v2", deployed_at=rfc3339(time.time() - 10, millis=False)
    )
    assert now_live["state"] == "watching" and not now_live.get("warnings"), now_live
    assert (await agent.get(scheduled["id"]))["state"] == "superseded"
    await agent.cancel(now_live["id"])


@pytest.mark.timeout(60)
async def test_an_older_deploy_registered_after_a_newer_one_ended_is_not_watched(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """The newer deploy's window over (passed): the late registration of the older one,
    its window of 10m not over, is recorded superseded by it. Watched, it judged the
    newer deploy's traffic, and a failure of that would have rolled back over it."""
    agent = await start_agent(environment("production", flip_target.url, window="30s"))
    newer = await agent.register("production", "v2", window="2s")
    ended = await agent.settled(newer["id"])
    assert ended["state"] in ("passed", "inconclusive"), ended
    deployed = time.time() - 120
    late = await agent.register(
        "production", "v1", window="10m", deployed_at=rfc3339(deployed, millis=False)
    )
    assert late["state"] == "superseded", late
    [warning] = late["warnings"]
    assert f"before {newer['id']} (v2, deployed at" in warning, warning
    assert f"a later deploy, its window over ({ended['state']})" in warning, warning
    # a deploy cancelled need not have served: one registered after it is watched
    cancelled = await agent.register("production", "v3")
    await agent.cancel(cancelled["id"])
    # deployed after v2 ended, before v3 (cancelled)
    before_v3 = datetime.fromisoformat(cancelled["deployed_at"]) - timedelta(milliseconds=500)
    watched = await agent.register("production", "v4", deployed_at=before_v3.isoformat())
    assert watched["state"] == "watching", watched
    await agent.cancel(watched["id"])
