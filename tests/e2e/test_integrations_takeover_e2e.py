"""Contract §7's Rolling Release approval taken over after a restart, through the real
daemon and the fake Vercel: the restarted agent reads the release afresh and approves no
stage twice, and what it records says why the release moved on. Ours, sent before the
restart (its answer lost), is an approval that took effect, not a failure sending on-call
to approve by hand; someone else's, or an abort, is said as such."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.windows import integrations as daemon_side
from tests.e2e.conftest import RunningAgent
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    VC_TOKEN,
    alerts_to,
    environments,
    eventually,
    fake_github,
    fake_vercel,
    integrations,
    start_agent,
)
from tests.e2e.test_integrations_given_up_e2e import (  # noqa: F401 (fixtures)
    Refusing,
    given_up,
    passed_release_window,
    refusing,
    restarted_after_a_cut_off_approval,
)
from tests.fakes import vercel as vc
from tests.fakes._server import BODY
from tests.receivers import JsonSink

KEY = "vercel:approve-stage"


def recorded(tmp_path: Path, deploy: str) -> tuple[str, str] | None:
    """The approval's stored result and detail (the e2e agents' SQLite store)."""
    with sqlite3.connect(tmp_path / "postflight.db") as db:
        row = db.execute(
            "SELECT result, detail FROM alerts WHERE window_id = ? AND event = ?", (deploy, KEY)
        ).fetchone()
    return None if row is None else (str(row[0]), str(row[1] or ""))


async def settled_record(tmp_path: Path, deploy: str) -> tuple[str, str]:
    """The approval's outcome once the restarted agent stored one."""
    found: list[tuple[str, str]] = []

    def has_outcome() -> bool:
        row = recorded(tmp_path, deploy)
        if row is not None and row[0] != "claimed":
            found.append(row)
        return bool(found)

    await eventually(has_outcome, within=20.0)
    return found[0]


@pytest.mark.parametrize(
    ("stages", "call", "detail"),
    [
        (3, "approve-stage", "stage 0 -> 1: the approval"),
        (2, "complete", "stage 0 -> complete: the completion"),
    ],
    ids=["approve-stage", "complete"],
)
async def test_our_approval_that_took_effect_before_the_restart_is_recorded_approved(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    stages: int,
    call: str,
    detail: str,
) -> None:
    """Vercel took the approval (stage 0 -> 1), or the completion of a release whose next
    stage is the final 100%, and its answer was lost as the agent stopped: the restarted
    agent found the release moved on from the stage its window watched (or COMPLETE,
    which Vercel's GET still returns) and recorded it failed, "moved on ... (approve by
    hand)" or "no active rolling release", though the release moved on because of it."""
    monkeypatch.setattr(daemon_side.Integrations, "_approval_lease", lambda self: 1.0)
    vercel = refusing.vercel
    vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW, stages=stages)
    taken: list[object] = []

    def takes_it(request: web.Request) -> None:  # Vercel acts; its answer then hangs
        if request.path.endswith("/approve-stage"):
            vercel.move_stage(vc.PROJECT, request[BODY]["nextStageIndex"])
        elif request.path.endswith("/complete"):
            vercel.rolling[vc.PROJECT]["state"] = "COMPLETE"
        else:
            return
        taken.append(request[BODY])

    vercel.before_answer = takes_it
    vercel.fail("hang", match=f"rolling-release/{call}")
    options: dict[str, Any] = {"window": "1500ms", "rolling_release": True}
    agent: RunningAgent = await refusing.alerting(json_sink, **options)
    deploy = await passed_release_window(agent, f"rr-ours-{call}")
    await eventually(lambda: len(taken) == 1)
    await agent.stop()
    vercel.before_answer = None
    vercel.heal()
    assert recorded(tmp_path, deploy) == ("claimed", "")  # its answer never came

    agent = await refusing.alerting(json_sink, **options)
    assert await settled_record(tmp_path, deploy) == (
        "approved",
        f"{detail} Postflight sent before the restart took effect (its answer was lost)",
    )
    await asyncio.sleep(1.0)  # several scans: nothing sent again, no one told
    assert len(vercel.seen(f"rolling-release/{call}")) == 1
    assert vercel.approvals == vercel.completions == []  # (the fake's own records)
    assert given_up(json_sink) == []


