"""A Rolling Release stage Postflight declined to approve (not noted as the window began,
the release changed since) pages once, whatever instant a clean stop comes at: its alert
is claimed before the approval's `skipped` is stored and sent from its claim, so a stop
after the outcome does not lose it, and one before it leaves the approval to a takeover
that finds the alert claimed and does not send it twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.store.sqlite import SqliteStore
from agent.windows import integrations as daemon_side
from agent.windows.alert_once import WindowAlerts
from tests.e2e.conftest import RunningAgent
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    fake_github,
    fake_vercel,
    integrations,
    start_agent,
    vercel_hook,
)
from tests.e2e.test_integrations_given_up_e2e import Refusing, given_up, refusing  # noqa: F401
from tests.e2e.test_integrations_stage_e2e import APPROVAL, NOTE, outcome
from tests.fakes import vercel as vc
from tests.receivers import JsonSink

pytestmark = pytest.mark.e2e

PAGE = "integration_failed:" + APPROVAL


async def declining_agent(
    refusing: Refusing,  # noqa: F811
    sink: JsonSink,
    tmp_path: Path,
) -> tuple[RunningAgent, str]:
    """An agent whose release window could not note its stage (the read refused once),
    the release moved to stage 1 while it watched: its pass declines to approve."""
    refusing.vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    agent = await start(refusing, sink)
    refusing.vercel.fail("404", times=1, match="rolling-release")
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-stop", deployment=vc.NEW))
    assert status == 202, opened
    deploy: str = opened["deploy"]["id"]
    assert (await outcome(tmp_path, deploy, NOTE))[0] == "failed"
    refusing.vercel.move_stage(vc.PROJECT, 1)  # by hand, while the window watches
    return agent, deploy


async def start(refusing: Refusing, sink: JsonSink) -> RunningAgent:  # noqa: F811
    config = environments(refusing.target, window="3s", rolling_release=True)
    return await refusing.start(
        config,
        alerting=f"alerting: {{timeout: 1s, channels: [{{url: '{sink.url()}'}}]}}",
        extra=integrations(refusing.github, refusing.vercel),
        server="shutdown_timeout: 2s",
    )


async def paged_once(sink: JsonSink) -> None:
    """The one page, after the restart: a second copy would come with the first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    while not given_up(sink):
        assert loop.time() < deadline, "no page"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    told = given_up(sink)
    assert len(told) == 1, [n.title for n in told]
    assert "NOT approved by Postflight: approve it by hand if" in told[0].title


@pytest.mark.timeout(90)
async def test_a_declined_approvals_alert_claimed_as_a_stop_comes_is_sent_once(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stop comes once the page is claimed and `skipped` stored, before the page is
    sent (its send held past the stop): the restart sends it once its claim lapses."""
    send_claimed = WindowAlerts.send_claimed
    sending = asyncio.Event()

    async def held(self: WindowAlerts, *a: Any, key: str | None = None, **k: Any) -> Any:
        if key == PAGE and not sending.is_set():
            sending.set()
            await asyncio.sleep(10)  # past the stop: cut before it is sent
        return await send_claimed(self, *a, key=key, **k)

    monkeypatch.setattr(WindowAlerts, "send_claimed", held)
    agent, deploy = await declining_agent(refusing, json_sink, tmp_path)
    await asyncio.wait_for(sending.wait(), 30)
    await agent.stop()
    assert given_up(json_sink) == []
    assert (await outcome(tmp_path, deploy, APPROVAL))[0] == "skipped"

    await start(refusing, json_sink)
    await paged_once(json_sink)
    assert refusing.vercel.approvals == refusing.vercel.completions == []


@pytest.mark.timeout(90)
async def test_a_declined_approval_cut_before_its_outcome_pages_once_after_the_takeover(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stop comes once the page is claimed, before `skipped` is stored (its write held
    past the stop): the restart takes the approval over, declines again and finds the page
    claimed, which the alerts' recovery sends: once, not once by each."""
    monkeypatch.setattr(daemon_side.Integrations, "_approval_lease", lambda self: 1.0)
    record_alert = SqliteStore.record_alert
    recording = asyncio.Event()

    async def held(
        self: SqliteStore, window_id: str, event: str, result: str, *a: Any, **k: Any
    ) -> Any:
        if event == APPROVAL and result == "skipped" and not recording.is_set():
            recording.set()
            await asyncio.sleep(10)  # past the stop: cut before the outcome is stored
        return await record_alert(self, window_id, event, result, *a, **k)

    monkeypatch.setattr(SqliteStore, "record_alert", held)
    agent, deploy = await declining_agent(refusing, json_sink, tmp_path)
    await asyncio.wait_for(recording.wait(), 30)
    await agent.stop()
    assert given_up(json_sink) == []

    await start(refusing, json_sink)
    assert (await outcome(tmp_path, deploy, APPROVAL))[0] == "skipped"
    await paged_once(json_sink)
    assert refusing.vercel.approvals == refusing.vercel.completions == []
