"""A rollback still owed when the pipeline registers a newer deploy of the environment
(the fix) is not sent again: it would roll the environment back past the fix. Counted
at the receiver; the deploy object and the alert say why, once the fix registers, not
at the next attempt's time."""

from __future__ import annotations

import asyncio
import html
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ulid import ULID

from agent.app import WATCHER
from agent.records import DeliveryAttempt
from agent.rollback.contract import rollback_intent
from agent.store.postgres import PostgresStore
from agent.windows.supervisor import UNWATCHED_S
from tests.e2e import crash
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, RunningAgent, environment
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    eventually,
    fake_github,
    fake_vercel,
    integrations,
    start_agent,
    vercel_hook,
)
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel
from tests.receivers import (
    JsonNotification,
    JsonSink,
    RollbackAttempt,
    RollbackReceiver,
    alert_titled,
)
from tests.rollback.support import BREACH, make_window

TITLE_HEAD = "[postflight] production v2.4.1: "
GIVEN_UP = TITLE_HEAD + "ROLLBACK GIVEN UP, v2.4.2 deployed since: "
REFUSED = GIVEN_UP + "1 attempt sent, not accepted"
UNANSWERED = GIVEN_UP + "1 attempt sent, its answer never came; the receiver may have acted on it"
"""The alert's title when the one attempt made before the fix was answered 503, and when
it timed out: it went out, where the title said ROLLBACK NOT SENT."""

GIVEN_UP_WITHIN_S = 5.0
"""How soon after the fix registers the old rollback reads failed: far less than the
receiver's `Retry-After` (30 s), the wait its sender was in."""


def _config(
    flip_target: FlipTarget,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    timeout: str = "2s",
) -> tuple[str, str]:
    """The environments and alerting sections: production on `flip_target`, rolling back
    to `receiver` (each attempt given up after `timeout`), alerts to `json_sink`."""
    rollback = (
        f"rollback: {{url: {receiver.url}, secret: {SECRET}, backoff: 100ms, timeout: {timeout}}}"
    )
    alerting = f"alerting:\n  channels:\n    - {{url: '{json_sink.url()}', tags: [oncall]}}\n"
    extra = rollback + "\nalerts: {tags: [oncall]}"
    return environment("production", flip_target.url, window="30s", extra=extra), alerting


async def _bad_deploy_retrying(
    agent: RunningAgent, flip_target: FlipTarget, receiver: RollbackReceiver
) -> dict[str, Any]:
    """v2.4.1, registered on `agent`, fails its verdict and its rollback meets the
    receiver's first scripted answer: the fix's pipeline is up next."""
    bad = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
    flip_target.bad = True
    await receiver.wait_for_attempts(1, within=20)
    flip_target.bad = False
    return bad


async def _given_up_for(
    agent: RunningAgent,
    bad: dict[str, Any],
    fix: dict[str, Any],
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    titled: str = REFUSED,
) -> None:
    """`bad`'s rollback ends failed within `GIVEN_UP_WITHIN_S` of `fix`'s registration,
    naming it, with one alert `titled`, saying what went out, and nothing more reached
    the receiver than the attempt it had when `fix` registered."""
    final = await agent.wait_until(
        bad["id"], lambda d: d["rollback"]["state"] != "pending", within=GIVEN_UP_WITHIN_S
    )
    alert = await alert_titled(json_sink, "ROLLBACK GIVEN UP")
    await asyncio.sleep(1.0)  # a further attempt would have come by now (backoff 100 ms)

    assert [a.idempotency_key for a in receiver.attempts] == [bad["id"]]
    assert receiver.delivered == {}
    assert final["state"] == "failed" and final["rollback"]["state"] == "failed"
    error = final["rollback"]["last_error"]
    assert fix["id"] in error and "v2.4.2" in error, error
    assert error.endswith(f"; given up after {titled.removeprefix(GIVEN_UP)}"), error
    assert alert.title == titled
    assert len([n for n in json_sink.notifications if "ROLLBACK" in n.title]) == 1
    assert await page_advice(agent, bad["id"]) == as_on_the_page(alert)
    said = (await recorded_alerts(agent, bad["id"]))["rollback_failed"]
    assert said == f"{titled.removeprefix(TITLE_HEAD)}: sent", said


async def page_advice(agent: RunningAgent, deploy_id: str) -> str | None:
    """The deploy page's advice on its rollback (`GET /deploys/{id}` over HTTP, as a
    browser fetches it), unescaped; None when it gives none."""
    page = await _page(agent, deploy_id)
    section = page[page.index('id="rollback-title"') :]
    head = '<p class="rollback-advice"><strong>'
    if head not in section:
        return None
    start = section.index(head) + len(head)
    return html.unescape(section[start : section.index("</strong>", start)])


