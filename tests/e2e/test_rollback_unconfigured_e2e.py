"""README, the rollback webhook: "A rollback still owed when its environment, or the
environment's `rollback`, is removed from the configuration can no longer be sent by
anyone: the restarted agent … ends it `failed` … and pages ROLLBACK FAILED once … It goes
to the environment's channels while the environment is still configured, and to every
channel once it is not", and "A window of a removed environment still watching ends
inconclusive at once, its verdict saying why": through the agent restarted on its store
with the configuration changed. The unit tests drive the watcher's sweep alone
(`tests/rollback/test_rollback_unconfigured.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, environment
from tests.receivers import JsonSink, RollbackReceiver

pytestmark = pytest.mark.e2e

TITLE = "[postflight] staging v2: ROLLBACK FAILED, act now"
HEADLINE = (
    "**Rollback FAILED: not sent.** This environment, or its `rollback`, is no longer in"
    " Postflight's configuration, so no agent will send the rollback it still owed: roll"
    " back by hand if this deploy is still live."
)


@pytest.fixture
async def sinks() -> AsyncIterator[tuple[JsonSink, JsonSink]]:
    """Two channels: `oncall` (production's tag) and `staging-team` (staging's)."""
    oncall, staging_team = JsonSink(), JsonSink()
    await oncall.start()
    await staging_team.start()
    yield oncall, staging_team
    await oncall.stop()
    await staging_team.stop()


def channels(oncall: JsonSink, staging_team: JsonSink) -> str:
    return (
        "alerting:\n  channels:\n"
        f"    - {{url: '{oncall.url('oncall')}', tags: [oncall]}}\n"
        f"    - {{url: '{staging_team.url('staging')}', tags: [staging-team]}}\n"
    )


def staging(receiver: RollbackReceiver | None) -> str:
    """staging on a port nothing listens on (failed at its first round), tagged
    `staging-team`; its rollback, when `receiver` is given, retried slowly: still owed
    when the agent stops."""
    extra = "alerts: {tags: [staging-team]}"
    if receiver is not None:
        slow = "max_attempts: 100, backoff: 30s"
        extra += f"\nrollback: {{url: '{receiver.url}', secret: {SECRET}, {slow}}}"
    return environment("staging", "http://127.0.0.1:9", window="30s", extra=extra)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("removed", ["environment", "rollback"])
async def test_a_rollback_owed_by_a_removed_configuration_fails_and_pages_once(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
    sinks: tuple[JsonSink, JsonSink],
    removed: str,
) -> None:
    receiver = await rollback_receiver(SECRET, script=[503] * 1000)  # never delivered
    production = environment("production", flip_target.url, extra="alerts: {tags: [oncall]}")
    canary = environment("canary", flip_target.url, window="60s")
    first = await start_agent(production + staging(receiver) + canary, channels(*sinks))
    watching = await first.register("canary", "c2")
    deploy = await first.register("staging", "v2")
    owed = await first.wait_until(
        deploy["id"], lambda d: (d.get("rollback") or {}).get("attempts", 0) >= 1
    )
    assert owed["state"] == "failed" and owed["rollback"]["state"] == "pending", owed
    await first.stop()
    before = [len(sink.notifications) for sink in sinks]

    # the same store; staging, or its rollback, and canary gone from the configuration
    kept = production if removed == "environment" else production + staging(None)
    again = await start_agent(kept, channels(*sinks))
    ended = await again.wait_until(
        deploy["id"], lambda d: d["rollback"]["state"] != "pending", within=30
    )
    assert (ended["state"], ended["rollback"]["state"]) == ("failed", "failed"), ended
    why = "is no longer configured" if removed == "environment" else "no longer configures"
    assert why in ended["rollback"]["last_error"], ended
    await asyncio.sleep(1.0)  # a second page would come within the agent's next sweeps
    paged = [[n.message for n in s.notifications[seen:] if n.title == TITLE]
             for s, seen in zip(sinks, before, strict=True)]  # fmt: skip
    # every channel once staging is gone; staging's own while it is configured
    assert [len(p) for p in paged] == ([1, 1] if removed == "environment" else [0, 1]), paged
    assert all(message.startswith(HEADLINE) for p in paged for message in p), paged
    attempts = len(receiver.attempts)
    await asyncio.sleep(0.5)
    assert len(receiver.attempts) == attempts  # nothing sent once it failed

    shown = await again.get(watching["id"])  # canary, removed while watching
    assert shown["state"] == "inconclusive", shown
    assert shown["verdict"]["reason"] == "environment 'canary' is no longer configured", shown
