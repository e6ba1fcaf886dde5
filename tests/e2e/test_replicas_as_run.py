"""Two `postflight run` processes on one PostgreSQL, driven as a user runs them (README's
replicas paragraphs, contract §2-§4 and §8): no load balancer, the pipeline's
`postflight register` on one replica and its `--wait` on the other, the page and the
live events served by either, the rollback counted at the receiver and the alerts at a
`json://` sink, a replica killed (-9) mid-window and one stopped (SIGTERM) while its
rollback is at the receiver."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from agent.cli.render import AGENT_BACK
from tests.cli_process import awaited_cli
from tests.e2e.conftest import SECRET, TOKEN, TargetProcess, environment
from tests.e2e.crash import ROOT
from tests.e2e.test_replicas import Daemon, lease_owner, round_numbers
from tests.pg import PgCluster
from tests.receivers import JsonSink, RollbackReceiver
from tests.web.sse import events

# 120 s a test, where the default 60 s timed out the stream-cut test at load 17 (its set-up
# 20 s, its worker's PostgreSQL start; its call 42 s, three daemons' starts and a CLI's in
# it, 30 s of them), as it did the first of the shared pair's (`TestOnOneRunningPair`)
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
ENDED = ("passed", "failed", "rolled_back", "inconclusive", "cancelled", "superseded")
LEASE_S = 1.0
Replicas = Callable[[aiohttp.ClientSession, str], Awaitable[list[Daemon]]]


def config(
    pg_url: str,
    target: str,
    receiver: RollbackReceiver,
    sink: JsonSink,
    lease: str = "1s",
    stop: str = "8s",
    timeout: str = "10s",
    window: str = "8s",
) -> str:
    """`production` on `target` (its deploys watched for `window`), its rollback to
    `receiver` (each attempt's `timeout`), its alerts to `sink`; a stop (SIGTERM) given
    `stop` (`server.shutdown_timeout`)."""
    rollback = (
        f"rollback: {{url: {receiver.url}, secret: {SECRET}, backoff: 100ms, timeout: {timeout}}}"
    )
    return (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"  shutdown_timeout: {stop}\n"
        f"store:\n  url: {pg_url}\n  lease: {lease}\n"
        f"alerting:\n  channels:\n    - {{url: '{sink.url()}'}}\n"
        "environments:\n"
        + textwrap.indent(
            environment(
                "production", target, window=window, background_interval="1h", extra=rollback
            ),
            "  ",
        )
    )


async def cli(*args: str) -> tuple[int, str]:
    """`postflight <args>` as a pipeline runs it (its own process; the test's servers go
    on answering meanwhile): its exit code and what it printed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), POSTFLIGHT_TOKEN=TOKEN)
    return await awaited_cli(*args, env=env, within=90, cwd=ROOT)


async def waiter(url: str, deploy_id: str) -> asyncio.subprocess.Process:
    """`postflight register --wait` of a deploy registered already (its key), once it has
    printed its first progress line (it registered and waits)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), POSTFLIGHT_TOKEN=TOKEN)
    args = ("--env", "production", "--version", "v2", "--idempotency-key", "k", "--wait")
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent", "register", "--url", url, *args),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert deploy_id.encode() in line, line
    return proc


AWAY = "; retrying until the timeout"
"""The end of the line `register --wait` says as the agent it waits on stops answering
(`agent.cli.render.agent_away`)."""


async def printed_until(proc: asyncio.subprocess.Process, words: str, within: float = 30) -> bytes:
    """What `proc` printed up to the end of its line with `words` (`within` s at most)."""
    assert proc.stdout is not None
    printed = b""
    async with asyncio.timeout(within):
        while words.encode() not in printed:
            line = await proc.stdout.readline()
            assert line, f"exited without saying {words!r}: {printed.decode()}"
            printed += line
    return printed


async def deploy(http: aiohttp.ClientSession, daemon: Daemon, deploy_id: str) -> Any:
    async with http.get(f"{daemon.url}/v1/deploys/{deploy_id}") as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def until(
    http: aiohttp.ClientSession, daemon: Daemon, deploy_id: str, done: Callable[[Any], bool]
) -> Any:
    for _ in range(400):  # 40 s at most
        found = await deploy(http, daemon, deploy_id)
        if done(found):
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting: {found}")


def settled(d: Any) -> bool:
    return d["state"] in ENDED and (d["rollback"] or {}).get("state") != "pending"


def now() -> float:
    """The loop's time: when a test saw its deploy settled (`each_once`)."""
    return asyncio.get_running_loop().time()


