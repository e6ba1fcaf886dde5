"""Several agents on one PostgreSQL store share the windows through leases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from agent.store.sql import LOCK_REPLICA
from agent.web.reader import RECHECK_S
from agent.windows.probing import BACKGROUND_LEASE_MIN_S
from tests.e2e.conftest import (
    SECRET,
    TOKEN,
    AgentFactory,
    FlipTarget,
    LocalTarget,
    TargetProcess,
    environment,
)
from tests.e2e.crash import ROOT, free_port
from tests.pg import PgCluster
from tests.pg_proxy import Proxy
from tests.receivers import RollbackReceiver
from tests.web.sse import events


async def lease_owner(pg_url: str, deploy_id: str) -> Any:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval("SELECT lease_owner FROM windows WHERE id = $1", deploy_id)
    finally:
        await conn.close()


async def lease_holder(pg_url: str, deploy_id: str) -> Any:
    """Who holds the window's lease, waiting (10 s at most) while no one does: a watch that
    lost its 1 s lease to a busy host (a suite run at load 19) hands it back after a pause,
    and the window is claimed again."""
    for _ in range(100):
        holder = await lease_owner(pg_url, deploy_id)
        if holder is not None:
            return holder
        await asyncio.sleep(0.1)
    raise AssertionError(f"no one held {deploy_id}'s lease for 10 s")


async def round_numbers(pg_url: str, deploy_id: str) -> list[int]:
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT number FROM rounds WHERE window_id = $1 ORDER BY number", deploy_id
        )
        return [r["number"] for r in rows]
    finally:
        await conn.close()


async def test_one_replica_watches_a_window_and_another_takes_over_when_it_stops(
    start_agent: AgentFactory, flip_target: FlipTarget, pg_url: str
) -> None:
    store = f"url: {pg_url}\n  lease: 1s"
    env = environment(
        "production",
        flip_target.url,
        window="6s",
        background_interval="1h",
        probes=3,
        rules=["{name: probe-errors, source: checks, metric: error_rate, max: 0.5}"],
    )
    first = await start_agent(env, store=store, owner="replica-a")
    second = await start_agent(env, store=store, owner="replica-b")
    deploy = await first.register("production", "v-ha")
    await first.wait_until(deploy["id"], lambda d: d["rounds"] >= 2, within=10)
    holder = await lease_owner(pg_url, deploy["id"])
    assert holder in ("replica-a", "replica-b")
    stopping, staying = (first, second) if holder == "replica-a" else (second, first)
    labels = {"environment": "production", "rule": "probe-errors", "outcome": "pass"}
    assert stopping.metric("postflight_rule_evaluations_total", **labels) >= 2
    assert staying.metric("postflight_rule_evaluations_total", **labels) == 0, (
        "two replicas watched the same window"
    )
    await stopping.stop()
    before = (await staying.get(deploy["id"]))["rounds"]
    final = await staying.settled(deploy["id"], within=20)
    assert final["state"] == "passed"
    assert final["rounds"] > before
    assert staying.metric("postflight_rule_evaluations_total", **labels) >= 1, (
        "the other replica did not take the window over"
    )
    numbers = await round_numbers(pg_url, deploy["id"])
    assert numbers == list(range(1, len(numbers) + 1)), "rounds skipped or watched twice"
    assert await lease_owner(pg_url, deploy["id"]) is None  # released when it ended


async def test_a_live_stream_on_another_replica_hears_each_round_as_it_is_stored(
    start_agent: AgentFactory, flip_target: FlipTarget, pg_url: str
) -> None:
    """The replica watching the window tells the others over PostgreSQL (LISTEN/NOTIFY):
    a stream on one of them sends each round at once, not at its next re-read."""
    store = f"url: {pg_url}"
    env = environment(
        "production", flip_target.url, window="8s", background_interval="1h", probes=3
    )
    first = await start_agent(env, store=store, owner="replica-a")
    second = await start_agent(env, store=store, owner="replica-b")
    deploy = await first.register("production", "v-live")
    await first.wait_until(deploy["id"], lambda d: d["rounds"] >= 1, within=10)
    holder = await lease_owner(pg_url, deploy["id"])
    other = second if holder == "replica-a" else first
    url = f"{other.url}/v1/deploys/{deploy['id']}/events"
    async with other.http.get(url, headers=other.headers) as response:
        stream = events(response)
        assert (await anext(stream)).name == "state"
        heard: list[int] = []
        while len(heard) < 3:  # rounds come every 300 ms; the re-read is every 5 s
            event = await asyncio.wait_for(anext(stream), RECHECK_S / 2)
            if event.name == "round":
                heard.append(event.data["round"])
    assert heard == list(range(heard[0], heard[0] + 3)), heard
    watcher = first if other is second else second
    labels = {"environment": "production", "rule": "probe-errors", "outcome": "pass"}
    assert other.metric("postflight_rule_evaluations_total", **labels) == 0, (
        "the streaming replica watched the window itself"
    )
    assert watcher.metric("postflight_rule_evaluations_total", **labels) >= 1


class ReplicaTarget(LocalTarget):
    """Counts the probes it is sent by the replica that sent them (each replica's check
    sends its own name in `X-Replica`)."""

    def __init__(self) -> None:
        super().__init__()
        self.probes: Counter[str] = Counter()

    async def health(self, request: web.Request) -> web.Response:
        self.probes[request.headers.get("X-Replica", "?")] += 1
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)

    async def wait_for(self, done: Callable[[], bool], within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not done():
            assert loop.time() < deadline, f"gave up waiting; probes so far: {self.probes}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def replica_target() -> AsyncIterator[ReplicaTarget]:
    target = ReplicaTarget()
    await target.start()
    yield target
    await target.stop()


async def test_replicas_probe_an_environment_between_windows_once_not_once_each(
    start_agent: AgentFactory, replica_target: ReplicaTarget, pg_url: str
) -> None:
    """Counted at the target, by replica: a second replica on the store sends no background
    probe while the first holds the environment (each environment's are leased to one
    replica; before, each replica probed it, so a load check's runs doubled), and when the
    holder stops the other takes them over at once, not when its lease would have lapsed.
    (It compared the arrival rates of 3 s spans, which a machine's load changes too.)"""
    store = f"url: {pg_url}"
    probes = replica_target.probes

    def env(replica: str) -> str:
        text = environment("production", replica_target.url, background_interval="200ms", probes=5)
        check = "timeout: 1s}"
        assert check in text
        return text.replace(check, f"timeout: 1s, headers: {{X-Replica: {replica}}}}}")

    first = await start_agent(env("replica-a"), store=store, owner="replica-a")
    await replica_target.wait_for(lambda: probes["replica-a"] >= 10, within=10)
    second = await start_agent(env("replica-b"), store=store, owner="replica-b")
    # 5 more runs of the first: the second, on the same event loop, had its first
    # background slot within one interval (200 ms) of its start and 4 more since
    seen = probes["replica-a"]
    await replica_target.wait_for(lambda: probes["replica-a"] >= seen + 25, within=15)
    assert probes["replica-b"] == 0, probes  # each probing: the second's runs too
    await first.stop()  # a clean stop gives its lease up: the other goes on at once
    stopped = probes["replica-a"]
    # at its next slot; a lease left to lapse would take BACKGROUND_LEASE_MIN_S (10 s)
    await replica_target.wait_for(
        lambda: probes["replica-b"] >= 10, within=BACKGROUND_LEASE_MIN_S / 2
    )
    assert probes["replica-a"] == stopped, probes
    await second.stop()


async def test_a_second_agent_on_one_host_takes_the_next_free_replica_id(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two agents on one host, neither given POSTFLIGHT_REPLICA_ID, were both named by the
    hostname: each took the other's leases as its own, so both watched a window (and could
    both send its rollback); then the second was refused at start. It takes the next free
    id, `<hostname>-2`, saying so; each restarted while the other runs takes its own id
    again. An id named by POSTFLIGHT_REPLICA_ID is refused when a live agent holds it,
    saying who holds it and what to set."""
    from agent.store.postgres import ReplicaIdInUse

    host = socket.gethostname()
    store = f"url: {pg_url}\n  lease: 1s"
    env = environment("production", flip_target.url, window="6s", background_interval="1h")
    monkeypatch.delenv("POSTFLIGHT_REPLICA_ID", raising=False)
    caplog.set_level(logging.INFO, logger="postflight")
    first = await start_agent(env, store=store)  # no owner: the hostname, as by default
    assert (
        f"replica id {host} (the hostname; another agent on this host takes the next free"
        f" id, {host}-2, unless POSTFLIGHT_REPLICA_ID names each)" in caplog.messages
    ), caplog.messages
    caplog.clear()
    second = await start_agent(env, store=store)
    said = (
        f"replica id {host}-2: the hostname {host} is held by another live agent on the"
        " store, so this agent took the next free id (name each agent on one host with"
        " POSTFLIGHT_REPLICA_ID)"
    )
    assert [r.levelname for r in caplog.records if r.getMessage() == said] == ["WARNING"]
    deploy = await second.register("production", "v-second")
    await second.wait_until(deploy["id"], lambda d: d["rounds"] >= 1, within=10)
    assert await lease_owner(pg_url, deploy["id"]) in (host, f"{host}-2")
    monkeypatch.setenv("POSTFLIGHT_REPLICA_ID", host)
    with pytest.raises(ReplicaIdInUse) as refused:
        await start_agent(env, store=store)
    said = str(refused.value)
    assert f"replica id {host!r} is held by another live agent" in said
    assert f"postflight {host} pid {os.getpid()}" in said  # the holder
    assert "POSTFLIGHT_REPLICA_ID" in said
    monkeypatch.delenv("POSTFLIGHT_REPLICA_ID")
    await second.stop()
    caplog.clear()
    await start_agent(env, store=store)  # the second's restart: its own id again
    assert f"replica id {host}-2" in caplog.text, caplog.text
    await first.stop()
    caplog.clear()
    await start_agent(env, store=store)  # the first's restart, the second running
    assert f"replica id {host} (the hostname" in caplog.text, caplog.text


async def test_a_second_agent_on_one_sqlite_store_is_refused_at_start(
    start_agent: AgentFactory, flip_target: FlipTarget, tmp_path: Path
) -> None:
    """A second `postflight run` on the same SQLite file (a config copied with another
    port) was named as the first, by the hostname, and took the first's live windows over
    as its own ("round N resumed after the window went unwatched for 0.9s …"): both
    watched them. It is refused at start, naming the holder; once the first has stopped,
    an agent on the file (its restart) starts."""
    from agent.store.sqlite import StoreInUse

    store = f"url: sqlite:///{tmp_path / 'one.db'}"
    env = environment("production", flip_target.url, window="6s", background_interval="1h")
    first = await start_agent(env, store=store)
    deploy = await first.register("production", "v-one")
    with pytest.raises(StoreInUse) as refused:
        await start_agent(env, store=store)
    said = str(refused.value)
    assert f"the SQLite store {tmp_path / 'one.db'} is in use by another agent" in said
    assert f"({socket.gethostname()} pid {os.getpid()})" in said
    await first.stop()
    restarted = await start_agent(env, store=store)
    assert (await restarted.get(deploy["id"]))["state"] == "watching"


async def replica_id_holder(pg_url: str) -> Any:
    """The pid of the session holding a replica id's lock, None when none holds one."""
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval(
            "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.classid = $1::bigint AND l.database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())",
            LOCK_REPLICA,
        )
    finally:
        await conn.close()


async def test_a_replica_id_whose_session_the_store_cut_is_held_again(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store restart or failover cuts the session holding an agent's replica id: the
    id was free from then on, and a second agent under it started. The agent takes it
    again once the store answers, so a twin is still refused."""
    from agent.store import postgres
    from agent.store.postgres import ReplicaIdInUse

    monkeypatch.setattr(postgres, "REPLICA_LOOK_S", 0.1)
    store = f"url: {pg_url}\n  lease: 1s"
    env = environment("production", flip_target.url, window="6s", background_interval="1h")
    await start_agent(env, store=store, owner="replica-a")
    first = await replica_id_holder(pg_url)
    assert first is not None
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await conn.close()
    for _ in range(150):  # 15 s at most
        again = await replica_id_holder(pg_url)
        if again not in (None, first):
            break
        await asyncio.sleep(0.1)
    assert again not in (None, first), "the replica id was not held again"
    with pytest.raises(ReplicaIdInUse):
        await start_agent(env, store=store, owner="replica-a")


def cpu_waited_s(pid: int) -> float:
    """How long process `pid`'s main thread has been ready to run but kept waiting for a
    CPU, by the kernel's count (`run_delay`); 0 where the kernel does not say (or the
    process is gone)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class Daemon:
    """`postflight run` as its own process, named by POSTFLIGHT_REPLICA_ID only when given
    `replica_id` (else, as on a host by default, by the hostname)."""

    def __init__(self, workdir: Path, name: str, config: str, replica_id: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / f"{name}.yaml"
        self.config.write_text(config.replace("{port}", str(self.port)))
        self.log = workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY", "NEW_RELIC"))}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("POSTFLIGHT_REPLICA_ID", None)
        if replica_id is not None:
            env["POSTFLIGHT_REPLICA_ID"] = replica_id
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.config)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=out,
            )

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    async def ready(self, http: aiohttp.ClientSession, within: float = 30.0) -> None:
        """Wait until /readyz answers 200: `within` seconds, and as long again as the
        machine kept the daemon's main thread waiting for a CPU meanwhile: at load 16-17 a
        start took 7-10 s, 6.4-9.3 s of it waiting for a CPU (its own 0.8 s of CPU), and at
        load 20 a pair's start was not ready within 30 s (1 run in 10)."""
        deadline = asyncio.get_running_loop().time() + within
        waited = cpu_waited_s(self.proc.pid)
        while asyncio.get_running_loop().time() < deadline + cpu_waited_s(self.proc.pid) - waited:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.said()}"
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{self.url}/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise AssertionError(f"not ready within {within} s:\n{self.said()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@contextlib.contextmanager
def running(workdir: Path, name: str, config: str) -> Iterator[Daemon]:
    """A `Daemon` (no replica id) started and ready, killed on leaving: a module-scoped
    fixture's daemon, waited for outside the tests' event loops."""
    started = Daemon(workdir, name, config, None)
    try:

        async def ready() -> None:
            async with aiohttp.ClientSession() as http:
                await started.ready(http)

        asyncio.run(ready())
        yield started
    finally:
        started.kill()


@pytest.fixture
async def daemons(tmp_path: Path) -> AsyncIterator[Callable[[str, str, str | None], Daemon]]:
    started: list[Daemon] = []

    def start(name: str, config: str, replica_id: str | None) -> Daemon:
        started.append(Daemon(tmp_path, name, config, replica_id))
        return started[-1]

    yield start
    for daemon in started:
        daemon.kill()


async def test_two_daemons_on_one_host_sharing_postgresql_each_take_their_own_id(
    daemons: Callable[[str, str, str | None], Daemon], target_process: TargetProcess, pg_url: str
) -> None:
    """Two `postflight run` on one host and one PostgreSQL, neither given
    POSTFLIGHT_REPLICA_ID, as the example config invites: the second exited 2 (the
    hostname, its id, was held by the first). Both start under ids of their own, a bad
    deploy is rolled back once and a good one not at all (counted at the receiver), and
    the other takes over the window of one killed (-9)."""
    host = socket.gethostname()
    receiver = RollbackReceiver(SECRET)
    await receiver.start()
    rollback = f"rollback: {{url: {receiver.url}, secret: {SECRET}, backoff: 100ms}}"
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every probe fails
    config = (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: {pg_url}\n  lease: 1s\n"
        "environments:\n"
        + textwrap.indent(
            environment("bad", dead, window="10s", background_interval="1h", extra=rollback)
            + environment(
                "good", target_process.url, window="3s", background_interval="1h", extra=rollback
            )
            + environment("long", target_process.url, window="60s", background_interval="1h"),
            "  ",
        )
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            first = daemons("first", config, None)
            await first.ready(http)
            second = daemons("second", config, None)
            await second.ready(http)  # it exited 2: the hostname was held
            assert f"replica id {host} (the hostname" in first.said()
            said = f"WARNING postflight: replica id {host}-2: the hostname {host} is held"
            assert said in second.said()

            async def register(daemon: Daemon, environment: str) -> str:
                body = {"environment": environment, "version": f"v-{environment}"}
                async with http.post(f"{daemon.url}/v1/deploys", json=body) as r:
                    assert r.status == 201, await r.text()
                    deploy_id: str = (await r.json())["id"]
                    return deploy_id

            async def state(daemon: Daemon, deploy_id: str) -> dict[str, Any]:
                async with http.get(f"{daemon.url}/v1/deploys/{deploy_id}") as r:
                    assert r.status == 200, await r.text()
                    found: dict[str, Any] = await r.json()
                    return found

            async def until(daemon: Daemon, deploy_id: str, done: Callable[[Any], bool]) -> Any:
                for _ in range(300):  # 30 s at most
                    found = await state(daemon, deploy_id)
                    if done(found):
                        return found
                    await asyncio.sleep(0.1)
                raise AssertionError(f"gave up waiting: {found}")

            bad = await register(first, "bad")
            good = await register(second, "good")
            ended = ("passed", "failed", "rolled_back", "inconclusive", "cancelled")

            def settled(d: Any) -> bool:
                # a failed verdict reads `failed` while its rollback is pending (a busy
                # machine's CI run read it there), `rolled_back` once delivered
                return d["state"] in ended and (d["rollback"] or {}).get("state") != "pending"

            assert (await until(second, bad, settled))["state"] == "rolled_back"
            assert (await until(first, good, settled))["state"] == "passed"
            await asyncio.sleep(2.0)  # twice the lease: a second sender has had its chance
            accepted = Counter(a.idempotency_key for a in receiver.attempts if a.accepted)
            assert accepted == {bad: 1}, receiver.attempts

            long = await register(first, "long")
            await until(first, long, lambda d: d["rounds"] >= 2)
            holder = await lease_holder(pg_url, long)
            victim, survivor = (first, second) if holder == host else (second, first)
            assert holder == (host if victim is first else f"{host}-2")
            victim.kill()
            rounds = (await state(survivor, long))["rounds"]
            await until(survivor, long, lambda d: d["rounds"] >= rounds + 3)
            taken = f"{host}-2" if victim is first else host
            assert await lease_holder(pg_url, long) == taken
            numbers = await round_numbers(pg_url, long)
            assert numbers == list(range(1, len(numbers) + 1)), "rounds skipped or twice"
    finally:
        await receiver.stop()


async def test_a_daemon_named_as_a_live_one_by_postflight_replica_id_is_refused(
    daemons: Callable[[str, str, str | None], Daemon], pg_url: str
) -> None:
    """POSTFLIGHT_REPLICA_ID names each replica: one named as a live one is a
    configuration to fix, refused at start (exit 2), not renamed."""
    config = (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: {pg_url}\n"
        "environments:\n"
        + textwrap.indent(environment("production", f"http://127.0.0.1:{free_port()}"), "  ")
    )
    async with aiohttp.ClientSession() as http:
        first = daemons("first", config, "web-1")
        await first.ready(http)
        second = daemons("second", config, "web-1")
        assert await asyncio.to_thread(second.proc.wait, 30) == 2, second.said()
    assert "replica id 'web-1' is held by another live agent" in second.said()
    assert first.proc.poll() is None


async def test_a_daemon_restarted_at_once_after_a_kill_takes_its_id_from_its_dead_session(
    daemons: Callable[[str, str, str | None], Daemon], pg_cluster: PgCluster, pg_url: str
) -> None:
    """A supervisor restarts a killed agent within a second, and the server may not have
    heard of the old client's end yet (a lost FIN: here a proxy that keeps the server's
    side open), its session still holding the id: the restart under the same
    POSTFLIGHT_REPLICA_ID was refused, exit 2, naming its dead predecessor's pid as
    another live agent. It ends that session and starts; a live agent under the id is
    still refused (the test above)."""
    proxy = Proxy(pg_cluster.port, keeps_server_side=True)
    await proxy.start()
    config = (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: {proxy.url(pg_url)}\n"
        "environments:\n"
        + textwrap.indent(environment("production", f"http://127.0.0.1:{free_port()}"), "  ")
    )
    try:
        async with aiohttp.ClientSession() as http:
            first = daemons("first", config, "web-1")
            await first.ready(http)
            first.kill()
            second = daemons("second", config, "web-1")
            await second.ready(http)
        said = second.said()
        assert f"held by this host's agent pid {first.proc.pid}, which is gone" in said, said
        assert "held by another live agent" not in said
    finally:
        await proxy.stop()
