"""A `rollback.then` follow-up that failed pages once, whatever instant a clean stop
comes at: its alert is claimed with (before) the follow-up's outcome, where it was a task
started beside it, which a stop could cut before its claim while the outcome was stored,
and the page was lost for good (the follow-up done, nothing owed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from tests.e2e.conftest import (
    SECRET,
    AgentFactory,
    FlipTarget,
    environment,
    rollback_then_migrations,
)
from tests.receivers import JsonSink, RollbackReceiver, alert_titled

pytestmark = pytest.mark.e2e

ALERT_KEY = "alert:then:migrations"


def follow_up_pages(sink: JsonSink) -> list[str]:
    return [n.message for n in sink.notifications if "follow-up 'migrations'" in n.message]


@pytest.mark.timeout(90)
async def test_a_failed_follow_ups_alert_cut_by_a_stop_at_its_claim_is_sent_once(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The follow-up's receiver answers 500; the stop comes as its alert is being claimed
    (a claim slower than the stop's grace, cut by it). The restart pages once."""
    claim_alert = SqliteStore.claim_alert
    claiming = asyncio.Event()

    async def slow_claim(self: SqliteStore, window_id: str, event: str, *a: Any, **k: Any) -> Any:
        if event == ALERT_KEY and not claiming.is_set():
            claiming.set()
            await asyncio.sleep(10)  # past the stop: cut before its claim is made
        return await claim_alert(self, window_id, event, *a, **k)

    monkeypatch.setattr(SqliteStore, "claim_alert", slow_claim)
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    follow: RollbackReceiver = await rollback_receiver(SECRET, script=[500, 500], path="/then")
    delivery = "timeout: 1s, max_attempts: 1, max_backoff: 1s"
    rollback = rollback_then_migrations(receiver.url, SECRET, follow.url, delivery)
    env = environment("production", flip_target.url, extra=rollback)
    alerting = f"alerting:\n  channels:\n    - url: {json_sink.url()}\n"
    server = "shutdown_timeout: 2s"
    agent = await start_agent(env, alerting, server=server, owner="replica-a")
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    await asyncio.wait_for(claiming.wait(), 30)  # the follow-up failed; its page is claimed
    await agent.stop()
    assert follow_up_pages(json_sink) == []

    restarted = await start_agent(env, alerting, server=server, owner="replica-a")
    final = await restarted.wait_until(
        deploy["id"], lambda d: d["rollback"]["then"][0]["state"] == "failed", 30
    )
    assert final["state"] == "rolled_back"
    await alert_titled(json_sink, "ROLLBACK FAILED", within=20)
    await asyncio.sleep(0.5)  # a second copy would come with the first
    assert len(follow_up_pages(json_sink)) == 1, [n.title for n in json_sink.notifications]
    assert [a.accepted for a in receiver.attempts] == [True], receiver.attempts


@pytest.mark.timeout(90)
async def test_a_failed_follow_ups_alert_claimed_as_a_stop_comes_is_sent_once(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stop comes once the page is claimed and the outcome stored, before the page
    is sent (its send held past the stop): the restart sends it once its claim lapses,
    and the follow-up is not sent again."""
    send_claimed = WindowAlerts.send_claimed
    sending = asyncio.Event()

    async def held(self: WindowAlerts, *a: Any, key: str | None = None, **k: Any) -> Any:
        if key == ALERT_KEY and not sending.is_set():
            sending.set()
            await asyncio.sleep(10)  # past the stop: cut before it is sent
        return await send_claimed(self, *a, key=key, **k)

    monkeypatch.setattr(WindowAlerts, "send_claimed", held)
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    follow: RollbackReceiver = await rollback_receiver(SECRET, script=[500, 500], path="/then")
    delivery = "timeout: 1s, max_attempts: 1, max_backoff: 1s"
    rollback = rollback_then_migrations(receiver.url, SECRET, follow.url, delivery)
    env = environment("production", flip_target.url, extra=rollback)
    alerting = f"alerting:\n  timeout: 1s\n  channels:\n    - url: {json_sink.url()}\n"
    server = "shutdown_timeout: 2s"
    agent = await start_agent(env, alerting, server=server, owner="replica-a")
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    await asyncio.wait_for(sending.wait(), 30)
    await agent.stop()
    assert follow_up_pages(json_sink) == []

    restarted = await start_agent(env, alerting, server=server, owner="replica-a")
    await alert_titled(json_sink, "ROLLBACK FAILED", within=20)
    await asyncio.sleep(0.5)  # a second copy would come with the first
    assert len(follow_up_pages(json_sink)) == 1, [n.title for n in json_sink.notifications]
    assert len(follow.attempts) == 1, follow.attempts
    final = await restarted.get(deploy["id"])
    assert final["rollback"]["then"] == [{"name": "migrations", "state": "failed"}], final
    assert [a.accepted for a in receiver.attempts] == [True], receiver.attempts
