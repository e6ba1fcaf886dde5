"""Contract §7's Rolling Release approval approves only the stage its window judged,
through the real daemon and the fake Vercel, when the stage could not be noted as the
window opened (the release's read refused, or no release yet): the pass reads the release
then, and Vercel's `updatedAt` says whether its active stage was the one as the window
began. A stage a person approved meanwhile is not advanced a second time; the release left
waiting at a stage Postflight declined to approve is an alert, once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningAgent
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
from tests.e2e.test_integrations_given_up_e2e import (  # noqa: F401 (fixtures)
    Refusing,
    refusing,
    told_once,
)
from tests.fakes import vercel as vc
from tests.receivers import JsonSink

APPROVAL = "vercel:approve-stage"
NOTE = "vercel:rolling-stage"


def recorded(tmp_path: Path, deploy: str, key: str) -> tuple[str, str] | None:
    """An action's stored result and detail (the e2e agents' SQLite store)."""
    with sqlite3.connect(tmp_path / "postflight.db") as db:
        row = db.execute(
            "SELECT result, detail FROM alerts WHERE window_id = ? AND event = ?", (deploy, key)
        ).fetchone()
    return None if row is None else (str(row[0]), str(row[1] or ""))


async def outcome(tmp_path: Path, deploy: str, key: str) -> tuple[str, str]:
    found: list[tuple[str, str]] = []

    def has_outcome() -> bool:
        row = recorded(tmp_path, deploy, key)
        if row is not None and row[0] != "claimed":
            found.append(row)
        return bool(found)

    await eventually(has_outcome, within=20.0)
    return found[0]


async def unnoted_window(
    refusing: Refusing,  # noqa: F811
    tmp_path: Path,
    why: str,
    sink: JsonSink | None = None,
) -> tuple[RunningAgent, str]:
    """A release window whose stage the open could not note (`why`: the read refused, or
    no release yet), its note's failure stored; alerting to `sink`, if given."""
    config = environments(refusing.target, window="3s", rolling_release=True)
    agent = await refusing.start(
        config,
        alerting=alerts_to(sink) if sink is not None else "",
        extra=integrations(refusing.github, refusing.vercel),
    )
    if why == "refused":
        refusing.vercel.fail("404", times=1, match="rolling-release")
    status, opened = await vercel_hook(agent, vc.event(event_id=f"rr-{why}", deployment=vc.NEW))
    assert status == 202, opened
    deploy: str = opened["deploy"]["id"]
    result, _ = await outcome(tmp_path, deploy, NOTE)
    assert result == "failed"
    return agent, deploy


@pytest.mark.parametrize("why", ["refused", "no-release-yet"])
async def test_a_stage_approved_by_hand_while_the_window_watched_is_not_approved_again(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
    tmp_path: Path,
    why: str,
) -> None:
    """Not noted at the open, stage 0 approved by a person while the window watched: the
    pass noted stage 1 and approved 1 -> 2, a stage its verdict was not about. Not
    approved now, the release waits at stage 1 for a person (it may be the stage the
    window judged, active all along): on-call is told once, where nobody was."""
    if why == "refused":
        refusing.vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    agent, deploy = await unnoted_window(refusing, tmp_path, why, json_sink)
    if why == "no-release-yet":
        refusing.vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    refusing.vercel.move_stage(vc.PROJECT, 1)  # by hand, in Vercel's dashboard
    assert (await agent.settled(deploy))["state"] == "passed"
    result, detail = await outcome(tmp_path, deploy, APPROVAL)
    assert result == "skipped", detail
    assert detail.startswith(
        "the stage active as the window began was not noted, and the rolling release,"
        " now at stage 1, changed at "
    ), detail
    assert detail.endswith(
        ": it may have moved on while the window watched (approved by someone else, or on"
        " its own), and the verdict is not known to be about stage 1: not approved by"
        " Postflight"
    ), detail
    assert refusing.vercel.approvals == refusing.vercel.completions == []
    told = await told_once(json_sink, agent)
    assert told.title.endswith(
        ": Rolling Release stage NOT approved by Postflight: approve it by hand if the"
        " window judged it"
    ), told.title
    assert told.type == "failure"
    assert deploy in told.message and "stage 1" in told.message
    assert "changed at" in told.message  # the reason: why Postflight did not approve it
    assert "Approve the stage (or complete the release) by hand in Vercel if" in told.message
    assert (await outcome(tmp_path, deploy, "integration_failed:" + APPROVAL))[0] == "sent"
    # the page says what happened: declined, not a call given up
    async with agent.http.get(f"{agent.url}/deploys/{deploy}", headers=agent.headers) as r:
        page = await r.text()
    assert r.status == 200, page
    assert "given up" not in page
    assert (
        "Rolling Release stage not approved by Postflight (approve it by hand if the"
        " window judged it): sent"
    ) in page


async def test_a_stage_active_since_before_the_window_is_approved_though_not_noted(
    refusing: Refusing,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The control: at stage 1 since before the window began (Vercel's `updatedAt`), the
    stage the window judged is the one now active, noted or not: approved (its next stage
    the final 100%, by completing the release)."""
    refusing.vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW, active=1, at=time.time() - 60)
    agent, deploy = await unnoted_window(refusing, tmp_path, "refused")
    assert (await agent.settled(deploy))["state"] == "passed"
    assert await outcome(tmp_path, deploy, APPROVAL) == ("sent", "HTTP 200")
    assert refusing.vercel.completions == [{"canaryDeploymentId": vc.NEW}]  # 2 is the 100%
