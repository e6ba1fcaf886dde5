"""Replicas under chaos: real agent processes on one PostgreSQL, killed and paused.

Used by `tests/e2e/test_chaos.py` (short runs) and `bench/ha_chaos.py` (long runs and
the targeted cases). Everything is judged from outside the agents:

- the rollback receiver (a separate process) counts every request it answered 2xx,
  duplicates included: more than one per deploy is a duplicate delivered rollback;
- a monitor reads the store's tables every `POLL_S` on its own connection: a round
  row whose content changes, a `rounds` or `attempts` counter that goes back, or a
  delivery row whose outcome changes once stored, is an overwrite;
- takeover time: from a kill (or pause) to the moment another replica holds each
  window the victim held; orphan pickup: from a kill to the moment a rollback the
  victim was sending is delivered by another replica;
- a stuck window is still watching (or its rollback still pending) well after its end;
- at the end, each regressed deploy's rollback is `delivered` in the store and its window
  `rolled_back` (unless it ended short: see `ended_short`), and every replica's /readyz
  answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from agent.records import JUDGED_STATES
from agent.rollback.delivery import TAKEOVER_GRACE_S
from tests.e2e.crash import ROOT, TOKEN, free_port
from tests.pg import PgCluster
from tests.receivers import RollbackAttempt, RollbackReceiver, parse_script

SECRET = "chaos-rollback-secret"
POLL_S = 0.2
UNANSWERED = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
"""What the monitor's reads meet while PostgreSQL is away (`store_outage`), or its session
is cut (`pg_terminate_backend`: a connection left mid-error until it is closed)."""


@dataclass
class Plan:
    """One chaos run. The defaults are the acceptance run's (3 replicas, 10 windows,
    5 regressed, kill -9 every 6-10 s, one SIGSTOP past the lease)."""

    replicas: int = 3
    windows: int = 10
    regressed: int = 5
    lease_s: float = 3.0
    window_s: float = 24.0
    interval_s: float = 0.5
    duration_s: float = 60.0
    kill_every: tuple[float, float] = (6.0, 10.0)
    down_s: tuple[float, float] = (0.5, 3.0)
    sigstop: bool = True
    receiver_script: str = ""
    rollback_timeout_s: float = 2.0
    seed: int = 1


@dataclass
class Findings:
    """What the run saw, from outside the agents."""

    deploys: int = 0
    regressed: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    """Deploy id → requests the receiver answered 2xx (duplicates included)."""
    overwritten_rounds: list[str] = field(default_factory=list)
    backward_counters: list[str] = field(default_factory=list)
    overwritten_deliveries: list[str] = field(default_factory=list)
    takeover_s: list[float] = field(default_factory=list)
    orphan_pickup_s: list[float] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    """Regressed deploys whose store, at the end, does not say rollback `delivered` and
    window `rolled_back`, and which did not end short: a rollback lost."""
    ended_short: list[str] = field(default_factory=list)
    """Regressed deploys whose window ended without a fail on fewer rounds than its
    `failure_limit` (see `ended_short`): a judging matter, not a rollback lost."""
    unready: list[str] = field(default_factory=list)
    """Replicas whose /readyz did not answer 200 at the end."""
    unjudged: list[str] = field(default_factory=list)
    """Deploys registered (201) whose window, at the end, is not in the store or not
    judged (`JUDGED_STATES`): a window lost, regressed or not (`stuck` counts only those
    still watching)."""
    held_2xx: bool | None = None
    """`store_outage`: whether the receiver's 2xx to attempt 1 went to a sender still
    connected, the held 2xx the run is about (not if the store's stop outlasted the
    attempt's timeout: then a later attempt delivered, and the run proved nothing)."""
    kills: int = 0
    pauses: int = 0
    events: list[str] = field(default_factory=list)
    receiver_log: list[str] = field(default_factory=list)
    """The receiver's log, a line per request (kept for a failing test's message: the run's
    directory is gone by then)."""

    def delivered_once(self) -> bool:
        """Each regressed deploy's rollback answered 2xx once at the receiver, a deploy
        that ended short (`ended_short`: it cannot fail, so nothing is sent) aside."""
        short = {e.split(":")[0] for e in self.ended_short}
        return bool(self.delivered) and all(
            n == 1 or (n == 0 and d in short) for d, n in self.delivered.items()
        )

    def why(self) -> str:
        """What a failing assertion shows: deliveries, deploys set aside, events, and the
        receiver's log."""
        return "\n".join(
            [
                f"delivered {self.delivered}",
                f"ended short {self.ended_short}",
                f"unrecorded {self.unrecorded}",
                *self.events,
                "receiver:",
                *self.receiver_log,
            ]
        )

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.delivered.values() if n > 1)

    @property
    def undelivered(self) -> int:
        """Regressed deploys with no 2xx at the receiver, those that ended short aside
        (their windows cannot fail, so nothing is sent)."""
        delivered = sum(1 for n in self.delivered.values() if n >= 1)
        return self.regressed - len(self.ended_short) - delivered

    def summary(self) -> dict[str, Any]:
        return {
            "deploys": self.deploys,
            "regressed": self.regressed,
            "delivered_rollbacks": sum(self.delivered.values()),
            "duplicates": self.duplicates,
            "undelivered": self.undelivered,
            "overwritten_rounds": len(self.overwritten_rounds),
            "backward_counters": len(self.backward_counters),
            "overwritten_deliveries": len(self.overwritten_deliveries),
            "takeover_s_max": round(max(self.takeover_s), 2) if self.takeover_s else None,
            "takeovers": len(self.takeover_s),
            "orphan_pickup_s_max": (
                round(max(self.orphan_pickup_s), 2) if self.orphan_pickup_s else None
            ),
            "orphans": len(self.orphan_pickup_s),
            "stuck_windows": len(self.stuck),
            "unrecorded": len(self.unrecorded),
            "ended_short": len(self.ended_short),
            "unready": len(self.unready),
            "unjudged": len(self.unjudged),
            "kills": self.kills,
            "pauses": self.pauses,
        }

    @property
    def ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.undelivered == 0
            and not self.overwritten_rounds
            and not self.backward_counters
            and not self.overwritten_deliveries
            and not self.stuck
            and not self.unrecorded
            and not self.unready
            and not self.unjudged
        )