async def page_alerts(agent: RunningAgent, deploy_id: str) -> dict[str, str]:
    """The deploy page's "Alerts sent", by event: what it says each alert was."""
    page = await _page(agent, deploy_id)
    items = re.findall(r'<li title="([^"]+)" data-result="[^"]*">([^<]*)</li>', page)
    return {event: html.unescape(words) for event, words in items}


async def recorded_alerts(
    agent: RunningAgent, deploy_id: str, within: float = 10.0
) -> dict[str, str]:
    """The page's "Alerts sent" once none is `sending` still: the sink holds an alert as
    it answers, before the agent has recorded that answer (apprise's return, a store
    write), so a page read as the sink had it said `sending` once at load 20-30."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        listed = await page_alerts(agent, deploy_id)
        if not any(words.endswith(": sending") for words in listed.values()):
            return listed
        assert loop.time() < deadline, f"alerts still sending after {within} s: {listed}"
        await asyncio.sleep(0.05)


async def _page(agent: RunningAgent, deploy_id: str) -> str:
    async with agent.http.get(f"{agent.url}/deploys/{deploy_id}", headers=agent.headers) as r:
        assert r.status == 200 and r.content_type == "text/html"
        return await r.text()


def as_on_the_page(alert: JsonNotification) -> str:
    """An alert's headline (its message's first paragraph) as the page says it: plain."""
    return alert.message.split("\n\n")[0].replace("**", "").replace("`", "")


@pytest.mark.parametrize("first", ["503:retry-after=30", "hang"], ids=["retry-after", "timeout"])
async def test_a_rollback_retrying_when_a_newer_deploy_registers_is_not_sent(
    first: str,
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    """v2.4.1's rollback met a 503 asking for 30 s (or an attempt that timed out); v2.4.2,
    the fix, registers meanwhile: no further POST reaches the receiver, and the rollback
    ends failed naming v2.4.2 within seconds, with one alert saying what went out: the
    attempt that timed out (a receiver stalled past the timeout) may have been acted on,
    where the alert said ROLLBACK NOT SENT. The 503 case waited out the 30 s with the
    rollback `pending` before giving it up."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(first,))
    agent = await start_agent(*_config(flip_target, receiver, json_sink))
    bad = await _bad_deploy_retrying(agent, flip_target, receiver)
    fix = await agent.register("production", "v2.4.2", previous_version="v2.4.1")

    titled = UNANSWERED if first == "hang" else REFUSED
    await _given_up_for(agent, bad, fix, receiver, json_sink, titled)
    assert (
        agent.metric("postflight_rollbacks_total", environment="production", result="failed") == 1
    )


async def test_a_newer_deploy_registered_on_another_replica_gives_the_rollback_up(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    pg_url: str,
) -> None:
    """Two replicas on one PostgreSQL store: the fix registers on the replica that does
    not hold the rollback, which its holder, waiting out a 30 s `Retry-After`, gives up
    within seconds all the same."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=("503:retry-after=30",))
    config = _config(flip_target, receiver, json_sink)
    replicas = {
        owner: await start_agent(*config, store=f"url: {pg_url}", owner=owner)
        for owner in ("replica-a", "replica-b")
    }
    bad = await _bad_deploy_retrying(replicas["replica-a"], flip_target, receiver)
    conn = await asyncpg.connect(pg_url)
    try:
        sql = "SELECT lease_owner FROM rollbacks WHERE window_id = $1"
        holder = await conn.fetchval(sql, bad["id"])
    finally:
        await conn.close()
    (other,) = (agent for owner, agent in replicas.items() if owner != holder)
    fix = await other.register("production", "v2.4.2", previous_version="v2.4.1")

    await _given_up_for(replicas[holder], bad, fix, receiver, json_sink)


SKEW_S = 60.0
"""How far replica-a's clock runs ahead of replica-b's and the store's."""