async def test_a_release_someone_else_moved_on_is_not_called_our_approval(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Our approval was refused (503 through its retries: Vercel did not take it) and a
    person approved the stage while no agent ran: the restarted agent approves nothing and
    says the release moved on without Postflight, not that Postflight approved it. Nothing
    waits on Postflight (whoever moved it on drives it): no page."""
    _, deploy = await restarted_after_a_cut_off_approval(
        refusing,
        monkeypatch,
        match="approve-stage",
        looks=1 + 1 + 4,  # the note, the approval's look, its 4 attempts
        meanwhile=lambda: refusing.vercel.move_stage(vc.PROJECT, 1),
        sink=json_sink,
    )
    result, detail = await settled_record(tmp_path, deploy)
    assert result == "skipped", detail
    assert detail == (
        "the rolling release moved on from stage 0 to stage 1 without Postflight (approved"
        " by someone else, or on its own) while the window watched stage 0: not approved"
        " by Postflight; stage 1 is not one a window of Postflight watched"
    )
    assert refusing.vercel.approvals == []
    await asyncio.sleep(1.0)  # several scans and the alerts' recovery: no one paged
    assert given_up(json_sink) == []


async def test_a_release_aborted_meanwhile_says_so(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Aborted while no agent ran (a rollback, by hand): nothing to approve, said as such;
    nothing waits, so no page."""
    _, deploy = await restarted_after_a_cut_off_approval(
        refusing,
        monkeypatch,
        match="approve-stage",
        looks=1 + 1 + 4,
        meanwhile=lambda: refusing.vercel.rolling[vc.PROJECT].update(state="ABORTED"),
        sink=json_sink,
    )
    result, detail = await settled_record(tmp_path, deploy)
    assert (result, detail) == (
        "skipped",
        "the rolling release is ABORTED: no stage to approve",
    )
    assert refusing.vercel.approvals == []
    await asyncio.sleep(1.0)  # several scans and the alerts' recovery: no one paged
    assert given_up(json_sink) == []


async def test_our_approval_refused_as_done_after_its_lost_answer_is_recorded_approved(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
    tmp_path: Path,
) -> None:
    """Vercel took the first attempt and its answer timed out; the retry was refused (400:
    the stage is no longer the active one, ours having moved it): recorded failed, and
    on-call was told to approve by hand a stage approved already."""
    vercel = refusing.vercel
    vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)

    def takes_it(request: web.Request) -> None:  # the first attempt: acted on, then hangs
        if request.path.endswith("/approve-stage") and not vercel.approvals:
            vercel.move_stage(vc.PROJECT, request[BODY]["nextStageIndex"])
            vercel.approvals.append(request[BODY])

    vercel.before_answer = takes_it
    vercel.fail("hang", times=1, match="approve-stage")
    agent = await refusing.start(
        environments(refusing.target, window="1500ms", rolling_release=True),
        alerting=alerts_to(json_sink),
        extra=integrations(refusing.github, refusing.vercel).replace(
            f"token: {VC_TOKEN},", f"token: {VC_TOKEN}, timeout: 1s,"
        ),
    )
    deploy = await passed_release_window(agent, "rr-lost-answer")
    result, detail = await settled_record(tmp_path, deploy)
    assert (result, detail) == (
        "approved",
        "stage 0 -> 1: the approval Postflight sent earlier took effect (its answer was lost)",
    )
    assert [s.status for s in vercel.seen("/approve-stage")] == [None, 400]
    await asyncio.sleep(1.0)
    assert given_up(json_sink) == []
    assert len(vercel.approvals) == 1


async def test_our_approval_answered_but_not_recorded_before_a_stop_is_recorded_approved(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Vercel answered the approval, and a stop cut its record (the answer noted, the
    approval's own outcome not): the restarted agent must not read the release moved on
    by it as moved on without Postflight."""
    monkeypatch.setattr(daemon_side.Integrations, "_approval_lease", lambda self: 1.0)
    record = daemon_side.Integrations._record

    def cut(self: daemon_side.Integrations, window: Any, key: str, *args: Any, **kw: Any) -> bool:
        if key == KEY:
            return True  # done, as far as this agent knows; nothing stored
        return record(self, window, key, *args, **kw)

    monkeypatch.setattr(daemon_side.Integrations, "_record", cut)
    vercel = refusing.vercel
    vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    options: dict[str, Any] = {"window": "1500ms", "rolling_release": True}
    agent = await refusing.alerting(json_sink, **options)
    deploy = await passed_release_window(agent, "rr-cut")
    await eventually(lambda: len(vercel.approvals) == 1)
    await asyncio.sleep(0.5)  # its answer noted
    await agent.stop()
    assert recorded(tmp_path, deploy) == ("claimed", "")
    monkeypatch.setattr(daemon_side.Integrations, "_record", record)

    agent = await refusing.alerting(json_sink, **options)
    result, detail = await settled_record(tmp_path, deploy)
    assert (result, detail) == (
        "approved",
        "stage 0 -> 1: the approval Postflight sent before the restart took effect"
        " (its answer was lost)",
    )
    assert len(vercel.approvals) == 1
    assert given_up(json_sink) == []


async def test_an_approval_vercel_took_as_the_store_does_not_answer_is_recorded_approved(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Vercel took the approval and the store refused its note (`taken`) once: that write
    was raised out of the approval, whose outcome then went unrecorded in the live agent
    (claimed, nothing counted), until a restart read the release afresh. Held until the
    store takes it (`held_until_stored`), as a status's record is: approved, sent once."""
    from agent.store import outages
    from agent.store.base import StoreUnreachable
    from agent.store.sql import SqlStore

    record_alert = SqlStore.record_alert
    tries: list[str] = []

    async def away_once(self: SqlStore, window_id: str, key: str, *args: Any) -> None:
        if key == daemon_side.SENT_KEY and args[0] == "taken":
            tries.append(args[0])
            if len(tries) == 1:
                raise StoreUnreachable("cannot reach the store: read-only")
        await record_alert(self, window_id, key, *args)

    monkeypatch.setattr(SqlStore, "record_alert", away_once)
    monkeypatch.setattr(outages, "HELD_RETRY_S", (0.2,))
    vercel = refusing.vercel
    vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    agent = await refusing.alerting(json_sink, window="1500ms", rolling_release=True)
    deploy = await passed_release_window(agent, "rr-held")
    await eventually(lambda: len(vercel.approvals) == 1)
    assert (await settled_record(tmp_path, deploy))[0] == "sent"
    assert tries == ["taken", "taken"]
    assert len(vercel.approvals) == 1
    assert given_up(json_sink) == []
