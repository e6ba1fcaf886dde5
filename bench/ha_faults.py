"""Replicas on one PostgreSQL under fault kinds `bench/ha_chaos.py` lacks, at random
instants, with the rollbacks and the alerts counted at their receivers.

    python bench/ha_faults.py [--runs 3] [--duration 45] [--seed 1] [--replicas 3]
        [--faults kill,pause,pg_restart,pg_readonly,clock_step (also: term, pg_cut)]
        [--answers ok,5xx,slow,drop,late (also: kill_during, kill_after)]
        [--rollback-timeout 2] [--pause LOW-HIGH]
        [--sink-delay S] [--keep DIR] [--json]

Each run: `--replicas` agents (tests/e2e/chaos.py's processes and config, plus an
apprise `json://` alert channel), 10 deploys (5 regressed). A fault every 3-7 s, of a
kind drawn from `--faults`: kill -9 (restarted 0.5-3 s later); SIGTERM (restarted
0.5-3 s later); SIGSTOP past the lease (lease + 0.5-4 s), then SIGCONT; PostgreSQL
stopped 1-6 s and started again; every session on the run's database cut
(`pg_terminate_backend`, as tests/store/ cuts);
PostgreSQL read-only 1-6 s (`default_transaction_read_only`, reloaded into every
session); a replica's wall clock stepped by ±(lease + 1 to 4 × lease + 5) s for 2-8 s
(`bench/clock_offset.py`: no faketime here). The rollback receiver answers each request
one of `--answers` at random: `ok` 200; `5xx` 503; `slow` 200 only after the attempt's
timeout (the sender has gone); `drop` reads the body and drops the connection; `late`
200 after 0.7 × the timeout; `kill_during` kill -9 of the replica holding the rollback's
lease once the body is read, before any answer (if none is up to kill, or once the
faults are over: `ok`); `kill_after` 200 written out, then that kill (the gap between
the 2xx and its record).

Counted at the receivers, never from the agents' bookkeeping:
- `heard_twice`: a 2xx answered to a connected sender for a key already answered 2xx
  to one, the previous 2xx's sender not killed -9 since: a rollback delivered twice, what
  contract §3 forbids ("at most one rollback is requested per deploy");
- `resent_after_kill`: the same after a kill -9 of the sender of the previous 2xx (by
  `kill_after`, a `kill` fault, another key's `kill_during`…), between that request's
  arrival and this one's (the gap no webhook closes: the contract's "an unfinished
  delivery resumes after a restart", same key and body). A request's sender is the
  process owning its socket as it arrives (/proc), the kills the bench's own: neither is
  the agents' bookkeeping;
- `lost`: a regressed deploy whose rollback the store holds and that no sender heard a
  2xx for; `not_decided`: one with no rollback at all (its window passed or was
  inconclusive: rounds lost to the faults, a judging matter);
- `good_requested`, `unknown_keys`, `bodies_per_key_max`: requests for a deploy that
  passed, keys that are no deploy's id, and distinct bodies under one key (each must be
  1: every attempt carries the same body);
- `acted_twice`: keys the receiver took (read the body and did not answer 5xx) more
  than once: what a receiver that does not dedupe would roll back twice (`slow` and
  `drop` make these unavoidable: the sender cannot know);
- alerts: notifications at the sink with the same title (one deploy, one event) more
  than once: `alert_duplicates` a repeat whose previous copy's sender (the process owning
  its socket as it arrived, from /proc) was not killed -9 between that arrival and the
  repeat's; `alerts_resent_after_kill` one whose was (the README's "it repeats one on a
  channel only if the agent died between that channel accepting it and the agent
  recording so"). Arrival and kill times are the sink's and the bench's, not the agents'.
- `ended_short`: a regressed deploy whose window ended `passed` or `inconclusive` on
  fewer rounds than its `failure_limit` (rounds lost to the faults: each kill -9 or
  SIGSTOP of its holder passes over a lease's slots; or a clock stepped past its end),
  where the threshold policy cannot fail it: a judging matter, counted apart from
  `unrecorded` (a rollback lost) and from the goal below. Such a window ends
  `inconclusive` since its unwatched slots are missing evidence (agent/windows/
  unwatched.py); this count once took only `passed` ones, and called the others
  `unrecorded`.

Goals: heard_twice 0, lost 0, good_requested 0, one body a key, alert_duplicates 0, every
regressed deploy not `ended_short` has its rollback heard 2xx once (plus its resends after
a kill), `delivered` and its window `rolled_back` (unrecorded 0), nothing stuck. A run
directory (`--keep`) holds each replica's log and config, the alerts and the rollback
requests, for a run that missed a goal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from aiohttp import web

from bench.processes import on_a_cluster
from tests.e2e.chaos import UNANSWERED, Chaos, Plan, Replica, SteppedReplica
from tests.pg import PgCluster
from tests.receivers import JsonSink

FAULTS = ("kill", "pause", "pg_restart", "pg_readonly", "clock_step")
ANSWERS = ("ok", "5xx", "slow", "drop", "late")
"""The defaults, as the README's figures were measured; `term`, `pg_cut`, `kill_during`
and `kill_after` are asked for by name (`--faults kill,term,pg_cut,pg_restart --answers
kill_during,kill_after,ok,5xx,slow,drop`)."""


class KillLoggedReplica(SteppedReplica):
    """A replica whose every kill -9 (a fault, the receiver's, a SIGTERM past its wait) is
    logged with its time and the process killed: the alert sink's repeats are judged
    against them."""

    kills: list[tuple[float, int, str]] | None = None
    """(time.time(), pid, name) of each kill -9; set by the run."""

    def kill(self) -> None:
        proc = self.proc
        live = proc is not None and proc.poll() is None
        super().kill()
        if live and proc is not None and self.kills is not None:
            self.kills.append((time.time(), proc.pid, self.name))


def socket_owner(client_port: int, server_port: int, pids: dict[int, str]) -> str | None:
    """`name:pid` of the process (among `pids`) owning the 127.0.0.1 connection from
    `client_port` to `server_port`: its inode in /proc/net/tcp, then the process's fds."""
    inode = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":"), fields[2].split(":")
            if int(local[1], 16) == client_port and int(remote[1], 16) == server_port:
                inode = fields[9]
                break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid, name in pids.items():
        fd_dir = Path(f"/proc/{pid}/fd")
        with contextlib.suppress(OSError):
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(fd_dir / fd) == target:
                        return f"{name}:{pid}"
    return None