async def test_a_fix_registered_on_a_replica_whose_clock_is_behind_gives_the_rollback_up(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    pg_url: str,
) -> None:
    """replica-a's clock runs a minute ahead: the rollback it requests is stamped a minute
    late, and the fix, registered on replica-b after it, reads as stamped before it. The
    store's order of registrations says the fix came after (migration 20): the rollback,
    waiting out a 30 s `Retry-After`, is given up within seconds, where it was sent
    once that wait was over and accepted, rolling the fix back."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=("503:retry-after=30",))
    config = _config(flip_target, receiver, json_sink)
    store = f"url: {pg_url}"
    ahead = await start_agent(
        *config, store=store, owner="replica-a", clock=lambda: time.time() + SKEW_S
    )
    # registrations are stamped by the store's clock once a replica follows it: the deploy
    # goes live now, not a minute ahead; the rollback's request is stamped by replica-a's
    await eventually(lambda: ahead.app[WATCHER].services.pace.anchored, within=10.0)
    bad = await _bad_deploy_retrying(ahead, flip_target, receiver)
    behind = await start_agent(*config, store=store, owner="replica-b")
    fix = await behind.register("production", "v2.4.2", previous_version="v2.4.1")

    await _given_up_for(ahead, bad, fix, receiver, json_sink)


async def _left_by_a_killed_replica(pg_url: str, now: float) -> str:
    """What replica-a, killed -9 while v2.4.1's rollback waited out a 30 s `Retry-After`,
    left on the store: its one attempt answered 503, the next due in 30 s, its lease
    lasting that wait and 30 s more. Written through the store as replica-a wrote it."""
    store = PostgresStore(pg_url)
    await store.open()
    try:
        bad = make_window(
            f"dep_{ULID()}", deployed_at=now - 60, created_at=now - 60, ends_at=now + 540
        )
        await store.create_window(bad)
        intent = rollback_intent(bad, "probe-errors failed", [BREACH], now - 30)
        assert await store.finish_window(bad.id, "failed", None, now - 30, rollback=intent)
        held = await store.take_rollback(bad.id, "replica-a", now - 30, now)
        assert held is not None
        number = await store.begin_attempt(bad.id, held.fence, now - 30, now)
        assert number == 1
        held.attempts, held.last_status, held.last_error = number, 503, "HTTP 503"
        held.next_attempt_at, held.lease_until = now + 30, now + 60
        answer = DeliveryAttempt(bad.id, number, now - 30, 503, "HTTP 503", 0.01)
        assert await store.settle_rollback(held, answer)
    finally:
        await store.close()
    return bad.id


async def test_a_rollback_a_killed_replica_held_in_its_wait_is_given_up_by_the_other(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    pg_url: str,
) -> None:
    """replica-a was killed while v2.4.1's rollback waited out a 30 s `Retry-After`: its
    lease lasts that wait and a lease more, and nobody looks for a newer deploy under it.
    The fix registers on replica-b, which takes the rollback over and gives it up within
    seconds, where it read pending (no alert) until replica-a's lease lapsed a minute on;
    nothing reaches the receiver."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    bad_id = await _left_by_a_killed_replica(pg_url, time.time())
    config = _config(flip_target, receiver, json_sink)
    replica_b = await start_agent(*config, store=f"url: {pg_url}", owner="replica-b")
    fix = await replica_b.register("production", "v2.4.2", previous_version="v2.4.1")

    final = await replica_b.wait_until(
        bad_id,
        lambda d: d["rollback"]["state"] != "pending",
        within=UNWATCHED_S + GIVEN_UP_WITHIN_S,
    )
    alert = await alert_titled(json_sink, "ROLLBACK GIVEN UP")

    assert receiver.attempts == []
    assert final["state"] == "failed" and final["rollback"]["state"] == "failed"
    assert fix["id"] in final["rollback"]["last_error"], final["rollback"]
    assert alert.title == REFUSED  # replica-a's attempt, answered 503
    assert len([n for n in json_sink.notifications if "ROLLBACK" in n.title]) == 1
    # given up by the replica that took it over: its page says what the alert said
    assert await page_advice(replica_b, bad_id) == as_on_the_page(alert)