def ended_short(window: dict[str, Any], failure_limit: int) -> bool:
    """Whether a regressed deploy's window (the monitor's row) ended without a fail on
    fewer rounds than `failure_limit`: `failure_limit` breaching rounds fail it under the
    threshold policy, so on fewer (rounds lost to its holder's kills and pauses, each
    passing over a lease's slots, or a clock stepped past its end) it cannot fail, and
    ends `passed` or, its lost slots being missing evidence, `inconclusive`."""
    return (
        window.get("state") in ("passed", "inconclusive")
        and int(window.get("rounds") or 0) < failure_limit
    )


def _env(replica: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY", "NEW_RELIC"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["POSTFLIGHT_REPLICA_ID"] = replica
    return env


class Replica:
    """One agent process, by name; restartable on the same port and config."""

    def __init__(self, name: str, workdir: Path, config_text: str) -> None:
        self.name = name
        self.port = free_port()
        self.config = workdir / f"{name}.yaml"
        self.config.write_text(config_text.replace("{port}", str(self.port)))
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.ready = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self.ready and self.proc is not None and self.proc.poll() is None and not self.paused

    def _launch(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.config)],
                cwd=ROOT,
                env=_env(self.name),
                stdout=out,
                stderr=out,
            )

    async def start(self) -> None:
        self.ready = False
        self.proc = self._launch()
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                if self.proc.poll() is not None:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.url}/readyz") as r:
                        if r.status == 200:
                            self.ready = True
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready")

    async def ready_within(self, seconds: float) -> bool:
        """Whether its /readyz answers 200 within `seconds`."""
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(f"{self.url}/readyz") as r:
                        if r.status == 200:
                            return True
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(0.2)

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self.paused = self.ready = False

    async def stop(self) -> None:
        """Graceful: SIGTERM, as an orchestrator's rolling restart does."""
        if self.paused:
            self.resume()
        self.signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False


CLOCK_SHIM = ROOT / "bench" / "clock_offset.py"


class SteppedReplica(Replica):
    """A replica whose wall clock is stepped by the seconds in `offset` (bench/clock_offset.py:
    no faketime here); the monotonic clock is left alone, as a step leaves it."""

    def __init__(self, name: str, workdir: Path, config_text: str) -> None:
        super().__init__(name, workdir, config_text)
        self.offset = workdir / f"{name}.offset"
        self.offset.write_text("0")

    def _launch(self) -> subprocess.Popen[bytes]:
        env = _env(self.name)
        env["POSTFLIGHT_CLOCK_OFFSET_FILE"] = str(self.offset)
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, str(CLOCK_SHIM), "run", "--config", str(self.config)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=out,
            )