DEAD_SENDER_S = 1.0
"""A request whose sender owns no socket as it arrives: a replica killed this close to
the arrival was its sender (the kill is logged once the process is gone)."""


def repeats(
    arrivals: list[tuple[str, float, str | None]], kills: list[tuple[float, int, str]]
) -> tuple[list[str], list[str]]:
    """(true duplicates, resends after a kill) among `arrivals` (key, time, sender
    `name:pid`) taken by their receiver: each repeat of a key, in arrival order, is a
    resend when the previous one's sender was killed -9 after it arrived and before this
    one did; otherwise a duplicate. A sender unknown is one dead as its request arrived
    (its socket orphaned, owned by no process): a replica killed within `DEAD_SENDER_S`
    of that arrival, before the repeat's, makes the repeat a resend. Each is named
    `key (sender time, sender time)`."""
    by_key: dict[str, list[tuple[float, str | None]]] = {}
    for key, at, sender in sorted(arrivals, key=lambda a: a[1]):
        by_key.setdefault(key, []).append((at, sender))
    duplicates: list[str] = []
    resent: list[str] = []
    for key, copies in by_key.items():
        for (at, sender), (again, resender) in itertools.pairwise(copies):
            if sender:
                pid = int(sender.rsplit(":", 1)[1])
                killed = any(p == pid and at < t < again for t, p, _ in kills)
            else:
                killed = any(abs(t - at) <= DEAD_SENDER_S and t < again for t, _, _ in kills)
            (resent if killed else duplicates).append(
                f"{key} ({sender} {at:.2f}, {resender} {again:.2f})"
            )
    return duplicates, resent