@pytest.mark.timeout(120)
def test_a_rollback_resumed_after_kill_9_is_given_up_when_the_fix_registers(
    tmp_path: Path,
) -> None:
    """`postflight run` killed -9 while v2.4.1's rollback waits out a 30 s `Retry-After`:
    the restarted agent resumes that wait, and the fix registered on it gives the
    rollback up within seconds; the receiver (its own process) got the one attempt."""
    log = tmp_path / "receiver.jsonl"
    receiver, url = crash.start_rollback_receiver(log, "503:retry-after=30")
    agent: subprocess.Popen[bytes] | None = None
    try:
        port = crash.free_port()
        config = crash.write_config(tmp_path, port, url)
        agent = crash.start_agent(config, port, tmp_path / "agent.log")
        api = f"http://127.0.0.1:{port}/v1/deploys"
        bad = crash.request_json("POST", api, {"environment": "production", "version": "v2.4.1"})
        crash.until(lambda: crash.read_attempts(log), within=30)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        agent = crash.start_agent(config, port, tmp_path / "agent.log")
        fix = crash.request_json("POST", api, {"environment": "production", "version": "v2.4.2"})

        def rollback() -> dict[str, Any]:
            rollback: dict[str, Any] = crash.request_json("GET", f"{api}/{bad['id']}")["rollback"]
            return rollback

        crash.until(lambda: rollback()["state"] != "pending", within=GIVEN_UP_WITHIN_S)
        time.sleep(1.0)  # a further attempt would have come by now (backoff 50 ms)
        final = rollback()
        sent = [a for a in crash.read_attempts(log) if a["idempotency_key"] == bad["id"]]
    finally:
        crash.end_all(agent, receiver)
    assert len(sent) == 1 and not sent[0]["accepted"], sent
    assert final["state"] == "failed" and fix["id"] in final["last_error"], final


