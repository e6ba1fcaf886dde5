"""A stop just after a rollback was delivered (the receiver's 2xx), through the real
daemon: the outcome is in the store before anything after it (the "rollback delivered"
alert, a `rollback.then` follow-up) is sent, so what the stop cuts off there is only that
alert, sent at the next start; the rollback itself is never sent again. The stop's warning
says so, where it said "deliver_rollback did not finish within 5.0 s; cut off", which read
as a rollback cut off mid-delivery (and sent again)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agent.records import DeliveryAttempt, RollbackIntent
from agent.store.sqlite import SqliteStore
from tests.e2e.conftest import (
    SECRET,
    AgentFactory,
    FlipTarget,
    environment,
    rollback_then_migrations,
)
from tests.e2e.crash import free_port
from tests.receivers import JsonSink, RollbackReceiver, alert_titled

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT_S = 2.0
"""Its drain's grace: max(1 s, 2 s - 3 s) = 1 s, less than the hung alert's 3 s."""


@pytest.mark.timeout(90)
async def test_a_stop_while_the_delivered_rollbacks_alert_hangs_cuts_only_the_alert(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    env = environment(
        "production",
        flip_target.url,
        extra=f"rollback: {{url: {receiver.url}, secret: {SECRET}}}",
    )
    alerting = f"alerting:\n  timeout: 3s\n  channels:\n    - url: {json_sink.url()}\n"
    server = f"shutdown_timeout: {SHUTDOWN_TIMEOUT_S}s"
    agent = await start_agent(env, alerting, server=server, owner="replica-a")
    deploy = await agent.register("production", "v2")
    json_sink.hang_always()  # every alert hangs: the rollback's is in flight at the stop
    flip_target.bad = True
    await receiver.wait_for_attempts(1, within=20)
    # the instant that matters: the 2xx is recorded, and the task goes on to its alert
    await agent.wait_until(
        deploy["id"], lambda d: (d.get("rollback") or {}).get("state") == "delivered"
    )
    await json_sink.wait_arrived(1, within=10)  # its alert hangs at the channel
    with caplog.at_level(logging.WARNING, logger="postflight"):
        await agent.stop()
    cut = [r.getMessage() for r in caplog.records if "cut off" in r.getMessage()]
    said = [m for m in cut if f"rollback {deploy['id']}" in m]  # the alerts are named too
    assert said, cut
    assert "delivered" in said[0] and "not sent again" in said[0], said
    assert not [m for m in cut if "deliver_rollback" in m], cut

    # the next start: the rollback stays delivered, its alert goes out, nothing is resent
    json_sink.come_back()
    # the restart's channel answers: its 1 s timeout makes the cut claim's lease lapse in
    # 2 x its worst case + 1 s, where the first agent's 3 s one held it some 8 s
    answering = alerting.replace("timeout: 3s", "timeout: 1s")
    restarted = await start_agent(env, answering, server=server, owner="replica-a")
    final = await restarted.settled(deploy["id"], within=30)
    assert final["state"] == "rolled_back"
    assert final["rollback"]["state"] == "delivered"
    await alert_titled(json_sink, "rollback delivered", within=30)
    await asyncio.sleep(0.5)  # a resend would have gone out with the restart's sweep
    assert len(receiver.attempts) == 1, receiver.attempts
    assert [a.accepted for a in receiver.attempts] == [True]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("follow_up", ["hangs", "refused"])
async def test_a_stop_while_the_delivered_rollbacks_follow_up_runs_cuts_only_the_follow_up(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    caplog: pytest.LogCaptureFixture,
    follow_up: str,
) -> None:
    """A `rollback.then` follow-up runs in the rollback's task after its outcome is stored:
    one in flight at the stop (its receiver hanging) is cut, one between its retries
    (nothing listening, as the example configuration's at 127.0.0.1:9997) left at once;
    each is sent at the next start (its claim handed back); the rollback is not sent
    again."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    follow: RollbackReceiver = await rollback_receiver(SECRET, script=["hang"], path="/then")
    follow_url = follow.url if follow_up == "hangs" else f"http://127.0.0.1:{free_port()}/then"
    # refused: 4 waits of up to 5 s (jittered), so that its retries are still under way
    # at the stop's 1 s grace; 3 of up to 1 s were over within it in 1 run of 4 (nothing cut)
    retries = (
        "max_attempts: 3, backoff: 1s, max_backoff: 1s"
        if follow_up == "hangs"
        else "max_attempts: 5, backoff: 5s, max_backoff: 5s"
    )
    rollback = rollback_then_migrations(receiver.url, SECRET, follow_url, f"timeout: 2s, {retries}")
    env = environment("production", flip_target.url, extra=rollback)
    server = f"shutdown_timeout: {SHUTDOWN_TIMEOUT_S}s"
    agent = await start_agent(env, server=server, owner="replica-a")
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    await receiver.wait_for_attempts(1, within=20)
    if follow_up == "hangs":
        await follow.wait_for_attempts(1, within=10)  # the instant: the follow-up hangs
    else:  # the instant: refused once, its retries under way (2 s more at least)
        await agent.wait_until(deploy["id"], lambda d: d["state"] == "rolled_back")
    with caplog.at_level(logging.INFO, logger="postflight"):
        await agent.stop()
    cut = [r.getMessage() for r in caplog.records if "cut off" in r.getMessage()]
    said = [m for m in cut if deploy["id"] in m]
    if follow_up == "hangs":
        assert said and "delivered" in said[0] and "not sent again" in said[0], cut
    else:  # met between its retries: left at once, not waited out and cut
        left = [r.getMessage() for r in caplog.records if "left pending" in r.getMessage()]
        assert not said and left and "follow-up 'migrations'" in left[0], (cut, left)

    # the refused follow-up's retries after the restart need not outlast a stop: 100 ms
    # apart, where 5 s ones took 15-20 s to end it failed
    short = env.replace("backoff: 5s, max_backoff: 5s", "backoff: 100ms, max_backoff: 100ms")
    restarted = await start_agent(short, server=server, owner="replica-a")
    final = await restarted.settled(deploy["id"], within=30)
    assert final["state"] == "rolled_back"
    assert final["rollback"]["state"] == "delivered"
    # the follow-up, cut at the stop, goes out after it
    expected = "delivered" if follow_up == "hangs" else "failed"
    await restarted.wait_until(
        deploy["id"],
        lambda d: d["rollback"].get("then") == [{"name": "migrations", "state": expected}],
        40,
    )
    assert [a.accepted for a in receiver.attempts] == [True], receiver.attempts


@pytest.mark.timeout(90)
async def test_a_stop_as_the_2xx_is_being_stored_waits_for_the_write_and_it_is_not_resent(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The instant a stop must not cut: the receiver answered 2xx and the store is slow to
    take the outcome (a commit behind another's fsync), past the drain's 1 s grace. The
    stop cancels the delivery at the grace's end, and the write still goes on to its end
    (`held_until_stored`) within the stop's bound: the restart finds it delivered and
    sends nothing."""
    settle = SqliteStore.settle_rollback
    settling = asyncio.Event()

    async def slow_to_settle(
        self: SqliteStore,
        intent: RollbackIntent,
        attempt: DeliveryAttempt | None = None,
        alerts: Any = (),
    ) -> bool:
        if attempt is not None and intent.state == "delivered" and not settling.is_set():
            settling.set()
            await asyncio.sleep(1.3)  # past the grace (1 s), within the stop (1.6 s)
        return await settle(self, intent, attempt, alerts)

    monkeypatch.setattr(SqliteStore, "settle_rollback", slow_to_settle)
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    env = environment(
        "production", flip_target.url, extra=f"rollback: {{url: {receiver.url}, secret: {SECRET}}}"
    )
    server = f"shutdown_timeout: {SHUTDOWN_TIMEOUT_S}s"
    agent = await start_agent(env, server=server, owner="replica-a")
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    await asyncio.wait_for(settling.wait(), 20)  # the 2xx is in, its record under way
    with caplog.at_level(logging.WARNING, logger="postflight"):
        await agent.stop()
    said = [r.getMessage() for r in caplog.records if deploy["id"] in r.getMessage()]
    assert not [m for m in said if m.endswith("leaving it")], said

    restarted = await start_agent(env, server=server, owner="replica-a")
    final = await restarted.settled(deploy["id"], within=30)
    assert final["rollback"]["state"] == "delivered"
    assert final["rollback"]["attempts"] == 1
    await asyncio.sleep(0.5)  # a resend would have gone out with the restart's sweep
    assert [a.accepted for a in receiver.attempts] == [True], receiver.attempts
