"""A GitHub deployment status GitHub took is recorded even when the store does not answer
at that moment: held until the store takes it (`held_until_stored`), as a rollback's 2xx,
a follow-up's and a gate's answer are, so it is not posted twice.

The record was a task of its own, one write: a store that did not answer it left the
status claimed with no outcome, and the next start (or the other replica) took the claim
over once it lapsed (`_status_lease`, 135 s with the defaults; 1 s here) and posted the
verdict's status again. Counted at the fake GitHub. A write refused is refused in the code
both stores share (`SqlStore`, before its database): on SQLite; a claim taken over, by the
next start (SQLite) or by the other replica still running (PostgreSQL): on both."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.appkeys import STORE
from agent.store import outages
from agent.store.base import StoreBusy, StoreError, StoreUnreachable
from agent.store.sql import SqlStore
from agent.windows.integrations import Integrations
from tests.e2e.conftest import RunningAgent
from tests.e2e.integrations_support import (  # noqa: F401 (fixtures)
    AS_KILLED,
    Integrated,
    integrated,
    store_yaml,
)
from tests.e2e.test_integrations_e2e import commit_status_staging, eventually, github_hook
from tests.e2e.test_integrations_gate_replay_e2e import eventually_async
from tests.fakes import github as gh

pytestmark = pytest.mark.e2e


def dies_at_the_record(monkeypatch: pytest.MonkeyPatch, key: str) -> asyncio.Event:
    """The first record of `key` never returns, as a kill at that instant leaves it (the
    event set then); the status's lease at 1 s."""
    record_alert = SqlStore.record_alert
    frozen = asyncio.Event()

    async def dies_once(self: SqlStore, window_id: str, alert: str, *args: Any) -> None:
        if alert == key and not frozen.is_set():
            frozen.set()
            await asyncio.Event().wait()  # the sender: as killed, never written
        await record_alert(self, window_id, alert, *args)

    monkeypatch.setattr(SqlStore, "record_alert", dies_once)
    monkeypatch.setattr(Integrations, "_status_lease", lambda self: 1.0)
    return frozen


async def taken_over(
    integrated: Integrated,  # noqa: F811
    env: str,
    first: RunningAgent,
    store_yaml: str | None,  # noqa: F811
    frozen: asyncio.Event,
    deploy: str,
    key: str,
) -> None:
    """Once `first` froze at `key`'s record: B (A's restart on SQLite, the other replica
    on PostgreSQL) takes the claim over and records `key` sent; a second for more."""
    await asyncio.wait_for(frozen.wait(), 20)
    if store_yaml is None:  # one agent per SQLite file: B is A's restart
        await first.stop()
    second = await integrated.start(env, store=store_yaml, owner="b")

    async def recorded() -> str | None:
        return (await second.app[STORE].alert_events(deploy)).get(key)

    await eventually_async(recorded, "sent")
    await asyncio.sleep(1.0)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("refusal", [StoreUnreachable, StoreBusy], ids=["outage", "busy"])
async def test_a_verdicts_status_the_store_did_not_take_at_once_is_not_posted_again(
    integrated: Integrated,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    refusal: type[StoreError],
) -> None:
    record_alert = SqlStore.record_alert
    tries: list[str] = []

    async def away_once(self: SqlStore, window_id: str, key: str, *args: Any) -> None:
        if key == "github:success":
            tries.append(args[0])
            if len(tries) == 1:
                raise refusal("the store refused the write for now")
        await record_alert(self, window_id, key, *args)

    monkeypatch.setattr(SqlStore, "record_alert", away_once)
    monkeypatch.setattr(Integrations, "_status_lease", lambda self: 1.0)
    monkeypatch.setattr(outages, "HELD_RETRY_S", (0.2,))
    env = integrated.environments(window="1500ms")
    agent = await integrated.start(env)
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    await eventually(lambda: len(tries) >= 1 and len(integrated.github.statuses) >= 2)
    await asyncio.sleep(1.0)
    await agent.stop()
    # the next start on the same store, past the status's lease: nothing owed
    await integrated.start(env)
    await asyncio.sleep(3.0)
    assert [s["state"] for s in integrated.github.statuses] == ["in_progress", "success"]
    assert tries == ["sent", "sent"]


@pytest.mark.timeout(90)
async def test_a_verdicts_status_github_took_before_its_sender_died_is_not_posted_again(
    integrated: Integrated,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    store_yaml: str | None,  # noqa: F811
) -> None:
    """GitHub took the verdict's status and its sender never recorded it (the record never
    returns, as a kill at that instant leaves it): the next start (SQLite) or the other
    replica (PostgreSQL), taking the lapsed claim over (the lease at 1 s), posted it
    again. A claim taken over first looks for the status among the deployment's (GitHub's
    list of them): found, it is recorded sent, not posted twice."""
    frozen = dies_at_the_record(monkeypatch, "github:success")
    env = integrated.environments(window="1500ms")
    first = await integrated.start(env, store=store_yaml, owner="a", server=AS_KILLED)
    status, opened = await github_hook(first, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    deploy = opened["deploy"]["id"]
    await taken_over(integrated, env, first, store_yaml, frozen, deploy, "github:success")
    assert [s["state"] for s in integrated.github.statuses] == ["in_progress", "success"]


@pytest.mark.timeout(90)
async def test_a_commit_status_github_took_before_its_sender_died_is_not_posted_again(
    integrated: Integrated,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    store_yaml: str | None,  # noqa: F811
) -> None:
    """As a deployment status above, for a commit status (`commit_status: true`): the
    taken-over claim first looks among the commit's statuses (GitHub's list of them for
    the SHA: same state, the environment's context, a target_url of the deploy), where it
    posted a second `success` on the commit."""
    frozen = dies_at_the_record(monkeypatch, "github:commit:success")
    env = commit_status_staging(integrated.target, window="1500ms")
    first = await integrated.start(env, store=store_yaml, owner="a", server=AS_KILLED)
    deploy = (await first.register("staging", "v8", commit=gh.COMMIT))["id"]
    await taken_over(integrated, env, first, store_yaml, frozen, deploy, "github:commit:success")
    assert [s["state"] for s in integrated.github.commit_statuses] == ["pending", "success"]