async def each_once(
    receiver: RollbackReceiver, sink: JsonSink, deploy_id: str, settled_at: float | None = None
) -> None:
    """Twice the lease and a second after the test saw the deploy settled (`settled_at`, the
    loop's time; by default now: a second sender has had its chance): one rollback acted on
    at the receiver, every request with its key and one body, and each alert once. What
    the test did since it saw it settled (a CLI's run, a restart) counts toward the wait,
    where each test waited the 3 s after it all."""
    loop = asyncio.get_running_loop()
    since = loop.time() if settled_at is None else settled_at
    await asyncio.sleep(max(0.0, since + 2 * LEASE_S + 1 - loop.time()))
    accepted = Counter(a.idempotency_key for a in receiver.attempts if a.accepted)
    assert accepted == {deploy_id: 1}, receiver.attempts
    assert {a.body for a in receiver.attempts} == {receiver.delivered[deploy_id]}
    titles = Counter(n.title for n in sink.notifications)
    assert titles and max(titles.values()) == 1, titles
    assert any(t.endswith("rollback delivered") for t in titles), titles


async def register(http: aiohttp.ClientSession, daemon: Daemon) -> str:
    """Register `v2` on `production` through `daemon`'s API: its deploy id."""
    async with http.post(
        f"{daemon.url}/v1/deploys", json={"environment": "production", "version": "v2"}
    ) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])


@pytest.fixture
async def receiver() -> AsyncIterator[RollbackReceiver]:
    """A rollback receiver answering every attempt 200, stopped after the test."""
    started = RollbackReceiver(SECRET)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    """`await replicas(http, config)`: replica-a and replica-b, each a `postflight run`
    of `config`, ready; killed after the test."""
    started: list[Daemon] = []

    async def start(http: aiohttp.ClientSession, text: str) -> list[Daemon]:
        started.extend(Daemon(tmp_path, name, text, f"replica-{name}") for name in "ab")
        await asyncio.gather(*(daemon.ready(http) for daemon in started[-2:]))
        return started[-2:]

    yield start
    for daemon in started:
        daemon.kill()


def last_message(sink: JsonSink) -> str:
    return sink.notifications[-1].message


async def at_rest(daemon: Daemon, pg_url: str) -> None:
    """Every deploy still watching cancelled through `daemon`, and its lease handed back,
    as no rollback or alert is under way: the state a test of the shared pair leaves."""
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        async with http.get(f"{daemon.url}/v1/deploys?state=watching") as r:
            assert r.status == 200, await r.text()
            watching = [d["id"] for d in (await r.json())["items"]]
        for deploy_id in watching:
            async with http.post(f"{daemon.url}/v1/deploys/{deploy_id}/cancel") as r:
                assert r.status == 200, await r.text()
    conn = await asyncpg.connect(pg_url)
    try:
        for _ in range(300):  # 30 s at most
            busy = await conn.fetchval(
                "SELECT (SELECT count(*) FROM windows WHERE lease_owner IS NOT NULL)"
                " + (SELECT count(*) FROM rollbacks WHERE state = 'pending')"
                " + (SELECT count(*) FROM alerts WHERE result = 'claimed')"
            )
            if not busy:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{busy} leases, rollbacks or alerts still under way")
    finally:
        await conn.close()


async def test_the_replica_holding_a_window_killed_mid_window_the_other_judges_it_once(
    replicas: Replicas,
    target_process: TargetProcess,
    pg_url: str,
    json_sink: JsonSink,
    receiver: RollbackReceiver,
) -> None:
    """kill -9 of the replica watching a window, before the deploy regresses: the other
    takes the window over, judges it failed and rolls it back, once; no verdict lost."""
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        a, b = await replicas(http, config(pg_url, target_process.url, receiver, json_sink))
        deploy_id = await register(http, a)
        await until(http, b, deploy_id, lambda d: d["rounds"] >= 2)
        holder = await lease_owner(pg_url, deploy_id)
        victim, survivor = (a, b) if holder == "replica-a" else (b, a)
        victim.kill()
        await target_process.go_bad()
        final = await until(http, survivor, deploy_id, settled)
        assert final["state"] == "rolled_back", final
        assert final["verdict"], final
        await each_once(receiver, json_sink, deploy_id)
        assert json_sink.notifications