class Monitor:
    """Reads the store's tables every `POLL_S`: overwrites, counters going back, owners."""

    def __init__(self, url: str, findings: Findings) -> None:
        self.url = url
        self.f = findings
        self.rounds: dict[tuple[str, int], tuple[float, str]] = {}
        self.counters: dict[str, int] = {}
        self.delivery_rows: dict[tuple[str, int], tuple[float, int | None, str | None]] = {}
        self.conn: Any = None  # asyncpg.Connection, once started
        self.windows: dict[str, dict[str, Any]] = {}
        self.rollbacks: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one connection: one query at a time

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._lock, self._dropped_on_failure():
            if self.conn.is_closed():  # PostgreSQL was stopped (`store_outage`)
                self.conn = await asyncpg.connect(self.url, timeout=2)
            return list(await self.conn.fetch(sql, *args))

    @contextlib.asynccontextmanager
    async def _dropped_on_failure(self) -> AsyncIterator[None]:
        """A read that failed leaves its connection to be made again by the next: one cut
        mid-read (`pg_cut`) answered every later read 'another operation is in progress'
        (asyncpg's InternalClientError), which failed the receiver's handler in
        `bench/ha_faults.py` (a 500 instead of its drawn answer) and ended the poll loop."""
        try:
            yield
        except BaseException:
            if self.conn is not None and not self.conn.is_closed():
                self.conn.terminate()
            raise

    async def start(self) -> None:
        self.conn = await asyncpg.connect(self.url)
        await self.poll()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.poll()
        await self.conn.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            with contextlib.suppress(*UNANSWERED):
                await self.poll()

    async def snapshot(self, *queries: str) -> list[list[Any]]:
        """The rows of each query, all read from one snapshot of the store (a read-only
        REPEATABLE READ transaction): read one after another, a rollback recorded between
        the windows' read and the rollbacks' showed `delivered` beside its window still
        `failed` (one transaction in the store moves both), and a run settling at that
        instant found it unrecorded (store_outage, a loaded full run)."""
        async with self._lock, self._dropped_on_failure():
            if self.conn.is_closed():  # PostgreSQL was stopped (`store_outage`)
                self.conn = await asyncpg.connect(self.url, timeout=2)
            async with self.conn.transaction(isolation="repeatable_read", readonly=True):
                return [list(await self.conn.fetch(sql)) for sql in queries]

    async def poll(self) -> None:
        windows, rounds, rollbacks, deliveries = await self.snapshot(
            "SELECT id, state, rounds, lease_owner, lease_epoch, ends_at FROM windows",
            "SELECT window_id, number, started_at, md5(summary) AS digest FROM rounds",
            "SELECT window_id, state, attempts, lease_owner, lease_until FROM rollbacks",
            "SELECT window_id, attempt, at, status, error FROM deliveries WHERE status IS NOT NULL"
            " OR error NOT LIKE 'in flight%'",
        )
        for w in windows:
            self._count(f"{w['id']} rounds", w["rounds"])
            self._count(f"{w['id']} epoch", w["lease_epoch"])
            self.windows[w["id"]] = dict(w)
        for r in rounds:
            key, seen = (r["window_id"], r["number"]), (r["started_at"], r["digest"])
            if self.rounds.setdefault(key, seen) != seen:
                self.f.overwritten_rounds.append(f"{key}: {self.rounds[key]} -> {seen}")
                self.rounds[key] = seen
        for b in rollbacks:
            self._count(f"{b['window_id']} attempts", b["attempts"])
            self.rollbacks[b["window_id"]] = dict(b)
        for d in deliveries:
            key = (d["window_id"], d["attempt"])
            row = (d["at"], d["status"], d["error"])
            if self.delivery_rows.setdefault(key, row) != row:
                self.f.overwritten_deliveries.append(f"{key}: {self.delivery_rows[key]} -> {row}")

    def _count(self, name: str, value: int) -> None:
        before = self.counters.get(name, value)
        if value < before:
            self.f.backward_counters.append(f"{name}: {before} -> {value}")
        self.counters[name] = max(before, value)

    def held_by(self, owner: str) -> list[str]:
        return [
            wid
            for wid, w in self.windows.items()
            if w["state"] == "watching" and w["lease_owner"] == owner
        ]

    def sending(self, owner: str) -> list[str]:
        return [
            wid
            for wid, b in self.rollbacks.items()
            if b["state"] == "pending" and b["lease_owner"] == owner
        ]


OnAttempt = Callable[[RollbackAttempt], Awaitable[None]]


