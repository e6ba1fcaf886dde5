"""Contract §7's integrations through the real daemon and the fakes, when a read's 2xx
answer is cut short (fewer bytes than its Content-Length, then the connection closed):
the read is asked again, as a provider's query is, where it was taken as an answer with
no data and the pipeline acted on "nothing there"."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from aiohttp import web

from tests.e2e.conftest import AgentFactory, FlipTarget, RunningAgent
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    alerts_to,
    environments,
    eventually,
    fake_github,
    fake_vercel,
    integrations,
    start_agent,
    vercel_hook,
)
from tests.e2e.test_integrations_given_up_e2e import told_once
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel
from tests.receivers import JsonSink


def _release_read(request: web.Request) -> bool:
    return request.method == "GET" and request.path.endswith("/rolling-release")


def _approval(tmp_path: Path, deploy: str) -> tuple[str, str] | None:
    with sqlite3.connect(tmp_path / "postflight.db") as db:
        row = db.execute(
            "SELECT result, detail FROM alerts WHERE window_id = ? AND event = ?",
            (deploy, "vercel:approve-stage"),
        ).fetchone()
    return None if row is None else (str(row[0]), str(row[1] or ""))


async def _stage_read(agent: RunningAgent, deploy: str) -> str | None:
    """The stage the open's read of the release labelled the window with (`None` if no
    label within 10 s)."""
    labels: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while "vercel.rolling_stage" not in labels and loop.time() < deadline:
        labels = (await agent.get(deploy))["labels"]
        await asyncio.sleep(0.05)
    return labels.get("vercel.rolling_stage")


async def test_a_rolling_release_read_cut_short_before_the_approval_is_asked_again(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The pass reads the release before it approves the stage its window watched; that
    read's 200 cut short was "no rolling release": the approval recorded `skipped` ("no
    rolling release: no stage to approve"), never sent, nobody told, the release left at
    its stage. Asked again, it comes whole and the stage is approved, once."""
    agent = await start_agent(
        environments(flip_target, window="3s", rolling_release=True),
        extra=integrations(fake_github, fake_vercel),
    )
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-cut", deployment=vc.NEW))
    assert status == 202, opened
    deploy = opened["deploy"]["id"]
    assert await _stage_read(agent, deploy) == "0"  # the open's read, whole
    reads_at_open = len([r for r in fake_vercel.seen("/rolling-release") if r.method == "GET"])
    fake_vercel.fail("cut_short", times=1, match=_release_read)  # the approval's read
    assert (await agent.settled(deploy))["state"] == "passed"
    await eventually(lambda: (_approval(tmp_path, deploy) or ("claimed",))[0] != "claimed")
    assert _approval(tmp_path, deploy) == ("sent", "HTTP 200")
    assert fake_vercel.approvals == [
        {"activeStageIndex": 0, "nextStageIndex": 1, "canaryDeploymentId": vc.NEW}
    ]
    reads = [r for r in fake_vercel.seen("/rolling-release") if r.method == "GET"]
    assert len(reads) - reads_at_open == 2  # the one cut short, and the one asked again


async def test_a_rolling_release_of_a_shape_not_vercels_is_told_not_a_crash(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    json_sink: JsonSink,
    tmp_path: Path,
) -> None:
    """A 200 whose release is not of Vercel's shape (its `canaryDeployment` a string, not
    an object: a proxy's, an API change) raised out of the approval (AttributeError): its
    claim left open with no outcome, nothing approved, nobody told, until a restart. It is
    a read that failed: the approval recorded failed, and on-call told once."""
    agent = await start_agent(
        environments(flip_target, window="3s", rolling_release=True),
        alerting=alerts_to(json_sink),
        extra=integrations(fake_github, fake_vercel),
    )
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-shape", deployment=vc.NEW))
    assert status == 202, opened
    deploy = opened["deploy"]["id"]
    assert await _stage_read(agent, deploy) == "0"
    fake_vercel.rolling[vc.PROJECT]["canaryDeployment"] = vc.NEW  # not {"id": ...}
    assert (await agent.settled(deploy))["state"] == "passed"
    await eventually(lambda: (_approval(tmp_path, deploy) or ("claimed",))[0] != "claimed")
    result, detail = _approval(tmp_path, deploy) or ("", "")
    assert result == "failed", detail
    assert "not of Vercel's shape" in detail, detail
    told = await told_once(json_sink, agent)
    assert deploy in told.message and "not of Vercel's shape" in told.message
    assert fake_vercel.approvals == []
