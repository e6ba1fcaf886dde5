"""A protection rule's answer GitHub took is stored even when the store does not answer
at that moment: held until the store takes it (`held_until_stored`), as a rollback's 2xx
and a follow-up's outcome are, so the gate is not answered twice.

The store's failure was raised out of the gate's task and the gate left pending under
its claim: once the claim lapsed (`GATE_CLAIM_S`, 300 s; 2 s here) the answer went to
GitHub again, which refuses a second answer (422), and that refusal paged on-call with
`NOT answered` for a gate that had been answered. Counted at the fake GitHub. A write
refused is refused in the code both stores share (`SqlStore`, before its database): on
SQLite; a claim taken over, by A's restart (SQLite) or replica B (PostgreSQL): on both."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.appkeys import STORE
from agent.integrations.runs import run_was_cancelled
from agent.store import outages
from agent.store.base import StoreBusy, StoreError, StoreUnreachable
from agent.store.sql import SqlStore
from agent.windows import integrations as integrations_module
from tests.e2e.integrations_support import (  # noqa: F401 (fixtures)
    AS_KILLED,
    GATE_PATH,
    Integrated,
    integrated,
    store_yaml,
)
from tests.e2e.test_integrations_e2e import alerts_to, eventually, github_hook
from tests.e2e.test_integrations_gate_replay_e2e import eventually_async
from tests.receivers import JsonSink

pytestmark = pytest.mark.e2e


def dies_at_the_answer(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, list[str]]:
    """The first gate's answer record never returns, as a kill -9 at that instant leaves
    it (the event set then); the outcomes each record was given; the claim at 2 s."""
    answer_gate = SqlStore.answer_gate
    frozen = asyncio.Event()
    tries: list[str] = []

    async def dies_once(self: SqlStore, *args: Any) -> None:
        tries.append(args[3])
        if len(tries) == 1:
            frozen.set()
            await asyncio.Event().wait()  # A: as killed, never written
        await answer_gate(self, *args)

    monkeypatch.setattr(SqlStore, "answer_gate", dies_once)
    monkeypatch.setattr(integrations_module, "GATE_CLAIM_S", 2.0)
    return frozen, tries


@pytest.mark.timeout(60)
@pytest.mark.parametrize("refusal", [StoreUnreachable, StoreBusy], ids=["outage", "busy"])
async def test_a_gates_answer_the_store_did_not_take_at_once_is_not_sent_again(
    integrated: Integrated,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    refusal: type[StoreError],
) -> None:
    answer_gate = SqlStore.answer_gate
    tries: list[str] = []

    async def away_once(self: SqlStore, *args: Any) -> None:
        tries.append(args[2])
        if len(tries) == 1:
            raise refusal("cannot reach the store: read-only")
        await answer_gate(self, *args)

    monkeypatch.setattr(SqlStore, "answer_gate", away_once)
    monkeypatch.setattr(integrations_module, "GATE_CLAIM_S", 2.0)
    monkeypatch.setattr(outages, "HELD_RETRY_S", (0.2,))
    agent = await integrated.start(integrated.environments(staging_window="1500ms"))
    good = "b" * 40
    assert (await agent.settled((await agent.register("staging", good))["id"]))["state"] == "passed"
    rule = integrated.github.ask_gate(sha=good, run_id=8)
    status, _ = await github_hook(agent, "deployment_protection_rule", rule, "gate-kept")
    assert status == 202
    await eventually(lambda: len(integrated.github.gate_answers) == 1)
    await eventually_async(agent.app[STORE].pending_gates, [])  # stored once it answers
    await asyncio.sleep(3.0)  # past the claim's 2 s: no second answer
    assert len(integrated.github.seen(GATE_PATH)) == 1, [
        r.status for r in integrated.github.seen(GATE_PATH)
    ]
    assert [(a["run"], a["state"]) for a in integrated.github.gate_answers] == [("8", "approved")]
    assert tries == ["approved", "approved"]


@pytest.mark.timeout(90)
async def test_a_gates_answer_github_took_before_its_claimer_died_is_no_page_when_taken_over(
    integrated: Integrated,  # noqa: F811
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
    store_yaml: str | None,  # noqa: F811
) -> None:
    """GitHub took replica A's answer, and A never recorded it: its write never returns,
    as a kill -9 at that instant leaves it (no process test can wait out the 300 s claim).
    Replica B (on SQLite, A's restart) takes the lapsed claim over and answers again;
    GitHub refuses it (422: no request waits) and B paged on-call 'NOT answered' for the
    gate A had answered. A 422 to an answer under a claim taken over
    (`Store.gate_claimed_before`) is the earlier claimer's answer taken: recorded, no page."""
    frozen, tries = dies_at_the_answer(monkeypatch)
    env = integrated.environments(staging_window="1500ms")
    alerting = alerts_to(json_sink)
    store = store_yaml
    first = await integrated.start(env, alerting=alerting, store=store, owner="a", server=AS_KILLED)
    good = "c" * 40
    assert (await first.settled((await first.register("staging", good))["id"]))["state"] == "passed"
    rule = integrated.github.ask_gate(sha=good, run_id=11)
    status, _ = await github_hook(first, "deployment_protection_rule", rule, "gate-died")
    assert status == 202
    await asyncio.wait_for(frozen.wait(), 15)
    assert [(a["run"], a["state"]) for a in integrated.github.gate_answers] == [("11", "approved")]
    if store is None:  # one agent per SQLite file: B is A's restart, A stopped (its write cut)
        await first.stop()
    second = await integrated.start(env, alerting=alerting, store=store, owner="b")
    await eventually(lambda: len(tries) >= 2, within=20)  # B recorded it, past the claim
    await eventually_async(second.app[STORE].pending_gates, [])
    await asyncio.sleep(1.5)  # a page would be out by now
    assert [n.title for n in json_sink.notifications if "NOT" in n.title] == []
    assert [(a["run"], a["state"]) for a in integrated.github.gate_answers] == [("11", "approved")]
    assert [r.status for r in integrated.github.seen(GATE_PATH)] == [204, 422]


@pytest.mark.timeout(90)
async def test_a_gate_given_up_with_no_window_pages_once_across_a_kill_before_its_record(
    integrated: Integrated,  # noqa: F811
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
    store_yaml: str | None,  # noqa: F811
) -> None:
    """No staging window of the sha ended in time and GitHub refuses the rejection (404):
    A pages 'NOT answered' about the sha, then never records the answer (as a kill -9 at
    that instant leaves it). B (on SQLite, A's restart) takes the lapsed claim over, is
    refused again, and paged a second time: that page had no once-mark, where a window's
    have (`integration_failed:<key>`). Now it is claimed, with its payload, as theirs are."""
    frozen, tries = dies_at_the_answer(monkeypatch)
    env = integrated.environments(gate_timeout="1s")
    alerting = alerts_to(json_sink)
    integrated.github.fail("404", match="deployment_protection_rule")
    first = await integrated.start(
        env, alerting=alerting, store=store_yaml, owner="a", server=AS_KILLED
    )
    rule = integrated.github.ask_gate(sha="e" * 40, run_id=12)
    status, _ = await github_hook(first, "deployment_protection_rule", rule, "gate-none")
    assert status == 202
    await asyncio.wait_for(frozen.wait(), 15)
    await eventually(lambda: any("NOT" in n.title for n in json_sink.notifications))
    if store_yaml is None:  # one agent per SQLite file: B is A's restart, A stopped
        await first.stop()
    second = await integrated.start(env, alerting=alerting, store=store_yaml, owner="b")
    await eventually(lambda: len(tries) >= 2, within=20)  # B answered again, refused
    await eventually_async(second.app[STORE].pending_gates, [])
    await asyncio.sleep(1.5)  # a second page would be out by now
    paged = [n.title for n in json_sink.notifications if "NOT" in n.title]
    assert len(paged) == 1, paged
    assert len(integrated.github.seen(GATE_PATH)) == 2  # answered twice, both refused


@pytest.mark.timeout(90)
async def test_a_422_whose_run_read_a_kill_cut_still_pages_after_the_restart(
    integrated: Integrated,  # noqa: F811
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GitHub refused A's answer (422: a body it refuses, or nothing waits any more) and A
    died reading whether the run was cancelled: its read never returns, as a kill -9 at
    that instant leaves it. Its restart sent the answer again, was refused again, took
    that 422 for A's answer taken ("answered before") and paged no one: the job behind the
    rule waited for a person nobody told. The 422 is stored before the read: the restart
    reads the run, and pages, without answering again."""
    frozen = asyncio.Event()
    reads: list[str] = []

    async def dies_once(*args: Any, **kwargs: Any) -> tuple[bool, str]:
        reads.append(args[1])
        if len(reads) == 1:
            frozen.set()
            await asyncio.Event().wait()  # A: as killed, never read
        return await run_was_cancelled(*args, **kwargs)

    monkeypatch.setattr(integrations_module, "run_was_cancelled", dies_once)
    monkeypatch.setattr(integrations_module, "GATE_CLAIM_S", 2.0)
    env = integrated.environments(staging_window="1500ms")
    alerting = alerts_to(json_sink)
    integrated.github.fail("422", match="deployment_protection_rule")
    first = await integrated.start(env, alerting=alerting, owner="a", server=AS_KILLED)
    good = "d" * 40
    assert (await first.settled((await first.register("staging", good))["id"]))["state"] == "passed"
    rule = integrated.github.ask_gate(sha=good, run_id=13)
    status, _ = await github_hook(first, "deployment_protection_rule", rule, "gate-read-cut")
    assert status == 202
    await asyncio.wait_for(frozen.wait(), 15)
    await first.stop()  # one agent per SQLite file: B is A's restart
    second = await integrated.start(env, alerting=alerting, owner="b")
    await eventually_async(second.app[STORE].pending_gates, [], within=20)
    await eventually(lambda: any("NOT" in n.title for n in json_sink.notifications))
    paged = [n for n in json_sink.notifications if "NOT" in n.title]
    # before: no page ("answered before"), and the answer sent twice, refused twice
    assert len(paged) == 1, [n.title for n in paged]
    assert "HTTP 422" in paged[0].message and "its run is waiting" in paged[0].message
    assert len(integrated.github.seen(GATE_PATH)) == 1  # refused once, not sent again
    assert len(reads) == 2  # A's, cut; B's