class Chaos:
    """The processes of one run: PostgreSQL database, receiver, target, replicas."""

    replica_type: type[Replica] = Replica

    def __init__(
        self, plan: Plan, pg_url: str, workdir: Path, on_attempt: OnAttempt | None = None
    ) -> None:
        self.plan = plan
        self.on_attempt = on_attempt
        """Run the receiver in this process, awaiting this as each request arrives,
        before it is answered (it may stop PostgreSQL); else it is a process of its own."""
        self._receiver: RollbackReceiver | None = None
        self.pg_url = pg_url
        self.workdir = workdir
        self.rng = random.Random(plan.seed)
        self.f = Findings()
        self.monitor = Monitor(pg_url, self.f)
        self.replicas: list[Replica] = []
        self.deploys: dict[str, bool] = {}
        """Deploy id → regressed."""
        self.env_limits: dict[int, int] = {}
        """Environment index → its `failure_limit` (drawn by `_config`)."""
        self.failure_limit: dict[str, int] = {}
        """Deploy id → its environment's `failure_limit`."""
        self.started = time.monotonic()
        self._procs: list[subprocess.Popen[bytes]] = []
        self._watches: list[asyncio.Task[None]] = []
        self._restarts: list[asyncio.Task[None]] = []

    def log(self, text: str) -> None:
        self.f.events.append(f"{time.monotonic() - self.started:7.2f}s {text}")

    # set-up ------------------------------------------------------------------

    async def __aenter__(self) -> Chaos:
        try:
            return await self._start()
        except BaseException:
            await self.__aexit__()  # a replica that failed to start: stop what did start
            raise

    async def _start(self) -> Chaos:
        receiver_log = self.workdir / "receiver.jsonl"
        self.receiver_log = receiver_log
        if self.on_attempt is not None:
            self._receiver = RollbackReceiver(
                SECRET,
                parse_script(self.plan.receiver_script),
                log=receiver_log,
                on_attempt=self.on_attempt,
            )
            await self._receiver.start()
            self.receiver_url = self._receiver.url
        else:
            args = ["--secret", SECRET, "--log", str(receiver_log)]
            if self.plan.receiver_script:
                args += ["--script", self.plan.receiver_script]
            receiver = self._spawn([sys.executable, "-m", "tests.receivers", "rollback", *args])
            assert receiver.stdout is not None
            line = await asyncio.to_thread(receiver.stdout.readline)
            self.receiver_url = json.loads(line)["url"]
        target_port = free_port()
        site = self.workdir / "site"
        site.mkdir()
        (site / "health").write_text("ok")
        self._spawn(
            [sys.executable, "-m", "http.server", str(target_port), "--bind", "127.0.0.1"],
            cwd=site,
        )
        self.target_url = f"http://127.0.0.1:{target_port}"
        self.dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every probe fails
        config = self._config()
        self.replicas = [
            self.replica_type(f"r{i}", self.workdir, config) for i in range(self.plan.replicas)
        ]
        await asyncio.gather(*(r.start() for r in self.replicas))
        await self.monitor.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in (*self._watches, *self._restarts):
            task.cancel()
        await asyncio.gather(*self._watches, *self._restarts, return_exceptions=True)
        for replica in self.replicas:
            replica.resume()
            replica.kill()
        with contextlib.suppress(Exception):
            await self.monitor.stop()
        if self._receiver is not None:
            await self._receiver.stop()
        for proc in self._procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()

    def _spawn(self, argv: list[str], cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=_env("-"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._procs.append(proc)
        return proc

    def _config(self) -> str:
        p = self.plan
        envs = []
        for i in range(p.windows):
            regressed = i < p.regressed
            # a regressed deploy fails after a few rounds, so rollbacks spread over the run
            limit = self.rng.randint(2, max(3, int(p.window_s / p.interval_s / 2)))
            self.env_limits[i] = limit
            envs.append(
                f"""\
  env{i}:
    base_url: {self.dead_url if regressed else self.target_url}
    window: {p.window_s}s
    interval: {int(p.interval_s * 1000)}ms
    background_interval: 1h
    probes_per_round: 2
    checks:
      - {{name: up, type: http, path: /health, timeout: 300ms}}
    analysis: {{policy: threshold, failure_limit: {limit}}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.5}}
    rollback:
      url: {self.receiver_url}
      secret: {SECRET}
      timeout: {p.rollback_timeout_s}s
      backoff: 300ms
      max_backoff: 1s
      max_attempts: 100
"""
            )
        return (
            "server:\n  listen: 127.0.0.1:{port}\n"
            f"  api_tokens: [{TOKEN}]\n"
            f"store:\n  url: {self.pg_url}\n  lease: {p.lease_s}s\n"
            "environments:\n" + "".join(envs)
        )

    # actions -----------------------------------------------------------------

    async def register(self, index: int) -> str:
        """Register deploy `index` through any live replica."""
        body = {"environment": f"env{index}", "version": f"v{index}"}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for _ in range(100):
            live = [r for r in self.replicas if r.up] or self.replicas
            replica = self.rng.choice(live)
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http,
                    http.post(f"{replica.url}/v1/deploys", json=body, headers=headers) as r,
                ):
                    if r.status == 201:
                        deploy_id: str = (await r.json())["id"]
                        self.deploys[deploy_id] = index < self.plan.regressed
                        self.failure_limit[deploy_id] = self.env_limits[index]
                        self.f.deploys += 1
                        self.f.regressed += index < self.plan.regressed
                        self.log(f"registered {deploy_id} (env{index}) via {replica.name}")
                        return deploy_id
            await asyncio.sleep(0.2)
        raise RuntimeError("no replica accepted the deploy")

    def kill(self, replica: Replica, down_s: float) -> None:
        """kill -9, then restart after `down_s`; watch who takes over what it held."""
        held, sending = self.monitor.held_by(replica.name), self.monitor.sending(replica.name)
        replica.kill()
        self.f.kills += 1
        self.log(f"kill -9 {replica.name} (held {len(held)}, sending {len(sending)})")
        self._watch_takeover(replica.name, held, sending)
        self._restarts.append(asyncio.create_task(self._restart_later(replica, down_s)))

    async def restart_now(self) -> None:
        """Cut short the downtime of every replica still waiting for its restart."""
        for task in self._restarts:
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        self._restarts.clear()
        for replica in self.replicas:
            if replica.proc is None or replica.proc.poll() is not None:
                await replica.start()
                self.log(f"restarted {replica.name}")

    async def _restart_later(self, replica: Replica, down_s: float) -> None:
        await asyncio.sleep(down_s)
        await replica.start()
        self.log(f"restarted {replica.name}")

    async def pause(self, replica: Replica, seconds: float) -> None:
        """SIGSTOP for `seconds` (past the lease), then SIGCONT."""
        held = self.monitor.held_by(replica.name)
        replica.pause()
        self.f.pauses += 1
        self.log(f"SIGSTOP {replica.name} for {seconds:.1f}s (held {len(held)})")
        self._watch_takeover(replica.name, held, [])
        await asyncio.sleep(seconds)
        replica.resume()
        self.log(f"SIGCONT {replica.name}")

    def _watch_takeover(self, victim: str, held: list[str], sending: list[str]) -> None:
        self._watches.append(asyncio.create_task(self._takeover(victim, held, sending)))

    async def _takeover(self, victim: str, held: list[str], sending: list[str]) -> None:
        since = time.monotonic()
        epochs = {wid: self.monitor.windows[wid]["lease_epoch"] for wid in held}
        windows, rollbacks = set(held), set(sending)
        while windows or rollbacks:
            await asyncio.sleep(POLL_S)
            for wid in list(windows):
                w = self.monitor.windows[wid]
                # a new claim (a survivor, or the victim restarted), or it ended
                if w["state"] != "watching" or w["lease_epoch"] > epochs[wid]:
                    self.f.takeover_s.append(time.monotonic() - since)
                    windows.discard(wid)
            for wid in list(rollbacks):
                b = self.monitor.rollbacks[wid]
                if b["state"] != "pending":
                    if b["lease_owner"] != victim:  # a survivor's doing, not the restart's
                        self.f.orphan_pickup_s.append(time.monotonic() - since)
                        self.log(f"orphan {wid} delivered by {b['lease_owner']}")
                    rollbacks.discard(wid)

    async def chaos(self, duration_s: float) -> None:
        """Register the deploys over the run; kill -9 a replica every few seconds; one
        SIGSTOP past the lease."""
        p = self.plan
        end = time.monotonic() + duration_s
        spacing = max(0.5, (duration_s - p.window_s) / max(1, p.windows))
        registering = asyncio.create_task(self._register_all(spacing))
        stop_at = time.monotonic() + self.rng.uniform(0.3, 0.7) * duration_s if p.sigstop else None
        try:
            while time.monotonic() < end:
                await asyncio.sleep(min(self.rng.uniform(*p.kill_every), end - time.monotonic()))
                if time.monotonic() >= end:
                    break
                if stop_at is not None and time.monotonic() >= stop_at:
                    stop_at = None
                    victim = self.rng.choice([r for r in self.replicas if r.up] or self.replicas)
                    await self.pause(victim, p.lease_s + p.rollback_timeout_s + 3.0)
                    continue
                live = [r for r in self.replicas if r.up]
                if len(live) > 1:  # keep one alive: chaos, not an outage
                    self.kill(self.rng.choice(live), self.rng.uniform(*p.down_s))
        finally:
            await registering

    async def _register_all(self, spacing: float) -> None:
        order = list(range(self.plan.windows))
        self.rng.shuffle(order)
        for index in order:
            await self.register(index)
            await asyncio.sleep(spacing)

    async def settle(self, within: float) -> None:
        """Every replica up; wait until every window ended and every rollback finished;
        what is left then is stuck."""
        await asyncio.gather(*self._restarts)
        for replica in self.replicas:
            if replica.paused:
                replica.resume()
            if replica.proc is None or replica.proc.poll() is not None:
                await replica.start()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(*UNANSWERED):  # PostgreSQL just started again
                await self.monitor.poll()
                if not self._unsettled():
                    break
            await asyncio.sleep(0.5)
        self.f.stuck = self._unsettled()
        self.f.unrecorded, self.f.ended_short = self._unrecorded(), self._ended_short()
        self.f.unjudged = self._unjudged()
        ready = await asyncio.gather(*(r.ready_within(5.0) for r in self.replicas))
        self.f.unready = [r.name for r, ok in zip(self.replicas, ready, strict=True) if not ok]

    def _unrecorded(self) -> list[str]:
        """Regressed deploys not rolled back and delivered, those that ended short aside."""
        return [e for e in self._not_rolled_back() if e not in self._ended_short()]

    def _ended_short(self) -> list[str]:
        """Regressed deploys not rolled back whose window ended short (`ended_short`):
        before, one ended inconclusive this way was counted unrecorded, a rollback lost."""
        return [
            e
            for e in self._not_rolled_back()
            if ended_short(self.monitor.windows.get(e.split(":")[0], {}), self.limit_of(e))
        ]

    def limit_of(self, entry: str) -> int:
        """The `failure_limit` of an entry's deploy (`deploy: ...`)."""
        return self.failure_limit.get(entry.split(":")[0], 0)

    def _not_rolled_back(self) -> list[str]:
        left = []
        for deploy in (d for d, bad in self.deploys.items() if bad):
            window = self.monitor.windows.get(deploy, {}).get("state")
            rollback = self.monitor.rollbacks.get(deploy, {}).get("state")
            if (window, rollback) != ("rolled_back", "delivered"):
                left.append(f"{deploy}: window {window}, rollback {rollback}")
        return left

    def _unjudged(self) -> list[str]:
        """Deploys registered whose window the store does not hold judged."""
        states = {d: self.monitor.windows.get(d, {}).get("state") for d in self.deploys}
        return [f"{d}: window {s}" for d, s in states.items() if s not in JUDGED_STATES]

    def _unsettled(self) -> list[str]:
        left = [
            f"{wid} watching" for wid, w in self.monitor.windows.items() if w["state"] == "watching"
        ]
        left += [
            f"{wid} rollback pending"
            for wid, b in self.monitor.rollbacks.items()
            if b["state"] == "pending"
        ]
        return left

    def count_deliveries(self) -> None:
        """The receiver's view: every 2xx it answered, per deploy, duplicates included."""
        delivered: dict[str, int] = dict.fromkeys((d for d, bad in self.deploys.items() if bad), 0)
        if self.receiver_log.exists():
            self.f.receiver_log = self.receiver_log.read_text().splitlines()
            for line in self.f.receiver_log:
                attempt = json.loads(line)
                if attempt.get("accepted"):
                    key = attempt.get("idempotency_key") or "?"
                    delivered[key] = delivered.get(key, 0) + 1
        self.f.delivered = delivered


@contextlib.asynccontextmanager
async def chaos_run(
    plan: Plan, pg_url: str, on_attempt: OnAttempt | None = None
) -> AsyncIterator[Chaos]:
    with tempfile.TemporaryDirectory(prefix="postflight-chaos-") as tmp:
        async with Chaos(plan, pg_url, Path(tmp), on_attempt) as run:
            yield run


async def random_chaos(plan: Plan, pg_url: str) -> Findings:
    """Deploys registered over the run, kill -9 every few seconds, one SIGSTOP."""
    plan.receiver_script = plan.receiver_script or ",".join(
        ["503:delay=0.3", "503:delay=0.3", "200"] * plan.regressed
    )
    async with chaos_run(plan, pg_url) as run:
        await run.chaos(plan.duration_s)
        await run.settle(within=plan.window_s + 4 * plan.lease_s + 30)
        run.count_deliveries()
        return run.f


async def graceful_restart(plan: Plan, url: str) -> Findings:
    """SIGTERM and restart of another replica while a rollback is in flight."""
    plan.windows, plan.regressed, plan.sigstop = 1, 1, False
    plan.receiver_script = "503:delay=1.5,503:delay=1.5,200:delay=0.5"
    async with chaos_run(plan, url) as run:
        deploy = await run.register(0)
        sender = await _sender_of(run, deploy)
        other = next(r for r in run.replicas if r.name != sender)
        run.log(f"graceful restart of {other.name} while {sender} sends")
        await other.stop()
        await other.start()
        await run.settle(within=plan.window_s + 30)
        run.count_deliveries()
        return run.f


async def paused_woken(plan: Plan, url: str) -> Findings:
    """A replica paused past the lease, its windows' new owners killed, then it wakes."""
    plan.windows, plan.regressed, plan.sigstop = 6, 3, False
    plan.window_s = 30.0
    async with chaos_run(plan, url) as run:
        for i in range(plan.windows):
            await run.register(i)
        await asyncio.sleep(3.0)
        await run.monitor.poll()
        victim = max(run.replicas, key=lambda r: len(run.monitor.held_by(r.name)))
        held = run.monitor.held_by(victim.name)
        pause = asyncio.create_task(run.pause(victim, 3 * plan.lease_s + 4))
        # once the survivors hold its windows, kill them all: the paused one wakes alone
        deadline = time.monotonic() + 3 * plan.lease_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            owners = {run.monitor.windows[w]["lease_owner"] for w in held}
            if owners and victim.name not in owners and None not in owners:
                break
        for replica in run.replicas:
            if replica is not victim:
                run.kill(replica, down_s=plan.lease_s * 4)
        await pause
        await run.settle(within=plan.window_s + 30)
        run.count_deliveries()
        return run.f


async def sender_killed(
    plan: Plan, url: str, down_s: float = 40.0, in_flight_s: float = 4.0
) -> Findings:
    """The sender killed mid-attempt (the receiver is slow) and held down until a survivor
    has delivered the orphaned rollback (at most `down_s`); then it restarts, which must
    not send it again. The first attempt is in flight for `in_flight_s` (the receiver's
    delay), within the rollback's timeout (2 s longer): a survivor picks the orphan up
    after the attempt's lease (the timeout + 1) and its takeover wait (the timeout + the
    grace), 16 s at 4 s."""
    plan.windows, plan.regressed, plan.sigstop = 1, 1, False
    plan.receiver_script = f"200:delay={in_flight_s:g}"
    plan.rollback_timeout_s = in_flight_s + 2.0
    async with chaos_run(plan, url) as run:
        deploy = await run.register(0)
        sender = await _sender_of(run, deploy, in_flight=True)
        victim = next(r for r in run.replicas if r.name == sender)
        run.kill(victim, down_s=down_s)
        for _ in range(int(down_s / POLL_S)):  # the takeover watch fills orphan_pickup_s
            if run.f.orphan_pickup_s:
                break
            await asyncio.sleep(POLL_S)
        await run.restart_now()
        await run.settle(within=down_s + 20)
        run.count_deliveries()
        return run.f


OUTAGE_PAST_LEASE_S = 0.5
"""How much longer than the rollback attempt's lease `store_outage` keeps PostgreSQL away."""
RESEND_WITHIN_S = 3.0
"""By when, after the store's return and the takeover wait (`takeover_wait_s`: the
rollback timeout, then the grace), a replica that took the rollback over has sent it again
if it does: its sweep runs every second."""


async def store_outage(plan: Plan, url: str, cluster: PgCluster) -> Findings:
    """PostgreSQL stopped as the receiver takes the rollback (before its 200 goes out) and
    kept away past the attempt's lease, then started again on its port and data: the
    sender holds the 2xx until the store takes it, and a replica whose sweep takes the
    lapsed lease as the store returns must not send the rollback again. `url` must be a
    database of `cluster`, which nothing else may be using meanwhile."""
    plan.windows, plan.regressed, plan.sigstop = 1, 1, False
    plan.receiver_script = "200"
    arrived: list[float] = []
    stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def stop_the_store(attempt: RollbackAttempt) -> None:
        if attempt.n == 1:
            arrived.append(time.monotonic())
            try:
                await asyncio.to_thread(cluster.stop)
            except Exception as exc:  # said by the run, not only by aiohttp's log
                stopping.set_exception(exc)
                raise
            stopping.set_result(None)

    async with chaos_run(plan, url, stop_the_store) as run:
        deploy = await run.register(0)
        await asyncio.wait_for(stopping, plan.window_s + 30)
        run.log("PostgreSQL stopped as the receiver took attempt 1; answering 200")
        # begin_attempt leased the attempt for max(lease, timeout + 1) before it went out
        lease = max(plan.lease_s, plan.rollback_timeout_s + 1.0)
        await asyncio.sleep(arrived[0] + lease + OUTAGE_PAST_LEASE_S - time.monotonic())
        await asyncio.to_thread(cluster.start)
        back = time.monotonic()
        run.log(f"PostgreSQL started again after {back - arrived[0]:.1f}s")
        await run.settle(within=plan.window_s + 30)
        # a replica that took the lapsed lease over sends (if it does) after its grace,
        # maybe after the sender recorded the 2xx: the receiver is counted once it is out
        resend_by = plan.rollback_timeout_s + TAKEOVER_GRACE_S + RESEND_WITHIN_S
        await asyncio.sleep(back + resend_by - time.monotonic())
        await run.monitor.poll()
        run.count_deliveries()
        assert run._receiver is not None  # in-process: it runs `stop_the_store`
        first = [a.accepted for a in run._receiver.attempts if a.n == 1]
        run.f.held_2xx = first == [True]
        b = run.monitor.rollbacks.get(deploy, {})
        run.log(f"rollback {b.get('state')} after {b.get('attempts')} attempt(s)")
        for replica in run.replicas:  # who held the 2xx, who took over (their own words)
            said = replica.log.read_text(errors="replace")
            for words in (
                f"{deploy} accepted on attempt",
                "rollback delivery (attempt",  # a sweep took it up (resumed or started)
                "no recorded outcome; waiting",
            ):
                if words in said:
                    run.log(f"{replica.name} said '{words}'")
        return run.f


class SkewedChaos(Chaos):
    replica_type = SteppedReplica


async def skewed_takeover(plan: Plan, url: str, ahead_s: float, answer_after_s: float) -> Findings:
    """Two replicas; once the rollback's first attempt is out, the replica not sending it
    has its wall clock `ahead_s` ahead (less than the lease: within what the README asks),
    and the receiver answers every request 200 after `answer_after_s` (within the
    rollback's timeout). The one ahead sees the attempt's lease lapse early and takes the
    rollback over while the attempt is still out: it must not send it again before that
    attempt's answer has come and been recorded."""
    plan.replicas, plan.windows, plan.regressed, plan.sigstop = 2, 1, 1, False
    plan.receiver_script = ",".join([f"200:delay={answer_after_s}"] * 4)
    with tempfile.TemporaryDirectory(prefix="postflight-chaos-") as tmp:
        async with SkewedChaos(plan, url, Path(tmp)) as run:
            deploy = await run.register(0)
            sender = await _sender_of(run, deploy, in_flight=True)
            other = next(r for r in run.replicas if r.name != sender)
            assert isinstance(other, SteppedReplica)
            other.offset.write_text(f"{ahead_s}")
            run.log(f"{sender} sends; {other.name}'s clock {ahead_s:+g}s")
            taking = asyncio.create_task(_taken_by(run, deploy, other.name))
            await run.settle(within=plan.window_s + plan.rollback_timeout_s + 30)
            # the taker sends again, if it does, after its takeover wait from the take (the
            # attempt's timeout, then the grace), as store_outage's replica does from the
            # store's return: counted from the take the store showed (or, if none was
            # seen, the settle), where it was counted from the settle, ~6 s later
            taken = taking.result() if taking.done() else time.monotonic()
            taking.cancel()
            run.log(f"{other.name} took it over {time.monotonic() - taken:.1f}s before")
            resend_by = plan.rollback_timeout_s + TAKEOVER_GRACE_S + RESEND_WITHIN_S
            await asyncio.sleep(taken + resend_by - time.monotonic())
            await run.monitor.poll()
            run.count_deliveries()
            for replica in run.replicas:
                said = replica.log.read_text(errors="replace")
                for words in ("has no recorded outcome", f"{deploy} delivered on attempt"):
                    if words in said:
                        run.log(f"{replica.name} said '{words}'")
            return run.f


async def _taken_by(run: Chaos, deploy: str, owner: str) -> float:
    """When the monitor's polls first show `owner` holding `deploy`'s rollback (no sooner
    than it took it: the polls come every `POLL_S`)."""
    while True:
        if (run.monitor.rollbacks.get(deploy) or {}).get("lease_owner") == owner:
            return time.monotonic()
        await asyncio.sleep(POLL_S / 2)


async def _sender_of(run: Chaos, deploy: str, *, in_flight: bool = False) -> str:
    """The replica sending `deploy`'s rollback, once an attempt is (in flight and) out."""
    for _ in range(600):
        await run.monitor.poll()
        b = run.monitor.rollbacks.get(deploy)
        if b is not None and b["state"] == "pending" and b["attempts"] >= 1:
            rows = await run.monitor.fetch(
                "SELECT 1 FROM deliveries WHERE window_id = $1 AND error LIKE 'in flight%'", deploy
            )
            if rows or not in_flight:
                return str(b["lease_owner"])
        await asyncio.sleep(0.05)
    raise RuntimeError("no rollback in flight")