class FaultyReceiver:
    """The rollback webhook, answering each request one of `answers` at random."""

    def __init__(self, rng: random.Random, timeout_s: float, answers: list[str]) -> None:
        self.rng = rng
        self.timeout_s = timeout_s
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        self.heard: Counter[str] = Counter()
        self.acted: Counter[str] = Counter()
        self.bodies: dict[str, set[str]] = {}
        """Key → digests of the bodies heard under it (the contract: one body a key)."""
        self.sender_of: Callable[[web.Request], str | None] | None = None
        """Names a request's sender as it arrives (`name:pid`, set by the run)."""
        self.kill_sender: Callable[[str], Awaitable[str | None]] | None = None
        """Set by the run: kill -9 the replica holding `key`'s rollback (its name, or None)."""
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/rollback", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/rollback"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "?")
        digest = hashlib.sha256(body).hexdigest()[:16]
        self.bodies.setdefault(key, set()).add(digest)
        answer = self.rng.choice(self.answers)
        record = {"key": key, "answer": answer, "at": time.time(), "heard": False}
        record["sender"] = self.sender_of(request) if self.sender_of else None
        record["body"] = digest
        self.requests.append(record)
        if answer == "5xx":
            return web.Response(status=503)
        self.acted[key] += 1
        if answer == "kill_during" and self.kill_sender is not None:
            record["killed"] = await self.kill_sender(key)  # body read, no answer yet
            if record["killed"]:
                return web.Response(status=200)  # to a dead sender
        if answer == "kill_after" and self.kill_sender is not None:
            response = web.json_response({"status": "accepted"})
            await response.prepare(request)
            await response.write_eof()
            self._heard(key, record)
            record["killed"] = await self.kill_sender(key)  # 2xx out, maybe not recorded
            return response
        if answer == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=200)  # written to nobody
        if answer == "slow":
            await asyncio.sleep(self.timeout_s + 0.5)
        elif answer == "late":
            await asyncio.sleep(0.7 * self.timeout_s)
        if request.transport is None or request.transport.is_closing():
            return web.Response(status=200)  # nobody hears it
        self._heard(key, record)
        return web.json_response({"status": "accepted"})

    def _heard(self, key: str, record: dict[str, Any]) -> None:
        record["heard"] = True
        self.heard[key] += 1


class FaultChaos(Chaos):
    """tests/e2e/chaos.py's run with an alert channel and the faulty receiver."""

    replica_type = KillLoggedReplica

    def __init__(
        self, plan: Plan, pg_url: str, workdir: Path, receiver: FaultyReceiver, sink: JsonSink
    ) -> None:
        super().__init__(plan, pg_url, workdir)
        self.faulty = receiver
        self.sink = sink
        self.closing = False
        self.faults_over = False
        self.kills: list[tuple[float, int, str]] = []

    async def _start(self) -> Chaos:
        # the parent spawns its own receiver: start it, then point the config at ours
        self.receiver_url_override = self.faulty.url
        self.faulty.kill_sender = self.kill_sender
        self.sink.sender_of = self.faulty.sender_of = self._sender
        started = await super()._start()
        for replica in self.replicas:
            assert isinstance(replica, KillLoggedReplica)
            replica.kills = self.kills
        return started

    def _sender(self, request: web.Request) -> str | None:
        """The replica process that sent this request (an alert, a rollback), by its
        socket: truth from outside the agents."""
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        local = transport.get_extra_info("sockname") if transport else None
        pids = {r.proc.pid: r.name for r in self.replicas if r.proc and r.proc.poll() is None}
        return socket_owner(peer[1], local[1], pids) if peer and local else None

    async def __aexit__(self, *exc: object) -> None:
        self.closing = True  # the receiver kills no more: no restart after the replicas' end
        await super().__aexit__(*exc)

    async def _restart_later(self, replica: Replica, down_s: float) -> None:
        """Restarted unless started meanwhile: by `settle`, or by another fault's restart
        (a `kill_after` during a SIGTERM), where a second process ran under its name."""
        await asyncio.sleep(down_s)
        for _ in range(3):
            if self.closing or (replica.proc is not None and replica.proc.poll() is None):
                return
            try:
                await replica.start()
            except RuntimeError as exc:  # its store connection cut as it started (pg_cut)
                self.log(f"{replica.name} did not start: {str(exc).splitlines()[-1][:200]}")
                await asyncio.sleep(1.0)
                continue
            self.log(f"restarted {replica.name}")
            return

    async def kill_sender(self, key: str) -> str | None:
        """kill -9 the replica holding `key`'s rollback lease (restarted 0.5-3 s later);
        only while the faults run: settling, a receiver that kills on a third of its
        requests kept a rollback pending past the settle time, making progress."""
        if self.closing or self.faults_over:
            return None
        with contextlib.suppress(*UNANSWERED):
            rows = await self.monitor.fetch(
                "SELECT lease_owner FROM rollbacks WHERE window_id = $1", key
            )
            owner = rows[0]["lease_owner"] if rows else None
            live = [r for r in self.replicas if r.up]
            victim = next((r for r in live if r.name == owner), None)
            if victim is not None:  # the last one up too: its restart resumes
                self.log(f"receiver: {key} taken, kill -9 of its sender {owner}")
                self.kill(victim, self.rng.uniform(0.5, 3.0))
                return victim.name
        return None

    async def term(self, replica: Replica, down_s: float) -> None:
        """SIGTERM (a graceful stop, as a rolling restart), restarted after `down_s`."""
        held, sending = self.monitor.held_by(replica.name), self.monitor.sending(replica.name)
        self.log(f"SIGTERM {replica.name} (held {len(held)}, sending {len(sending)})")
        replica.ready = False  # not `up`: the receiver's kills leave it alone
        await replica.stop()
        self._watch_takeover(replica.name, held, sending)
        self._restarts.append(asyncio.create_task(self._restart_later(replica, down_s)))

    def _config(self) -> str:
        text = super()._config().replace(self.receiver_url, self.receiver_url_override)
        text = text.replace(
            "      max_attempts: 100\n",
            "      max_attempts: 100\n    alerts:\n      tags: [oncall]\n",
        )
        channel = f"alerting:\n  channels:\n    - url: {self.sink.url()}\n      tags: [oncall]\n"
        return text.replace("environments:\n", channel + "environments:\n")