@pytest.mark.parametrize("target", ["vercel", "github"])
async def test_a_vercel_or_github_rollback_retrying_is_not_sent_after_the_fix(
    target: str,
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    """Vercel's instant rollback (to the deployment before the bad one) or the GitHub
    rollback workflow answers 503 asking for 30 s; the fix deploys meanwhile (Vercel's
    event, or the pipeline's registration): neither is asked again, and the rollback
    ends failed naming the fix within seconds. Vercel, asked, would have put the
    deployment before the bad one in production, in place of the fix."""
    path, rollback = {
        "vercel": ("/rollback/", "{target: vercel, backoff: 50ms}"),
        "github": ("/dispatches", "{target: github, github: {workflow: rollback.yml, ref: main}}"),
    }[target]
    agent = await start_agent(
        environments(flip_target, rollback=rollback), extra=integrations(fake_github, fake_vercel)
    )
    fake = fake_vercel if target == "vercel" else fake_github
    fake.fail("unavailable", reset_in=30, times=1, match=path)
    if target == "vercel":  # production served OLD, then NEW, the bad deploy
        await vercel_hook(agent, vc.event(event_id="evt_old", deployment=vc.OLD, sha="a" * 40))
        status, opened = await vercel_hook(agent, vc.event(event_id="evt_new", deployment=vc.NEW))
        assert status == 202, opened
        bad = opened["deploy"]
    else:
        bad = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
    flip_target.bad = True
    await eventually(lambda: fake.seen(path), within=20)
    flip_target.bad = False
    if target == "vercel":
        fixed = vc.event(event_id="evt_fix", deployment="dpl_fix333", sha="d" * 40)
        status, opened = await vercel_hook(agent, fixed)
        assert status == 202, opened
        fix = opened["deploy"]
    else:
        fix = await agent.register("production", "v2.4.2", previous_version="v2.4.1")

    final = await agent.wait_until(
        bad["id"], lambda d: d["rollback"]["state"] != "pending", within=GIVEN_UP_WITHIN_S
    )
    await asyncio.sleep(1.0)  # a further attempt would have come by now (backoff 50 ms)

    assert len(fake.seen(path)) == 1
    assert fake_vercel.accepted == [] and fake_github.dispatches == []
    assert final["state"] == "failed" and final["rollback"]["state"] == "failed"
    assert fix["id"] in final["rollback"]["last_error"], final["rollback"]
    said = await page_advice(agent, bad["id"])
    assert said == (
        f"Rollback given up: {fix['version']} ({fix['id']}) was deployed since. 1 attempt sent,"
        f" not accepted. Rolling back now would undo {fix['version']}, so do not roll back by"
        f" hand: {fix['version']}'s own window judges it."
    ), said


HELD_TIMEOUT = "30s"
"""The attempt's timeout while the receiver holds it for the fix's registration: as long
as the test waits for the rollback to settle, so only the order of the registration and
the answer decides, never how fast a loaded machine registers (0.1-0.7 s measured with
eight copies beside six CPU hogs, against the 2 s the other tests give an attempt)."""


async def test_a_rollback_delivered_as_a_newer_deploy_registers_says_check_what_serves(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    """v2.4.2 registers while v2.4.1's rollback is at the receiver, which then accepts
    it: the alert says the rollback was delivered after v2.4.2 and to check what serves,
    and the deploy page, fetched over HTTP, says the same, where it said "delivered" and
    nothing more (the receiver may have rolled v2.4.2 back too)."""
    running: list[RunningAgent] = []
    fixes: list[dict[str, Any]] = []

    async def the_fix_registers(attempt: RollbackAttempt) -> None:
        if not fixes:
            fixes.append(await running[0].register("production", "v2.4.2"))

    receiver: RollbackReceiver = await rollback_receiver(SECRET, on_attempt=the_fix_registers)
    # the attempt waits on the fix's registration (an HTTP round trip to the agent, same
    # loop): with the 2 s timeout a loaded machine's slow registration could time the attempt
    # out, and the fix gave the rollback up instead (ROLLBACK GIVEN UP, never delivered)
    agent = await start_agent(*_config(flip_target, receiver, json_sink, timeout=HELD_TIMEOUT))
    running.append(agent)
    bad = await _bad_deploy_retrying(agent, flip_target, receiver)
    final = await agent.settled(bad["id"])
    alert = await alert_titled(json_sink, "rollback delivered after v2.4.2 was deployed")

    assert final["state"] == "rolled_back" and final["rollback"]["state"] == "delivered"
    assert list(receiver.delivered) == [bad["id"]]
    said = await page_advice(agent, bad["id"])
    assert said == as_on_the_page(alert)
    assert said.startswith(f"Rollback delivered after v2.4.2 ({fixes[0]['id']}) was deployed.")
    listed = (await recorded_alerts(agent, bad["id"]))["rollback_delivered"]
    assert listed == f"{alert.title.removeprefix(TITLE_HEAD)}: sent", listed


async def test_a_rollback_refused_before_a_newer_deploy_is_not_said_given_up_for_it(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    """The receiver refuses v2.4.1's rollback (a 400: failed at once, ROLLBACK FAILED,
    roll back by hand); then the pipeline ships v2.4.2. The page, fetched after, keeps the
    alert's words for the failure and no longer says to roll back by hand (it would undo
    v2.4.2), where it said the rollback was given up for v2.4.2 ("deployed since"),
    which was untrue: it failed first."""
    failed, fix, said = await _refused_then_deployed(
        start_agent, flip_target, rollback_receiver, json_sink, "v2.4.2"
    )
    assert said == (
        f"{failed}. Since then v2.4.2 ({fix['id']}) was deployed, after this rollback was"
        " requested. Rolling back now would undo v2.4.2, so do not roll back by hand:"
        " v2.4.2's own window judges it."
    ), said


async def _refused_then_deployed(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    version: str,
) -> tuple[str, dict[str, Any], str]:
    """v2.4.1's rollback refused (a 400: ROLLBACK FAILED, roll back by hand, the page
    saying as the alert does), then `version` registered: the alert's headline without
    its ": roll back by hand.", the deploy registered, and the page's advice after it.
    Nothing more reached the receiver, and "Alerts sent" still says ROLLBACK FAILED."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(400,))
    agent = await start_agent(*_config(flip_target, receiver, json_sink))
    bad = await _bad_deploy_retrying(agent, flip_target, receiver)
    await agent.settled(bad["id"])
    alert = await alert_titled(json_sink, "ROLLBACK FAILED, act now")
    assert await page_advice(agent, bad["id"]) == as_on_the_page(alert)

    deployed = await agent.register("production", version, previous_version="v2.4.1")
    said = await page_advice(agent, bad["id"])

    failed = as_on_the_page(alert)
    assert failed.endswith("(the reason says which): roll back by hand."), failed
    assert [a.status for a in receiver.attempts] == [400]
    assert (await recorded_alerts(agent, bad["id"]))["rollback_failed"] == "ROLLBACK FAILED: sent"
    return failed.removesuffix(": roll back by hand."), deployed, said or ""


async def test_a_failed_rollback_done_by_hand_says_so_on_its_page(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    """The receiver refuses v2.4.1's rollback (ROLLBACK FAILED, roll back by hand); on-call
    does so, deploying v2.4.0 again through the pipeline (registered: a new window). The
    sender rightly never counts a deploy of the version it goes back to as newer (the
    receiver's own rollback may register it); the page, fetched after, says the rollback
    was done another way, where it still said to roll back by hand."""
    failed, by_hand, said = await _refused_then_deployed(
        start_agent, flip_target, rollback_receiver, json_sink, "v2.4.0"
    )
    assert said == (
        f"{failed}. Since then v2.4.0 ({by_hand['id']}) was deployed, the version this"
        " rollback was to go back to: the rollback was done another way, and nothing is"
        " left to roll back by hand."
    ), said
