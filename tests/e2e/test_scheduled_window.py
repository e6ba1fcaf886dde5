"""A deploy registered ahead of its `deployed_at`: no round and no baseline until then."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.appkeys import STORE
from common.times import rfc3339
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget
from tests.e2e.test_deploy_windows import environment
from tests.receivers import RollbackReceiver


async def test_a_scheduled_window_waits_for_its_deploy_then_is_watched(
    start_agent: AgentFactory, flip_target: FlipTarget, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(environment(flip_target, receiver.url, window="2s", interval="500ms"))
    live_at = time.time() + 6.5  # past the 5s of tolerated clock skew
    deploy = await agent.register("production", "v5", deployed_at=rfc3339(live_at))
    assert deploy["state"] == "watching" and deploy["scheduled"] is True

    await asyncio.sleep(1.5)  # the watcher has claimed it by now, and must only wait
    before = await agent.get(deploy["id"])
    stored = await agent.app[STORE].get_window(deploy["id"])
    assert before["scheduled"] is True and before["rounds"] == 0
    assert stored is not None and stored.baseline is None
    assert stored.lease_owner is not None  # claimed, its lease kept while it waits
    # the environment is still probed in the background: that is the window's baseline
    probes = await agent.app[STORE].probe_summaries("production", live_at - 6.5, live_at)
    assert len({at for _, at, _ in probes}) >= 3

    final = await agent.settled(deploy["id"], within=15)
    assert final["state"] == "passed"
    assert final["rounds"] >= 2
    rounds = await agent.app[STORE].rounds(deploy["id"])
    assert min(r.started_at for r in rounds) >= live_at - 0.05