async def _with_slots(run: FaultChaos, entry: str, failure_limit: int) -> str:
    """`entry` (a short window's) with its rounds, `failure_limit` and the slots its last
    stored round says went unwatched (takeovers, restarts): the window's slots are all
    accounted for, or a round was lost unsaid."""
    deploy = entry.split(":")[0]
    rows = await run.monitor.fetch(
        "SELECT summary FROM rounds WHERE window_id = $1 ORDER BY number DESC LIMIT 1", deploy
    )
    unwatched = json.loads(rows[0]["summary"]).get("unwatched_slots", 0) if rows else 0
    rounds = run.monitor.windows.get(deploy, {}).get("rounds")
    return f"{entry} ({rounds} rounds, failure_limit {failure_limit}, {unwatched} slots unwatched)"


async def read_only(url: str, on: bool) -> None:
    conn = await asyncpg.connect(url, timeout=3)
    try:
        await conn.execute(
            f"ALTER SYSTEM SET default_transaction_read_only = {'on' if on else 'off'}"
        )
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def cut_connections(admin: str, database: str) -> int:
    """pg_terminate_backend of every session on `database` (tests/store/'s cuts): the
    replicas' pools meet dead connections mid-query."""
    conn = await asyncpg.connect(admin, timeout=3)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        return len(rows)
    finally:
        await conn.close()


async def faults(
    run: FaultChaos,
    cluster: PgCluster,
    kinds: list[str],
    duration: float,
    pause_s: tuple[float, float],
) -> Counter[str]:
    p, rng = run.plan, run.rng
    done: Counter[str] = Counter()
    end = time.monotonic() + duration
    spacing = max(0.5, (duration - p.window_s) / max(1, p.windows))
    registering = asyncio.create_task(run._register_all(spacing))
    admin = cluster.url()
    try:
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(3.0, 7.0))
            kind = rng.choice(kinds)
            live: list[Replica] = [r for r in run.replicas if r.up]
            if kind in ("kill", "term", "pause") and len(live) < 2:
                continue
            if kind == "kill":
                run.kill(rng.choice(live), rng.uniform(0.5, 3.0))
            elif kind == "term":
                await run.term(rng.choice(live), rng.uniform(0.5, 3.0))
            elif kind == "pg_cut":
                cut = await cut_connections(admin, run.pg_url.rsplit("/", 1)[-1].split("?")[0])
                run.log(f"PostgreSQL: {cut} connections cut")
            elif kind == "pause":
                await run.pause(rng.choice(live), rng.uniform(*pause_s))
            elif kind == "pg_restart":
                down = rng.uniform(1.0, 6.0)
                run.log(f"PostgreSQL stopped for {down:.1f}s")
                await asyncio.to_thread(cluster.stop)
                await asyncio.sleep(down)
                await asyncio.to_thread(cluster.start)
                run.log("PostgreSQL started")
            elif kind == "clock_step":
                replica = rng.choice(run.replicas)
                assert isinstance(replica, SteppedReplica)
                step = rng.choice((-1, 1)) * rng.uniform(p.lease_s + 1.0, 4 * p.lease_s + 5.0)
                held = rng.uniform(2.0, 8.0)
                run.log(f"{replica.name}'s clock stepped {step:+.1f}s for {held:.1f}s")
                replica.offset.write_text(f"{step}")
                await asyncio.sleep(held)
                replica.offset.write_text("0")
                run.log(f"{replica.name}'s clock stepped back")
            elif kind == "pg_readonly":
                down = rng.uniform(1.0, 6.0)
                run.log(f"PostgreSQL read-only for {down:.1f}s")
                await read_only(admin, True)
                await asyncio.sleep(down)
                await read_only(admin, False)
                run.log("PostgreSQL writable")
            done[kind] += 1
    finally:
        with contextlib.suppress(Exception):
            await read_only(admin, False)
        await registering
    return done