async def test_a_replica_stopped_while_its_rollback_is_at_the_receiver_sends_it_once(
    replicas: Replicas, target_process: TargetProcess, pg_url: str, json_sink: JsonSink
) -> None:
    """SIGTERM of the replica whose rollback the receiver is working on (answering in
    1.5 s): the stop lets the delivery finish, exit 0, and the other replica, which reads
    its outcome from the store, sends nothing; the alerts go out once between them."""
    receiver = RollbackReceiver(SECRET, ["200:delay=1.5"])
    await receiver.start()
    await target_process.go_bad()
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            a, b = await replicas(http, config(pg_url, target_process.url, receiver, json_sink))
            deploy_id = await register(http, a)
            await receiver.wait_for_attempts(1, within=30)
            sender = await rollback_sender(pg_url, deploy_id)
            stopped, other = (a, b) if sender == "replica-a" else (b, a)
            stopped.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(stopped.proc.wait, 15)
            assert code == 0, stopped.said()
            final = await until(http, other, deploy_id, settled)
            assert final["state"] == "rolled_back", final
            await each_once(receiver, json_sink, deploy_id)
            assert len(receiver.attempts) == 1, receiver.attempts
    finally:
        await receiver.stop()


async def rollback_sender(pg_url: str, deploy_id: str) -> Any:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval(
            "SELECT lease_owner FROM rollbacks WHERE window_id = $1", deploy_id
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
async def test_a_replica_stopped_past_its_grace_mid_rollback_leaves_it_to_the_other(
    replicas: Replicas, target_process: TargetProcess, pg_url: str, json_sink: JsonSink, how: int
) -> None:
    """The receiver holds the rollback past the stop's grace and the attempt's timeout (or
    the sender is killed -9 while it waits): the sender never hears an answer; the other
    replica takes the rollback over once its lease lapses and sends it again, same key and
    body, acted on once; each alert goes out once between them and a stream on the other
    replica, opened before, follows it to the end. (A 3 s stop and a 3 s timeout: the
    other takes it over a lease past the attempt's timeout and waits that timeout and 3 s
    more before sending again, where the default 8 s and 10 s made this test 30 s long, and
    a 4 s timeout 2 s longer. The signal comes 0.15 s after the attempt at load 12, far
    within the timeout, which a sender that heard its timeout first would have retried
    itself: the other's delivery, asserted, says it did not.)"""
    receiver = RollbackReceiver(SECRET, ["200:delay=6"])
    await receiver.start()
    await target_process.go_bad()
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            text = config(pg_url, target_process.url, receiver, json_sink, stop="3s", timeout="3s")
            a, b = await replicas(http, text)
            deploy_id = await register(http, a)
            await receiver.wait_for_attempts(1, within=30)
            sender = await rollback_sender(pg_url, deploy_id)
            stopped, other = (a, b) if sender == "replica-a" else (b, a)
            url = f"{other.url}/v1/deploys/{deploy_id}/events"
            async with http.get(url) as response:
                assert response.status == 200
                stream = events(response)
                assert (await anext(stream)).name == "state"
                stopped.proc.send_signal(how)
                code = await asyncio.to_thread(stopped.proc.wait, 15)
                assert code == (0 if how == signal.SIGTERM else -signal.SIGKILL), stopped.said()
                states = [e.data["state"] async for e in stream if e.name == "state"]
            assert states and states[-1] == "rolled_back", states
            await each_once(receiver, json_sink, deploy_id)
            assert len(receiver.attempts) == 2, receiver.attempts
            assert not receiver.attempts[0].accepted
            assert f"{deploy_id} delivered on attempt 2" in other.said(), other.said()
    finally:
        await receiver.stop()


async def test_a_stream_cut_by_its_replicas_kill_goes_on_from_the_other_by_its_last_id(
    replicas: Replicas,
    target_process: TargetProcess,
    pg_url: str,
    json_sink: JsonSink,
    receiver: RollbackReceiver,
) -> None:
    """An event stream on the replica watching the window, which is killed (-9): the
    client reconnects to the other with `Last-Event-ID`, as an EventSource would behind an
    address that moved, and goes on from the store: every round once, in order, to the
    end; and a `register --wait` on the killed replica rides out its restart.

    The window outlasts what comes before the kill, the `--wait` process's start among it
    (up to 30 s, `waiter`), where at load 14 the default 8 s window had passed before the
    stream on the victim was opened (1 run in 6): it had no round to stream, and the
    reconnect got 204. Its length costs nothing: the deploy fails on the survivor at once."""
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        text = config(pg_url, target_process.url, receiver, json_sink, window="45s")
        a, b = await replicas(http, text)
        async with http.post(
            f"{a.url}/v1/deploys",
            json={"environment": "production", "version": "v2"},
            headers={"Idempotency-Key": "k"},
        ) as r:
            assert r.status == 201, await r.text()
            deploy_id = (await r.json())["id"]
        await until(http, a, deploy_id, lambda d: d["rounds"] >= 1)
        holder = await lease_owner(pg_url, deploy_id)
        victim, survivor = (a, b) if holder == "replica-a" else (b, a)
        waiting = await waiter(victim.url, deploy_id)
        rounds: list[int] = []
        last_id = None
        async with http.get(f"{victim.url}/v1/deploys/{deploy_id}/events") as response:
            async for event in events(response):
                last_id = event.id
                if event.name == "round":
                    rounds.append(event.data["round"])
                if len(rounds) >= 2:
                    break
        assert len(rounds) == 2, f"the window ended before its rounds were streamed: {last_id}"
        victim.kill()
        await target_process.go_bad()
        headers = {"Last-Event-ID": last_id or ""}
        url = f"{survivor.url}/v1/deploys/{deploy_id}/events"
        async with http.get(url, headers=headers) as response:
            assert response.status == 200
            states = []
            async for event in events(response):
                last_id = event.id
                if event.name == "round":
                    rounds.append(event.data["round"])
                elif event.name == "state":
                    states.append(event.data["state"])
        assert rounds == list(range(rounds[0], rounds[0] + len(rounds))), rounds
        assert states[-1] == "rolled_back", states
        await until(http, survivor, deploy_id, settled)
        settled_at = now()
        # every event of the ended window had: 204 on either replica (EventSource stops)
        async with http.get(url, headers={"Last-Event-ID": last_id or ""}) as response:
            assert response.status == 204, await response.text()
        # the `--wait` on the victim has met its absence (it says so) before the restart,
        # where a fixed 2 s was waited for it to
        printed = await printed_until(waiting, AWAY)
        again = Daemon(victim.config.parent, "again", victim.config.read_text(), holder)
        again.url = victim.url  # its configuration is the killed one's: its address
        try:
            await again.ready(http)
            out, _ = await asyncio.wait_for(waiting.communicate(), 60)
            printed += out
            assert waiting.returncode == 1, printed.decode()
            assert AGENT_BACK.encode() in out, printed.decode()
            ended = f"{again.url}/v1/deploys/{deploy_id}/events"
            async with http.get(ended, headers={"Last-Event-ID": last_id or ""}) as r:
                assert r.status == 204, await r.text()
        finally:
            again.kill()
        await each_once(receiver, json_sink, deploy_id, settled_at)


async def test_a_replica_stopped_while_its_alert_is_at_a_slow_channel_sends_it_once(
    replicas: Replicas,
    target_process: TargetProcess,
    pg_url: str,
    json_sink: JsonSink,
    receiver: RollbackReceiver,
) -> None:
    """SIGTERM of the replica watching a failing window while its first alert is at a
    channel answering in 1.5 s: the stop lets it finish, the other replica takes the
    window's remaining work over; each alert once at the sink, the rollback once."""
    json_sink.answer_after(1.5)
    await target_process.go_bad()
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        a, b = await replicas(http, config(pg_url, target_process.url, receiver, json_sink))
        deploy_id = await register(http, a)
        await json_sink.wait_arrived(1, within=30)
        holder = await lease_owner(pg_url, deploy_id) or await rollback_sender(pg_url, deploy_id)
        assert holder in ("replica-a", "replica-b")
        stopped, other = (a, b) if holder == "replica-a" else (b, a)
        stopped.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(stopped.proc.wait, 15) == 0, stopped.said()
        final = await until(http, other, deploy_id, settled)
        settled_at = now()
        assert final["state"] == "rolled_back", final
        # the slow channel's answers: every request that came in answered (counted), where
        # a fixed 3 s was waited whatever was in flight
        await json_sink._wait_until(
            lambda: len(json_sink.notifications) >= json_sink.arrived, within=30
        )
        await each_once(receiver, json_sink, deploy_id, settled_at)


async def test_a_good_deploy_whose_replica_was_killed_passes_once_on_the_other(
    replicas: Replicas,
    target_process: TargetProcess,
    pg_url: str,
    json_sink: JsonSink,
    receiver: RollbackReceiver,
) -> None:
    """kill -9 of the replica watching a healthy deploy: the other takes the window over
    and passes it, its `passed` alert once, no rollback."""
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        a, b = await replicas(http, config(pg_url, target_process.url, receiver, json_sink))
        deploy_id = await register(http, a)
        await until(http, b, deploy_id, lambda d: d["rounds"] >= 2)
        holder = await lease_owner(pg_url, deploy_id)
        victim, survivor = (a, b) if holder == "replica-a" else (b, a)
        victim.kill()
        final = await until(http, survivor, deploy_id, settled)
        assert (final["state"], final["rollback"]) == ("passed", None), final
        await asyncio.sleep(2 * LEASE_S + 1)
        titles = Counter(n.title for n in json_sink.notifications)
        assert titles == {"[postflight] production v2: deploy passed": 1}, titles
        assert not receiver.attempts


async def test_alert_retries_owed_by_a_killed_replica_are_sent_once_by_the_other(
    replicas: Replicas,
    target_process: TargetProcess,
    pg_url: str,
    json_sink: JsonSink,
    receiver: RollbackReceiver,
) -> None:
    """The channel fails the window's alerts (500) and the replica that sent them is
    killed (-9) with their retries owed; the channel comes back: the other replica sends
    each retry when due, once, and the alerts after them once, in the order raised (a
    later alert's catch-up refused too left the earlier one its retry)."""
    json_sink.fail_always()
    await target_process.go_bad()
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        a, b = await replicas(http, config(pg_url, target_process.url, receiver, json_sink))
        deploy_id = await register(http, a)
        final = await until(http, b, deploy_id, settled)
        assert final["state"] == "rolled_back", final
        await asyncio.sleep(0.5)
        failed = json_sink.arrived
        assert failed >= 1
        # the window's alerts are its watcher's: the one whose log says they failed
        (victim,) = [d for d in (a, b) if "alert" in d.said() and "failed" in d.said()]
        victim.kill()
        json_sink.come_back()
        await json_sink._wait_until(
            lambda: (
                any(n.title.endswith("rollback delivered") for n in json_sink.notifications)
                and len(json_sink.notifications) >= 3
            ),
            within=40,
        )
        await asyncio.sleep(6.0)  # a second retry round, had one been owed twice
        titles = Counter(n.title for n in json_sink.notifications)
        assert max(titles.values()) == 1, titles
        assert len(titles) >= 3, titles
        seen = [n.title for n in json_sink.notifications]
        raised = ["breach", "rollback requested", "rollback delivered"]
        order = [next(i for i, word in enumerate(raised) if word in t) for t in seen]
        assert order == sorted(order) and set(order) == {0, 1, 2}, seen  # in the order raised
        late = [n.title for n in json_sink.notifications if "on retry" in n.message]
        assert late, "no retry sent"
        accepted = Counter(x.idempotency_key for x in receiver.attempts if x.accepted)
        assert accepted == {deploy_id: 1}, receiver.attempts


async def test_a_replica_stopped_mid_window_hands_it_to_the_other_at_once(
    replicas: Replicas,
    target_process: TargetProcess,
    pg_url: str,
    json_sink: JsonSink,
    receiver: RollbackReceiver,
) -> None:
    """SIGTERM of the replica watching a window, on the default 30 s lease: it hands the
    lease back, so the other watches the window from its next sweep, every slot, and
    passes it; waiting the lease out would have left slots unwatched (inconclusive)."""
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        text = config(pg_url, target_process.url, receiver, json_sink, lease="30s")
        a, b = await replicas(http, text)
        deploy_id = await register(http, a)
        await until(http, b, deploy_id, lambda d: d["rounds"] >= 2)
        holder = await lease_owner(pg_url, deploy_id)
        stopped, other = (a, b) if holder == "replica-a" else (b, a)
        stopped.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(stopped.proc.wait, 15) == 0, stopped.said()
        final = await until(http, other, deploy_id, settled)
        assert final["state"] == "passed", (final["state"], final["verdict"])
        numbers = await round_numbers(pg_url, deploy_id)
        assert numbers == list(range(1, len(numbers) + 1)), numbers
        # the verdict is stored before its alert is sent: none had come yet at load 15
        await json_sink.wait_for(1, within=10)
        titles = Counter(n.title for n in json_sink.notifications)
        assert titles == {"[postflight] production v2: deploy passed": 1}, titles


async def test_a_replica_stopped_in_its_rollbacks_backoff_hands_it_to_the_running_other(
    replicas: Replicas, target_process: TargetProcess, pg_url: str, json_sink: JsonSink
) -> None:
    """The receiver asks for a 6 s wait (503, Retry-After), longer than a stop lasts
    (`server.shutdown_timeout`, 3 s here), and the sending replica is stopped (SIGTERM) in
    it, on a 60 s lease: the stop cuts the wait and hands the rollback back; the other
    replica, running, takes it over and sends it once the wait is over, once, where
    waiting out the lease would have taken a minute. (A wait shorter than the stop is
    left alike, at once: tests/e2e/test_stop_in_rollback_wait.py.)"""
    receiver = RollbackReceiver(SECRET, ["503:retry-after=6"])
    await receiver.start()
    await target_process.go_bad()
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            text = config(pg_url, target_process.url, receiver, json_sink, lease="60s", stop="3s")
            a, b = await replicas(http, text)
            deploy_id = await register(http, a)
            await receiver.wait_for_attempts(1, within=30)
            await until(http, a, deploy_id, lambda d: (d["rollback"] or {}).get("attempts") == 1)
            sender = await rollback_sender(pg_url, deploy_id)
            stopped, other = (a, b) if sender == "replica-a" else (b, a)
            stopped.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(stopped.proc.wait, 15) == 0, stopped.said()
            final = await until(http, other, deploy_id, settled)  # 40 s at most: < lease
            assert "delivered on attempt 2" in other.said(), other.said()
            assert final["state"] == "rolled_back", final
            assert [x.accepted for x in receiver.attempts] == [False, True], receiver.attempts
            assert await rollback_sender(pg_url, deploy_id) in (None, other_id(other, a))
            await asyncio.sleep(1.0)
            titles = Counter(n.title for n in json_sink.notifications)
            assert titles and max(titles.values()) == 1, titles
    finally:
        await receiver.stop()


def other_id(daemon: Daemon, a: Daemon) -> str:
    return "replica-a" if daemon is a else "replica-b"


@pytest.fixture(scope="class")
def shared_target() -> Iterator[TargetProcess]:
    target = TargetProcess()
    yield target
    target.stop()


@pytest_asyncio.fixture(scope="class", loop_scope="class")
async def shared_sink() -> AsyncIterator[JsonSink]:
    sink = JsonSink()
    await sink.start()
    yield sink
    await sink.stop()


@pytest_asyncio.fixture(scope="class", loop_scope="class")
async def shared_receiver() -> AsyncIterator[RollbackReceiver]:
    started = RollbackReceiver(SECRET)
    await started.start()
    yield started
    await started.stop()


@pytest_asyncio.fixture(scope="class", loop_scope="class")
async def shared_pg_url(pg_cluster: PgCluster) -> str:
    return await pg_cluster.create_database()


@pytest.fixture(scope="class")
def shared_pair(
    shared_target: TargetProcess, shared_sink: JsonSink, shared_receiver: RollbackReceiver
) -> Iterator[list[Daemon]]:
    """The running pair (empty until a test's `replicas` starts it), killed before the
    servers its configuration names are stopped."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


@pytest.mark.xdist_group("replicas-pair")
@pytest.mark.asyncio(loop_scope="class")
class TestOnOneRunningPair:
    """The tests that stop no replica share one pair of `postflight run` (and the
    PostgreSQL, target, receiver and sink its configuration names), where each started
    its own two processes; after each test its windows still open are cancelled and their
    leases waited out, and what the target, the receiver and the sink saw is forgotten.
    One worker runs them all (`xdist_group`): the pair is started once, by whichever test
    comes first, in its own time (120 s: at load 20 the worker's PostgreSQL took 23 s to
    start and the first test 37 s, the pair's start in it)."""

    @pytest.fixture
    def target_process(self, shared_target: TargetProcess) -> TargetProcess:
        return shared_target

    @pytest.fixture
    def json_sink(self, shared_sink: JsonSink) -> JsonSink:
        return shared_sink

    @pytest.fixture
    def receiver(self, shared_receiver: RollbackReceiver) -> RollbackReceiver:
        return shared_receiver

    @pytest.fixture
    def pg_url(self, shared_pg_url: str) -> str:
        return shared_pg_url

    @pytest_asyncio.fixture(loop_scope="class")
    async def replicas(
        self,
        shared_pair: list[Daemon],
        tmp_path_factory: pytest.TempPathFactory,
        target_process: TargetProcess,
        pg_url: str,
        json_sink: JsonSink,
        receiver: RollbackReceiver,
    ) -> AsyncIterator[Replicas]:
        """`await replicas(http, config)`: the pair, running `config` (started by the first
        test; each test's `config` is the same text), and after the test, back to rest."""

        pair = shared_pair

        async def running(http: aiohttp.ClientSession, text: str) -> list[Daemon]:
            if not pair:
                workdir = tmp_path_factory.mktemp("pair")
                pair.extend(Daemon(workdir, name, text, f"replica-{name}") for name in "ab")
                await asyncio.gather(*(daemon.ready(http) for daemon in pair))
            for daemon in pair:
                assert daemon.config.read_text() == text.replace("{port}", str(daemon.port))
                assert daemon.proc.poll() is None, daemon.said()
            return pair

        yield running
        if pair:
            await at_rest(pair[0], pg_url)
        await target_process.reset()
        receiver.attempts.clear()
        receiver.delivered.clear()
        json_sink.notifications.clear()
        json_sink.arrived = 0

    async def test_a_pipeline_registers_on_one_replica_and_waits_on_the_other(
        self,
        replicas: Replicas,
        target_process: TargetProcess,
        pg_url: str,
        json_sink: JsonSink,
        receiver: RollbackReceiver,
    ) -> None:
        """`postflight register` on replica A, the same registration (its Idempotency-Key)
        with `--wait` on replica B: B replays it (the same deploy) and waits out its verdict,
        exit 1 once rolled back. The page and the event stream of either replica show it;
        the rollback reached the receiver once, and each alert the sink once."""
        await target_process.go_bad()
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            a, b = await replicas(http, config(pg_url, target_process.url, receiver, json_sink))
            common: tuple[str, ...] = ("--env", "production", "--version", "v2", "--previous", "v1")
            common += ("--idempotency-key", "ci-run-42")
            code, out = await cli("register", "--url", a.url, *common, "--quiet")
            assert code == 0, out
            deploy_id = out.strip()
            code, out = await cli("register", "--url", b.url, *common, "--wait")
            assert code == 1, out
            assert deploy_id in out and "rolled back" in out.replace("_", " "), out
            await until(http, b, deploy_id, settled)
            settled_at = now()
            code, out = await cli("status", "--url", b.url, deploy_id, "--json")
            assert code == 0, out
            assert '"rolled_back"' in out, out

            for daemon in (a, b):
                async with http.get(f"{daemon.url}/deploys/{deploy_id}") as r:
                    assert r.status == 200, await r.text()
                    page = await r.text()
                assert "v2" in page and deploy_id in page
                url = f"{daemon.url}/v1/deploys/{deploy_id}/events"
                async with http.get(url) as response:
                    assert response.status == 200
                    states = [e.data["state"] async for e in events(response) if e.name == "state"]
                assert states and states[-1] == "rolled_back", (daemon.url, states)
            await each_once(receiver, json_sink, deploy_id, settled_at)

            # an alert's link (signed, read-only) opens the page on either replica
            (link,) = set(
                re.findall(r"http://[^\s)>\]]+\?view=[^\s)>\]]+", last_message(json_sink))
            )
            for daemon in (a, b):
                page = daemon.url + link[link.index("/deploys/") :]
                async with aiohttp.ClientSession() as anonymous, anonymous.get(page) as r:
                    assert r.status == 200, (page, await r.text())

    async def test_writes_on_either_replica_act_on_the_window_the_other_watches(
        self,
        replicas: Replicas,
        target_process: TargetProcess,
        pg_url: str,
        json_sink: JsonSink,
        receiver: RollbackReceiver,
    ) -> None:
        """One registration sent to both replicas at once (a pipeline's retry to the other
        address) is one deploy; a newer deploy registered on the replica not watching the
        window supersedes it and it fires nothing more; a cancel on the other replica ends
        the window its holder watches."""
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            a, b = await replicas(http, config(pg_url, target_process.url, receiver, json_sink))

            async def post(daemon: Daemon, version: str, key: str | None = None) -> Any:
                headers = {"Idempotency-Key": key} if key else {}
                body = {"environment": "production", "version": version}
                async with http.post(f"{daemon.url}/v1/deploys", json=body, headers=headers) as r:
                    return r.status, await r.json()

            both = await asyncio.gather(post(a, "v2", "same"), post(b, "v2", "same"))
            assert sorted(status for status, _ in both) == [200, 201], both
            assert both[0][1]["id"] == both[1][1]["id"], both
            first = both[0][1]["id"]
            for daemon in (a, b):  # the same key with another body, on either: 409
                status, problem = await post(daemon, "v9", "same")
                assert status == 409, problem
            await until(http, a, first, lambda d: d["rounds"] >= 2)
            holder = await lease_owner(pg_url, first)
            watcher, other = (a, b) if holder == "replica-a" else (b, a)

            status, second = await post(other, "v3")
            assert status == 201, second
            assert (await deploy(http, watcher, first))["state"] == "superseded"
            rounds = (await deploy(http, other, first))["rounds"]
            await until(http, watcher, second["id"], lambda d: d["rounds"] >= 2)
            assert (await deploy(http, other, first))["rounds"] == rounds, "watched on"

            holder = await lease_owner(pg_url, second["id"])
            watcher, other = (a, b) if holder == "replica-a" else (b, a)
            async with http.post(f"{other.url}/v1/deploys/{second['id']}/cancel") as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["state"] == "cancelled"
            await asyncio.sleep(2 * LEASE_S + 1)
            ended = await deploy(http, watcher, second["id"])
            assert ended["state"] == "cancelled", ended
            rounds = ended["rounds"]
            await asyncio.sleep(1.0)
            assert (await deploy(http, other, second["id"]))["rounds"] == rounds, "watched on"
            assert await lease_owner(pg_url, second["id"]) is None
            assert not receiver.attempts and not json_sink.notifications, json_sink.notifications

    async def test_a_rollback_asked_on_the_replica_not_watching_is_sent_once(
        self,
        replicas: Replicas,
        target_process: TargetProcess,
        pg_url: str,
        json_sink: JsonSink,
        receiver: RollbackReceiver,
    ) -> None:
        """`postflight rollback ID` on the replica that does not watch the window, which then
        regresses on the other: one rollback at the receiver, the window ends rolled back,
        and a second ask (on either replica) is refused, exit 1."""
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            a, b = await replicas(http, config(pg_url, target_process.url, receiver, json_sink))
            deploy_id = await register(http, a)
            await until(http, a, deploy_id, lambda d: d["rounds"] >= 1)
            holder = await lease_owner(pg_url, deploy_id)
            watcher, other = (a, b) if holder == "replica-a" else (b, a)
            code, out = await cli("rollback", "--url", other.url, deploy_id, "--reason", "oops")
            assert code == 0, out
            await target_process.go_bad()
            final = await until(http, watcher, deploy_id, settled)
            settled_at = now()
            assert final["state"] == "rolled_back", final
            for daemon in (watcher, other):
                code, out = await cli("rollback", "--url", daemon.url, deploy_id, "--reason", "x")
                assert code == 1, out
            await each_once(receiver, json_sink, deploy_id, settled_at)
            assert len(receiver.attempts) == 1, receiver.attempts

    async def test_two_deploys_registered_at_once_on_two_replicas_leave_one_watching(
        self,
        replicas: Replicas,
        target_process: TargetProcess,
        pg_url: str,
        json_sink: JsonSink,
        receiver: RollbackReceiver,
    ) -> None:
        """Two pipelines register a deploy of one environment at the same instant, one on
        each replica: one supersedes the other, never two windows watching it; one request
        sent to both at once (its Idempotency-Key) is one deploy, 201 and 200."""
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            a, b = await replicas(http, config(pg_url, target_process.url, receiver, json_sink))

            async def post(daemon: Daemon, version: str) -> Any:
                body = {"environment": "production", "version": version}
                async with http.post(f"{daemon.url}/v1/deploys", json=body) as r:
                    assert r.status == 201, await r.text()
                    return await r.json()

            for n in range(8):
                await asyncio.gather(post(a, f"v{n}a"), post(b, f"v{n}b"))
                async with http.get(f"{a.url}/v1/deploys?state=watching") as r:
                    watching = [d["version"] for d in (await r.json())["items"]]
                assert len(watching) == 1, (n, watching)

            async def send(daemon: Daemon, n: int) -> tuple[int, str]:
                body = {"environment": "production", "version": f"w{n}"}
                headers = {"Idempotency-Key": f"run-{n}"}
                async with http.post(f"{daemon.url}/v1/deploys", json=body, headers=headers) as r:
                    assert r.status in (200, 201), await r.text()
                    return r.status, (await r.json())["id"]

            for n in range(8):  # one pipeline's request sent to both: one deploy
                answers = await asyncio.gather(send(a, n), send(b, n))
                assert sorted(status for status, _ in answers) == [200, 201], answers
                assert len({deploy_id for _, deploy_id in answers}) == 1, answers
