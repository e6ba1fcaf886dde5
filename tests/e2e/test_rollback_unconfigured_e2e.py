"""README, the rollback webhook: "A rollback still owed when its environment … is removed
from the configuration can no longer be sent by anyone: the restarted agent … ends it
`failed` … and pages ROLLBACK FAILED once … to every channel once it is not" configured,
and "A window of a removed environment still watching ends inconclusive at once", through
the agent restarted on its store with the environments gone. The unit tests drive
the watcher's sweep alone (`tests/rollback/test_rollback_unconfigured.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, environment, failing_production
from tests.receivers import JsonSink, RollbackReceiver

pytestmark = pytest.mark.e2e

TITLE = "[postflight] staging v2: ROLLBACK FAILED, act now"


def channels(oncall: JsonSink, staging: JsonSink) -> str:
    return (
        "alerting:\n  channels:\n"
        f"    - {{url: '{oncall.url('oncall')}', tags: [oncall]}}\n"
        f"    - {{url: '{staging.url('staging')}', tags: [staging-team]}}\n"
    )


@pytest.mark.timeout(90)
async def test_a_rollback_owed_by_a_removed_environment_fails_and_pages_every_channel_once(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
) -> None:
    receiver = await rollback_receiver(SECRET, script=[503] * 1000)  # never delivered
    oncall, staging_team = JsonSink(), JsonSink()
    await oncall.start()
    await staging_team.start()
    try:
        production = environment("production", flip_target.url, extra="alerts: {tags: [oncall]}")
        staging = failing_production(receiver.url).replace("production:", "staging:", 1)
        staging += "  alerts: {tags: [staging-team]}\n"
        slow = "max_attempts: 100, backoff: 30s"
        staging = staging.replace(f"secret: {SECRET}}}", f"secret: {SECRET}, {slow}}}")
        canary = environment("canary", flip_target.url, window="60s")
        first = await start_agent(production + staging + canary, channels(oncall, staging_team))
        watching = await first.register("canary", "c2")
        deploy = await first.register("staging", "v2")
        owed = await first.wait_until(
            deploy["id"], lambda d: (d.get("rollback") or {}).get("attempts", 0) >= 1
        )
        assert owed["state"] == "failed" and owed["rollback"]["state"] == "pending", owed
        await first.stop()
        before = len(oncall.notifications), len(staging_team.notifications)

        # staging and its rollback gone from the configuration, the same store
        again = await start_agent(production, channels(oncall, staging_team))
        ended = await again.wait_until(
            deploy["id"], lambda d: d["rollback"]["state"] != "pending", within=30
        )
        assert (ended["state"], ended["rollback"]["state"]) == ("failed", "failed"), ended
        assert "'staging' is no longer configured" in ended["rollback"]["last_error"], ended
        await asyncio.sleep(1.0)  # a second page would come within the agent's next sweeps
        for sink, seen in zip((oncall, staging_team), before, strict=True):
            pages = [n for n in sink.notifications[seen:] if n.title == TITLE]
            assert len(pages) == 1, [n.title for n in sink.notifications]
            assert pages[0].message.startswith(
                "**Rollback FAILED: not sent.** This environment, or its `rollback`, is no"
                " longer in Postflight's configuration, so no agent will send the rollback it"
                " still owed: roll back by hand if this deploy is still live."
            ), pages[0].message
        # "A window of a removed environment still watching ends inconclusive at once, its
        # verdict saying why"
        assert (await again.get(watching["id"]))["state"] == "inconclusive"
        reason = (await again.get(watching["id"]))["verdict"]["reason"]
        assert reason == "environment 'canary' is no longer configured", reason
        attempts = len(receiver.attempts)
        await asyncio.sleep(0.5)
        assert len(receiver.attempts) == attempts  # nothing sent once it failed
    finally:
        await oncall.stop()
        await staging_team.stop()