async def one_run(
    args: argparse.Namespace, cluster: PgCluster, seed: int, workdir: Path
) -> dict[str, Any]:
    plan = Plan(
        seed=seed,
        duration_s=args.duration,
        lease_s=args.lease,
        replicas=args.replicas,
        rollback_timeout_s=args.rollback_timeout,
    )
    rng = random.Random(seed * 7919)
    receiver = FaultyReceiver(rng, plan.rollback_timeout_s, args.answers.split(","))
    await receiver.start()
    sink = JsonSink(log=workdir / "alerts.jsonl")
    if args.sink_delay:
        sink.answer_after(args.sink_delay)
    await sink.start()
    url = await cluster.create_database()
    started = time.monotonic()
    run = FaultChaos(plan, url, workdir, receiver, sink)
    try:
        async with run:
            pause_s = (plan.lease_s + 0.5, plan.lease_s + 4.0)
            if args.pause:
                low, _, high = args.pause.partition("-")
                pause_s = (float(low), float(high or low))
            done = await faults(run, cluster, args.faults.split(","), args.duration, pause_s)
            run.faults_over = True
            await run.settle(within=plan.window_s + 4 * plan.lease_s + 30)
            await asyncio.sleep(5.0)  # late sends (a resumed alert, a taken-over rollback)
            with contextlib.suppress(*UNANSWERED):
                await run.monitor.poll()
            run.f.unrecorded, short = run._unrecorded(), run._ended_short()
            short_said = list(short)
            with contextlib.suppress(*UNANSWERED):
                short_said = [await _with_slots(run, u, run.limit_of(u)) for u in short]
    finally:
        await receiver.stop()
        await sink.stop()
    with (workdir / "rollback_requests.jsonl").open("w") as out:
        out.writelines(json.dumps(r) + "\n" for r in receiver.requests)
    with (workdir / "kills.jsonl").open("w") as out:
        out.writelines(json.dumps({"at": t, "pid": p, "name": n}) + "\n" for t, p, n in run.kills)
    duplicates, resent = repeats([(n.title, n.at, n.sender) for n in sink.notifications], run.kills)
    heard = [(r["key"], r["at"], r["sender"]) for r in receiver.requests if r["heard"]]
    twice, after_kill = repeats(heard, run.kills)
    resends = Counter(r.split(" ", 1)[0] for r in after_kill)
    bad = [d for d, r in run.deploys.items() if r]
    row: dict[str, Any] = {
        "seed": seed,
        "faults": dict(done),
        "requests": len(receiver.requests),
        "answers": dict(Counter(r["answer"] for r in receiver.requests)),
        "keys": len({r["key"] for r in receiver.requests}),
        "heard_once": sum(receiver.heard[d] == 1 + resends[d] for d in bad),
        "heard_twice": len(twice),
        "heard_twice_keys": twice,
        "resent_after_kill": len(after_kill),
        "rollback_senders_unknown": sum(r["sender"] is None for r in receiver.requests),
        "lost": [d for d in bad if d in run.monitor.rollbacks and not receiver.heard[d]],
        "not_decided": [
            f"{d}: window {run.monitor.windows.get(d, {}).get('state')}"
            for d in bad
            if d not in run.monitor.rollbacks
        ],
        "good_requested": [k for k in receiver.bodies if k in run.deploys and not run.deploys[k]],
        "unknown_keys": [k for k in receiver.bodies if k not in run.deploys],
        "bodies_per_key_max": max((len(b) for b in receiver.bodies.values()), default=0),
        "per_deploy": {
            d: f"{sum(r['key'] == d for r in receiver.requests)} req"
            f" {receiver.acted[d]} taken {receiver.heard[d]} heard"
            for d in bad
        },
        "acted_twice": sum(n - 1 for n in receiver.acted.values() if n > 1),
        "alerts": len(sink.notifications),
        "alert_duplicates": len(duplicates),
        "duplicate_titles": duplicates,
        "alerts_resent_after_kill": len(resent),
        "resent_titles": resent,
        "alert_senders_unknown": sum(n.sender is None for n in sink.notifications),
        "unrecorded": run.f.unrecorded,
        "ended_short": short_said,
        "stuck": run.f.stuck,
        "overwritten": run.f.overwritten_rounds
        + run.f.overwritten_deliveries
        + run.f.backward_counters,
        "regressed": len(bad),
        "seconds": round(time.monotonic() - started, 1),
    }
    row["ok"] = (
        row["heard_twice"] == 0
        and not row["lost"]
        and not row["good_requested"]
        and not row["unknown_keys"]
        and row["bodies_per_key_max"] <= 1
        and row["alert_duplicates"] == 0
        and row["heard_once"] == len(bad) - len(short)
        and not row["unrecorded"]
        and not row["stuck"]
        and not row["overwritten"]
    )
    if not row["ok"] or args.verbose:
        row["events"] = run.f.events
        for r in run.replicas:
            (workdir / "keep").mkdir(exist_ok=True)
            (workdir / "keep" / f"{r.name}.log").write_bytes(r.log.read_bytes())
    return row


async def run_all(args: argparse.Namespace, cluster: PgCluster) -> list[dict[str, Any]]:
    rows = []
    base = Path(args.keep)
    for i in range(args.runs):
        workdir = base / f"run{args.seed + i}"
        workdir.mkdir(parents=True, exist_ok=True)
        row = await one_run(args, cluster, args.seed + i, workdir)
        rows.append(row)
        if not args.json:
            print(json.dumps({k: v for k, v in row.items() if k != "events"}), flush=True)
            if not row["ok"]:
                for e in row.get("events", []):
                    print("   ", e, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=45.0)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rollback-timeout", type=float, default=2.0, help="rollback.timeout, s")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--answers", default=",".join(ANSWERS))
    parser.add_argument("--keep", default="/tmp/postflight-ha-faults", help="run directories")
    parser.add_argument("--pause", help="SIGSTOP seconds, LOW-HIGH (default lease+0.5-lease+4)")
    parser.add_argument("--sink-delay", type=float, default=0.0, help="alert sink answers after")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    rows = on_a_cluster(run_all, args)
    summary = {
        "runs": len(rows),
        "ok": sum(r["ok"] for r in rows),
        "faults": dict(sum((Counter(r["faults"]) for r in rows), Counter())),
        "requests": sum(r["requests"] for r in rows),
        "heard_twice": sum(r["heard_twice"] for r in rows),
        "resent_after_kill": sum(r["resent_after_kill"] for r in rows),
        "lost": sum(len(r["lost"]) for r in rows),
        "good_requested": sum(len(r["good_requested"]) for r in rows),
        "bodies_per_key_max": max((r["bodies_per_key_max"] for r in rows), default=0),
        "acted_twice": sum(r["acted_twice"] for r in rows),
        "alerts": sum(r["alerts"] for r in rows),
        "alert_duplicates": sum(r["alert_duplicates"] for r in rows),
        "alerts_resent_after_kill": sum(r["alerts_resent_after_kill"] for r in rows),
        "alert_senders_unknown": sum(r["alert_senders_unknown"] for r in rows),
        "rollback_senders_unknown": sum(r["rollback_senders_unknown"] for r in rows),
        "unrecorded": sum(len(r["unrecorded"]) for r in rows),
        "ended_short": sum(len(r["ended_short"]) for r in rows),
    }
    print(json.dumps(summary) if args.json else f"\n{json.dumps(summary)}")
    return 0 if summary["ok"] == summary["runs"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
