"""Stop at any instant: the real `postflight run` stopped by SIGTERM / SIGINT at random
instants of a busy workload, restarted on the same store each time.

Not a test; it prints figures. Contract §1 promises that on SIGTERM/SIGINT the daemon
stops taking work, finishes or checkpoints in-flight rounds and exits 0 within 10 s
with its state kept. Bugs against that promise (a cancellation dropped in one loop
turn, CPython gh-86296) show only at unlucky instants, so this measures it from outside
at many instants.

The workload (the defaults a user gets, with short windows and intervals): a few
environments on local aiohttp targets; windows registered through the HTTP API all the
time, some of a bad version (its target answers 5xx, the judge fails the window and the
agent sends the signed rollback webhook to a local receiver, which verifies it and
sometimes answers 503 or hangs); alerts to an apprise `json://` sink that sometimes
answers 503 and sometimes hangs past `alerting.timeout`, so retries are owed; background
probing between windows.

Each trial starts the daemon on one SQLite store, waits for `/readyz`, and at a random
instant 0.2-8 s later sends SIGTERM (some trials SIGINT, some a second SIGTERM shortly
after the first). It records the exit code, the seconds from the signal to the exit and
every traceback (or asyncio complaint) on stderr. At the end a last start lets the
windows settle and every registered window is read back through the API.

Counted from outside (contract §3, README "The rollback webhook"): rollback requests at
the receiver per `Idempotency-Key`, a key answered 2xx more than once is a re-sent
rollback, allowed only after a crash (a kill -9 between the 2xx and the agent's record);
this bench kills nothing unless a stop hangs past 30 s, so every other re-send is a
violation. Every attempt of a key must carry the same body and a valid signature.

Good deploys across a stop: the 5 s windows of `alpha`, `beta` and `gamma` (10 probes a
round) end `inconclusive` when good, without the evidence to pass (error_rate's bound
0.078 vs `max: 0.05`; about 250 clean probes are needed). `delta` probes 50 times a
round (5 s windows of 500 ms rounds; 25 a round is the least that passes at all, 250
probes in 10 rounds): a good window passes on evidence even when a stop costs it half
its rounds (a restarted agent skips the slots it missed). Its windows come 6-9 s apart,
so most end before the next supersedes them. A window spans a stop when a signal falls
between its registration and its end (its verdict, else `ends_at`); spanning good
windows should pass about as often as the others, less the ones a stop left with too
few rounds (the judge's state resumed from the store, not restarted or counted twice)
and the ones whose late last round, after a restart, probed a version deployed while
the agent was down (its registration refused: the target serves it all the same).

Every owed alert delivered or given up (contract §4, README `alerting.channels`): from
each window's final state, the end alert (passed, inconclusive, rollback requested) and
its rollback's outcome (delivered, FAILED) are owed; each must reach the sink with a 2xx
at least once. A channel that fails is retried 5 s, 30 s and 2 min after each failure,
then given up: an owed alert never answered 2xx but failed at least 4 times (the send
and its 3 retries) is given up, one failed fewer times is missing (a violation). For
the final settle the sink answers 200 at once, so a retry still owed is delivered when
due, and the settle lasts until every owed alert is delivered or given up (at most
`ALERT_SETTLE_S`). An owed alert answered 2xx twice, with no kill between, is a
duplicate. Breaches and resolves are not owed by a final state and are not counted.

    python bench/stop_anytime.py [--trials 40] [--seed 1] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from agent.api.models import parse_rfc3339
from agent.rollback.contract import verify

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import HOST, free_port  # noqa: E402

TOKEN = "stop-anytime-token-0123456789"
SECRET = "stop-anytime-rollback-secret"
ENVIRONMENTS = {"alpha": 10, "beta": 10, "gamma": 10, "delta": 50}
"""Probes per round: `delta`'s good windows pass on evidence within 5 s."""
GAPS_S = {"delta": (6.0, 9.0)}
"""Seconds between an environment's registrations (default 2-7 s)."""
EVIDENCE_ENV = "delta"
STOP_BOUND_S = 10.0
KILL_AFTER_S = 30.0
SETTLE_S = 45.0
ALERT_SETTLE_S = 180.0
"""The retry schedule (5 s, 30 s, 2 min after each failure) and its sends' timeouts."""
ALERT_TRIES = 4
"""The send and its 3 retries: an alert failed this often may be given up."""

CONFIG = """\
server:
  listen: {host}:{agent_port}
  api_tokens: ["{token}"]
store:
  url: sqlite:///{db}
alerting:
  channels:
    - url: json://{host}:{sink_port}/alerts
      tags: [oncall]
environments:
"""

ENVIRONMENT = """\
  {name}:
    base_url: http://{host}:{target_port}
    window: 5s
    interval: 500ms
    background_interval: 500ms
    probes_per_round: {probes}
    checks:
      - name: api-health
        type: http
        path: /api/health
        expect: {{status: 200}}
    rules:
      - name: probe-errors
        source: checks
        metric: error_rate
        max: 0.05
    rollback:
      url: http://{host}:{receiver_port}/rollback
      secret: "{secret}"
    alerts:
      tags: [oncall]
"""


# ------------------------------------------------------------- the peers


class Target:
    """One environment's service: the version last registered decides how it answers;
    a bad version (`-bad`) answers 500 to most probes."""

    def __init__(self, rng: random.Random) -> None:
        self.version = "v0"
        self.rng = rng
        self.probes = 0

    async def health(self, request: web.Request) -> web.Response:
        self.probes += 1
        await asyncio.sleep(self.rng.uniform(0.002, 0.02))
        if self.version.endswith("-bad") and self.rng.random() < 0.8:
            return web.json_response({"status": "error"}, status=500)
        return web.json_response({"status": "ok", "version": self.version})


@dataclass
class Attempt:
    key: str
    at: float
    """When it arrived (a held attempt is answered after the agent's retry of it)."""
    status: int
    signature_ok: bool
    body_sha: str
    version: str
    open_after: bool = True
    """Whether the agent's connection was still open when the answer was written."""


class Receiver:
    """The pipeline's rollback webhook: verifies the signature, answers 200 after a
    short delay (most), 503 (some) or hangs 15 s then 503 (a few)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.attempts: list[Attempt] = []
        self.held: dict[int, web.Request] = {}

    async def rollback(self, request: web.Request) -> web.Response:
        raw = await request.read()
        arrived = time.monotonic()
        headers = request.headers
        ok = verify(
            SECRET,
            headers.get("X-Postflight-Timestamp", ""),
            raw,
            headers.get("X-Postflight-Signature", ""),
        )
        key = headers.get("Idempotency-Key", "")
        try:
            version = str(json.loads(raw)["deploy"]["version"])
        except (ValueError, KeyError, TypeError):
            version = "?"
        roll = self.rng.random()
        status, delay = (200, self.rng.uniform(0.0, 0.3))
        if roll < 0.05:
            status, delay = 503, 15.0
        elif roll < 0.20:
            status, delay = 503, self.rng.uniform(0.0, 0.1)
        if not ok:
            status = 401
        self.held[id(request)] = request
        try:
            await asyncio.sleep(delay)
        finally:
            self.held.pop(id(request), None)
        transport = request.transport
        open_after = transport is not None and not transport.is_closing()
        sha = hashlib.sha256(raw).hexdigest()[:16]
        self.attempts.append(Attempt(key, arrived, status, ok, sha, version, open_after))
        return web.json_response({"ok": status == 200}, status=status)


@dataclass
class Arrival:
    title: str
    at: float
    status: int
    """503 also for one held past the agent's `alerting.timeout`."""


class Sink:
    """The on-call chat (apprise json://): 200 (most), 503 (some), or hangs 30 s;
    200 to every alert once `calm` (the final settle)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.arrivals: list[Arrival] = []
        self.held: dict[int, web.Request] = {}
        self.calm = False

    @property
    def delivered(self) -> collections.Counter[str]:
        return collections.Counter(a.title for a in self.arrivals if a.status == 200)

    async def alerts(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            title = str(json.loads(body).get("title", ""))
        except ValueError:
            title = "?"
        roll = 1.0 if self.calm else self.rng.random()
        status = 200 if roll >= 0.35 else 503
        self.arrivals.append(Arrival(title, time.monotonic(), status))
        if roll < 0.15:
            self.held[id(request)] = request
            try:
                await asyncio.sleep(30)
            finally:
                self.held.pop(id(request), None)
        return web.json_response({"ok": status == 200}, status=status)


def open_requests(held: dict[int, web.Request]) -> int:
    """Requests a peer holds whose client is still connected (a held request outlives
    an agent that stopped: its handler sleeps on, answering no one)."""
    return sum(1 for r in held.values() if r.transport is not None and not r.transport.is_closing())


async def serve(routes: list[tuple[str, str, Any]]) -> tuple[web.AppRunner, int]:
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, HOST, port).start()
    return runner, port


# ------------------------------------------------------------- the trials


@dataclass
class Trial:
    number: int
    signal: str
    after_s: float
    """From ready to the signal."""
    second_after_s: float | None
    exit_code: int | None
    stop_s: float
    ready_s: float
    killed: bool = False
    signalled_at: float = 0.0
    """Wall-clock time of the (first) signal."""
    tracebacks: list[str] = field(default_factory=list)
    running: dict[str, Any] = field(default_factory=dict)
    """What the peers saw in flight at the signal."""
    last_lines: list[str] = field(default_factory=list)


@dataclass
class Registered:
    id: str
    environment: str
    version: str
    trial: int


class Bench:
    def __init__(self, workdir: Path, rng: random.Random) -> None:
        self.workdir = workdir
        self.rng = rng
        self.schedule = random.Random(rng.random())
        """The trials' signals and instants: their own stream, so a seed gives the same
        schedule however often the workload drew meanwhile."""
        self.targets = {name: Target(random.Random(rng.random())) for name in ENVIRONMENTS}
        self.receiver = Receiver(random.Random(rng.random()))
        self.sink = Sink(random.Random(rng.random()))
        self.registered: list[Registered] = []
        self.register_errors: collections.Counter[str] = collections.Counter()
        self.kills_at: list[float] = []
        self.counter = 0
        self.agent_port = free_port()
        self.runners: list[web.AppRunner] = []
        self.config = workdir / "postflight.yaml"
        self.last_registration = 0.0
        self.live: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.agent_port}"

    async def start_peers(self) -> None:
        ports = {}
        for name, target in self.targets.items():
            runner, ports[name] = await serve([("GET", "/api/health", target.health)])
            self.runners.append(runner)
        runner, receiver_port = await serve([("POST", "/rollback", self.receiver.rollback)])
        self.runners.append(runner)
        runner, sink_port = await serve([("POST", "/alerts", self.sink.alerts)])
        self.runners.append(runner)
        common = {"host": HOST, "token": TOKEN, "secret": SECRET}
        text = CONFIG.format(
            agent_port=self.agent_port,
            db=self.workdir / "postflight.db",
            sink_port=sink_port,
            **common,
        )
        for name, probes in ENVIRONMENTS.items():
            text += ENVIRONMENT.format(
                name=name,
                target_port=ports[name],
                receiver_port=receiver_port,
                probes=probes,
                **common,
            )
        self.config.write_text(text)

    async def stop_peers(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    async def launch(self, stderr: Path) -> asyncio.subprocess.Process:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY", "NEW_RELIC"))}
        with stderr.open("ab") as err:
            self.live = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agent",
                "run",
                "--config",
                str(self.config),
                cwd=ROOT,
                env=env,
                stdout=err,
                stderr=err,
            )
            return self.live

    async def kill_live(self) -> None:
        """The bench interrupted (or failed) mid-trial: no agent left behind."""
        if self.live is not None and self.live.returncode is None:
            self.live.kill()
            await self.live.wait()

    async def wait_ready(
        self, proc: asyncio.subprocess.Process, http: aiohttp.ClientSession
    ) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"the agent exited with {proc.returncode} before ready")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(f"{self.url}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError("the agent was not ready within 60 s")

    async def register_forever(self, http: aiohttp.ClientSession, trial: int) -> None:
        """Each environment gets a new window every 2-7 s (`GAPS_S`); about a third are bad."""
        due = {name: time.monotonic() + self.rng.uniform(0.0, 2.0) for name in ENVIRONMENTS}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        while True:
            name = min(due, key=due.__getitem__)
            await asyncio.sleep(max(0.0, due[name] - time.monotonic()))
            due[name] = time.monotonic() + self.rng.uniform(*GAPS_S.get(name, (2.0, 7.0)))
            self.counter += 1
            bad = self.rng.random() < 0.35
            version = f"v{self.counter}" + ("-bad" if bad else "")
            previous = self.targets[name].version
            self.targets[name].version = version
            body = {"environment": name, "version": version, "previous_version": previous}
            self.last_registration = time.monotonic()
            try:
                async with http.post(f"{self.url}/v1/deploys", json=body, headers=auth) as resp:
                    if resp.status == 201:
                        deploy = await resp.json()
                        self.registered.append(Registered(deploy["id"], name, version, trial))
                    else:
                        self.register_errors[f"HTTP {resp.status}"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.register_errors[type(exc).__name__] += 1

    async def trial(self, number: int, http: aiohttp.ClientSession) -> Trial:
        stderr = self.workdir / f"trial-{number:03d}.log"
        started = time.monotonic()
        proc = await self.launch(stderr)
        await self.wait_ready(proc, http)
        ready_s = time.monotonic() - started
        registering = asyncio.create_task(self.register_forever(http, number))
        after = self.schedule.uniform(0.2, 8.0)
        roll = self.schedule.random()
        sig = signal.SIGINT if roll < 0.25 else signal.SIGTERM
        second = self.schedule.uniform(0.05, 1.5) if roll > 0.8 else None
        await asyncio.sleep(after)
        running = {
            "sink_hanging": open_requests(self.sink.held),
            "rollbacks_in_flight": open_requests(self.receiver.held),
            "since_registration_s": round(time.monotonic() - self.last_registration, 2),
        }
        proc.send_signal(sig)
        sent, signalled_at = time.monotonic(), time.time()
        killed = False
        try:
            if second is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), second)
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_AFTER_S)
            except TimeoutError:
                killed = True
                proc.kill()
                self.kills_at.append(time.monotonic())
                await proc.wait()
        finally:
            stop_s = time.monotonic() - sent
            registering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await registering
        text = stderr.read_text(errors="replace")
        return Trial(
            number=number,
            signal=sig.name + ("+SIGTERM" if second is not None else ""),
            after_s=round(after, 3),
            second_after_s=None if second is None else round(second, 3),
            exit_code=proc.returncode,
            stop_s=round(stop_s, 3),
            ready_s=round(ready_s, 2),
            killed=killed,
            signalled_at=signalled_at,
            tracebacks=tracebacks(text),
            running=running,
            last_lines=text.splitlines()[-12:],
        )

    async def settle_and_read(self, http: aiohttp.ClientSession) -> tuple[dict[str, Any], Trial]:
        """A last start: let windows end, rollbacks be delivered and owed alerts be
        delivered or given up (the sink answers 200 now), then read every registered
        window back through the API, and stop it (measured too)."""
        stderr = self.workdir / "final.log"
        started = time.monotonic()
        proc = await self.launch(stderr)
        await self.wait_ready(proc, http)
        ready_s = time.monotonic() - started
        auth = {"Authorization": f"Bearer {TOKEN}"}
        self.sink.calm = True
        deadline = time.monotonic() + SETTLE_S
        alerts_deadline = deadline + ALERT_SETTLE_S
        seen: dict[str, dict[str, Any] | None] = {}
        while True:
            seen = {}
            for reg in self.registered:
                async with http.get(f"{self.url}/v1/deploys/{reg.id}", headers=auth) as resp:
                    seen[reg.id] = await resp.json() if resp.status == 200 else None
            pending = [
                d
                for d in seen.values()
                if d is not None
                and (
                    d["state"] == "watching"
                    or (d.get("rollback") or {}).get("state") == "pending"
                    or open_requests(self.receiver.held) > 0
                )
            ]
            alerts_open = any(
                a["outcome"] == "open" for a in owed_alerts(seen, self.sink.arrivals, [])
            )
            now = time.monotonic()
            if (not pending or now > deadline) and (not alerts_open or now > alerts_deadline):
                break
            await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_AFTER_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        text = stderr.read_text(errors="replace")
        final = Trial(
            number=0,
            signal="SIGTERM (final)",
            after_s=0.0,
            second_after_s=None,
            exit_code=proc.returncode,
            stop_s=round(time.monotonic() - sent, 3),
            ready_s=round(ready_s, 2),
            tracebacks=tracebacks(text),
            last_lines=text.splitlines()[-12:],
        )
        return dict(seen), final


def tracebacks(text: str) -> list[str]:
    """Each traceback's last line (the exception) and asyncio's complaints about tasks."""
    found = []
    lines = text.splitlines()
    complaints = (
        "Task exception was never retrieved",
        "Task was destroyed but it is pending",
        "Exception ignored in",
        "Unclosed client session",
        "Unclosed connection",
    )
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)") or "Traceback (most" in line:
            tail = next(
                (x for x in lines[i + 1 :] if x and not x.startswith((" ", "\t"))),
                "?",
            )
            found.append(tail.strip())
        elif any(c in line for c in complaints):
            found.append(line.strip()[:200])
    return found


# ------------------------------------------------------------- the figures

TITLE = re.compile(r"^\[postflight\] (\S+) (\S+): (.*)$")
EVENTS = (
    ("deploy passed", "passed"),
    ("inconclusive", "inconclusive"),
    ("rollback requested", "rollback_requested"),
    ("rollback delivered", "rollback_delivered"),
    ("ROLLBACK", "rollback_failed"),  # FAILED, or NOT SENT (a newer deploy came)
    ("deploy failed", "failed"),
)
"""An alert's event by the start of its title's summary (`alerting.events.EVENTS`)."""


def alert_of(title: str) -> tuple[str, str] | None:
    """(version, event) of an owed alert's title; None for another (a breach...)."""
    match = TITLE.match(title)
    if match is None:
        return None
    event = next((e for start, e in EVENTS if match[3].startswith(start)), None)
    return None if event is None else (match[2], event)


def owed_events(deploy: dict[str, Any]) -> list[str]:
    """The alerts a window read back owes by its final state and rollback (none while
    it is watching; a rollback still pending owes its outcome later)."""
    owed = {"passed": ["passed"], "inconclusive": ["inconclusive"]}.get(deploy["state"], [])
    rollback = deploy.get("rollback") or {}
    if rollback:
        owed.append("rollback_requested")
        owed += {"delivered": ["rollback_delivered"], "failed": ["rollback_failed"]}.get(
            rollback.get("state", ""), []
        )
    elif deploy["state"] == "failed":
        owed.append("failed")
    return owed


def owed_alerts(
    seen: dict[str, Any], arrivals: list[Arrival], kills_at: list[float]
) -> list[dict[str, Any]]:
    """Each owed alert with its arrivals at the sink: `delivered` (a 2xx), `given_up`
    (failed `ALERT_TRIES` times or more, never 2xx) or `open` (fewer: owed still, or
    missing once settled); `duplicate` when 2xx'd twice with no kill between."""
    at_sink: dict[tuple[str, str], list[Arrival]] = collections.defaultdict(list)
    for arrival in arrivals:
        key = alert_of(arrival.title)
        if key is not None:
            at_sink[key].append(arrival)
    owed = []
    for deploy in seen.values():
        for event in owed_events(deploy) if deploy is not None else []:
            came = at_sink.get((deploy["version"], event), [])
            ok = sorted(a.at for a in came if a.status == 200)
            outcome = "delivered" if ok else "given_up" if len(came) >= ALERT_TRIES else "open"
            owed.append(
                {
                    "deploy": deploy["id"],
                    "version": deploy["version"],
                    "event": event,
                    "outcome": outcome,
                    "statuses": [a.status for a in came],
                    "duplicate": any(
                        not any(first < k < later for k in kills_at)
                        for first, later in itertools.pairwise(ok)
                    ),
                }
            )
    return owed


def spans_a_stop(deploy: dict[str, Any], signals: list[float]) -> bool:
    """Whether a signal fell between the window's registration and its end (its
    verdict's time, else `ends_at`)."""
    start = parse_rfc3339(deploy["deployed_at"]).timestamp()
    ended = (deploy.get("verdict") or {}).get("decided_at") or deploy["ends_at"]
    end = parse_rfc3339(ended).timestamp()
    return any(start < at < end for at in signals)


def window_ends(bench: Bench, trials: list[Trial], seen: dict[str, Any]) -> dict[str, Any]:
    """Per version kind (good, bad), `EVIDENCE_ENV` apart: how the windows read back
    ended, all and those spanning a stop; and the rounds each spanning good
    `EVIDENCE_ENV` window ran, by its end (it passes from 5, 250 probes, on: a judge
    restarted by the stop would need 5 after it, one counting rounds twice fewer)."""
    signals = [t.signalled_at for t in trials]
    ends: dict[str, dict[str, collections.Counter[str]]] = {}
    rounds: dict[str, list[int]] = collections.defaultdict(list)
    for reg in bench.registered:
        deploy = seen.get(reg.id)
        if deploy is None:
            continue
        kind = ("bad" if reg.version.endswith("-bad") else "good") + (
            f" {EVIDENCE_ENV}" if reg.environment == EVIDENCE_ENV else ""
        )
        spanning = spans_a_stop(deploy, signals)
        rows = ends.setdefault(
            kind, {"all": collections.Counter(), "spanning": collections.Counter()}
        )
        rows["all"][deploy["state"]] += 1
        if spanning:
            rows["spanning"][deploy["state"]] += 1
            if kind == f"good {EVIDENCE_ENV}":
                rounds[deploy["state"]].append(deploy["rounds"])
    good_failed = sum(
        rows["all"][state]
        for kind, rows in ends.items()
        if kind.startswith("good")
        for state in ("failed", "rolled_back")
    )
    return {
        "by_kind": {k: {r: dict(c) for r, c in rows.items()} for k, rows in sorted(ends.items())},
        "good_failed_or_rolled_back": good_failed,
        "evidence_spanning_rounds": {state: sorted(n) for state, n in sorted(rounds.items())},
    }


def alert_figures(bench: Bench, seen: dict[str, Any]) -> dict[str, Any]:
    owed = owed_alerts(seen, bench.sink.arrivals, bench.kills_at)
    outcomes = collections.Counter(a["outcome"] for a in owed)
    return {
        "owed": len(owed),
        "owed_by_event": dict(collections.Counter(a["event"] for a in owed)),
        "delivered": outcomes["delivered"],
        "given_up": [a for a in owed if a["outcome"] == "given_up"],
        "missing": [a for a in owed if a["outcome"] == "open"],
        "duplicates": [a for a in owed if a["duplicate"]],
        "delivered_on_a_retry": sum(
            1 for a in owed if a["outcome"] == "delivered" and a["statuses"][0] != 200
        ),
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def findings(
    bench: Bench, trials: list[Trial], final: Trial, seen: dict[str, Any]
) -> dict[str, Any]:
    stops = [t.stop_s for t in trials]
    by_key: dict[str, list[Attempt]] = collections.defaultdict(list)
    for attempt in sorted(bench.receiver.attempts, key=lambda a: a.at):
        by_key[attempt.key].append(attempt)
    versions = {r.id: r for r in bench.registered}
    duplicates: list[dict[str, Any]] = []
    unheard_resent: list[str] = []
    mixed = []
    for key, attempts in by_key.items():
        if len({a.body_sha for a in attempts}) > 1 or not all(a.signature_ok for a in attempts):
            mixed.append(key)
        heard: Attempt | None = None  # a 2xx written while the agent's connection was open
        unheard: Attempt | None = None  # a 2xx written after it hung up (cut or timed out)
        for attempt in attempts:
            for first, bucket in ((heard, "heard"), (unheard, "unheard")):
                if first is None or any(first.at < k < attempt.at for k in bench.kills_at):
                    continue
                if bucket == "heard":
                    duplicates.append({"key": key, "status": attempt.status})
                elif key not in unheard_resent:
                    unheard_resent.append(key)
            if attempt.status == 200:
                if attempt.open_after:
                    heard = heard or attempt
                else:
                    unheard = unheard or attempt
    states = collections.Counter(
        "lost" if d is None else d["state"] for d in (seen.get(r.id) for r in bench.registered)
    )
    lost = [r.id for r in bench.registered if seen.get(r.id) is None]
    good_rolled_back = [
        k
        for k, a in by_key.items()
        if any(x.status == 200 for x in a) and "-bad" not in a[0].version
    ]
    rolled_not_received = [
        i
        for i, d in seen.items()
        if d is not None
        and d["state"] == "rolled_back"
        and not any(a.status == 200 for a in by_key.get(i, []))
    ]
    received_not_rolled = [
        k
        for k, a in by_key.items()
        if any(x.status == 200 for x in a)
        and k in seen
        and seen[k] is not None
        and seen[k]["state"] != "rolled_back"
    ]
    rollback_states = collections.Counter(
        (d.get("rollback") or {}).get("state", "none")
        for d in seen.values()
        if d is not None and d.get("rollback")
    )
    over = [t for t in trials if t.stop_s > STOP_BOUND_S or t.killed]
    return {
        "trials": len(trials),
        "exit_codes": dict(collections.Counter(str(t.exit_code) for t in trials)),
        "signals": dict(collections.Counter(t.signal for t in trials)),
        "stop_s": {
            "p50": round(statistics.median(stops), 3) if stops else None,
            "p90": round(pct(stops, 0.9), 3),
            "max": round(max(stops), 3) if stops else None,
            "bound": STOP_BOUND_S,
        },
        "ready_s_p50": round(statistics.median(t.ready_s for t in trials), 2) if trials else None,
        "over_bound": [
            {
                "trial": t.number,
                "signal": t.signal,
                "after_s": t.after_s,
                "stop_s": t.stop_s,
                "killed": t.killed,
                "running": t.running,
                "last_lines": t.last_lines,
            }
            for t in over
        ],
        "nonzero_exits": [
            {"trial": t.number, "exit_code": t.exit_code, "signal": t.signal, "after_s": t.after_s}
            for t in trials
            if t.exit_code != 0
        ],
        "tracebacks": [
            {"trial": t.number, "signal": t.signal, "after_s": t.after_s, "seen": t.tracebacks}
            for t in [*trials, final]
            if t.tracebacks
        ],
        "signalled_while": {
            "a_rollback_in_flight": sum(1 for t in trials if t.running["rollbacks_in_flight"]),
            "an_alert_hanging": sum(1 for t in trials if t.running["sink_hanging"]),
            "within_0.5s_of_a_registration": sum(
                1 for t in trials if t.running["since_registration_s"] < 0.5
            ),
        },
        "per_trial": [{k: v for k, v in asdict(t).items() if k != "last_lines"} for t in trials],
        "final_stop": {"exit_code": final.exit_code, "stop_s": final.stop_s},
        "windows_registered": len(bench.registered),
        "bad_registered": sum(1 for r in bench.registered if r.version.endswith("-bad")),
        "register_errors": dict(bench.register_errors),
        "windows_lost": lost,
        "window_states": dict(states),
        "rollback_states": dict(rollback_states),
        "rollback_requests": len(bench.receiver.attempts),
        "rollback_keys": len(by_key),
        "rollback_keys_2xx": sum(1 for a in by_key.values() if any(x.status == 200 for x in a)),
        "rollback_duplicates": duplicates,
        "rollback_resent_after_an_unheard_2xx": unheard_resent,
        "rollback_mixed_body_or_bad_signature": mixed,
        "rollback_of_good_version": good_rolled_back,
        "rolled_back_but_receiver_never_2xx": rolled_not_received,
        "receiver_2xx_but_not_rolled_back": received_not_rolled,
        "unknown_keys": [k for k in by_key if k not in versions],
        "window_ends": window_ends(bench, trials, seen),
        "alerts_owed": alert_figures(bench, seen),
        "alert_arrivals": len(bench.sink.arrivals),
        "alert_deliveries_2xx": sum(bench.sink.delivered.values()),
        "alert_titles_delivered_twice": sum(1 for n in bench.sink.delivered.values() if n > 1),
        "kills": len(bench.kills_at),
    }


def show(result: dict[str, Any]) -> None:
    s = result["stop_s"]
    print(f"trials: {result['trials']}   signals: {result['signals']}")
    print(f"exit codes: {result['exit_codes']}   ready p50 {result['ready_s_p50']} s")
    print(f"stop (signal to exit): p50 {s['p50']} s, p90 {s['p90']} s, max {s['max']} s", end="")
    print(f" (bound {s['bound']} s)")
    print(f"signals that landed while (trials): {result['signalled_while']}")
    print(f"trials over {s['bound']:.0f} s: {len(result['over_bound'])}")
    for over in result["over_bound"]:
        print(f"  trial {over['trial']}: {over['signal']} {over['after_s']} s after ready,")
        print(f"    stopped in {over['stop_s']} s (killed: {over['killed']}),", end="")
        print(f" peers: {over['running']}")
        for line in over["last_lines"]:
            print(f"      | {line[:160]}")
    print(f"non-zero exits: {result['nonzero_exits'] or 'none'}")
    print(f"tracebacks on stderr: {len(result['tracebacks'])} trials")
    for tb in result["tracebacks"]:
        print(f"  trial {tb['trial']} ({tb['signal']} at {tb['after_s']} s): {tb['seen'][:5]}")
    print(f"final start (settle, read back, SIGTERM): {result['final_stop']}")
    print(
        f"windows: {result['windows_registered']} registered ({result['bad_registered']} bad),"
        f" {len(result['windows_lost'])} lost; states {result['window_states']}"
    )
    print(f"registrations refused or cut: {result['register_errors']}")
    print(
        f"rollbacks at the receiver: {result['rollback_requests']} requests,"
        f" {result['rollback_keys']} keys, {result['rollback_keys_2xx']} answered 2xx;"
        f" agent's rollback states {result['rollback_states']}"
    )
    rows = [
        ("sent again after a 2xx it heard, no kill between (violation)", "rollback_duplicates"),
        (
            "sent again after a 2xx written once it had hung up (a retry, §3)",
            "rollback_resent_after_an_unheard_2xx",
        ),
        ("keys with differing bodies or a bad signature", "rollback_mixed_body_or_bad_signature"),
        ("rollbacks of a good version", "rollback_of_good_version"),
        ("rolled_back but never 2xx at the receiver", "rolled_back_but_receiver_never_2xx"),
        ("2xx at the receiver but not rolled_back", "receiver_2xx_but_not_rolled_back"),
    ]
    for words, key in rows:
        print(f"  {words}: {len(result[key])}")
        for item in result[key]:
            print(f"    {item}")
    print(
        f"alerts at the sink: {result['alert_arrivals']} arrivals,"
        f" {result['alert_deliveries_2xx']} delivered (2xx),"
        f" {result['alert_titles_delivered_twice']} titles delivered more than once"
    )
    show_ends(result["window_ends"])
    show_owed(result["alerts_owed"])
    print(f"agents killed after {KILL_AFTER_S:.0f} s: {result['kills']}")


def show_ends(ends: dict[str, Any]) -> None:
    print("windows by version kind, how they ended (of which spanning a stop):")
    for kind, rows in ends["by_kind"].items():
        states = ", ".join(
            f"{state} {n} ({rows['spanning'].get(state, 0)})"
            for state, n in sorted(rows["all"].items())
        )
        print(f"  {kind}: {states}")
    print(f"  good windows rolled back or failed: {ends['good_failed_or_rolled_back']}")
    good = ends["by_kind"].get(f"good {EVIDENCE_ENV}", {"all": {}, "spanning": {}})
    spanning, everyone = sum(good["spanning"].values()), sum(good["all"].values())
    passed_spanning = good["spanning"].get("passed", 0)
    passed_other = good["all"].get("passed", 0) - passed_spanning
    print(
        f"  good {EVIDENCE_ENV} windows passed: {passed_spanning} of {spanning} spanning a stop"
        f" ({share(passed_spanning, spanning)}), {passed_other} of {everyone - spanning}"
        f" not ({share(passed_other, everyone - spanning)})"
    )
    print(f"  rounds of those spanning a stop, by end: {ends['evidence_spanning_rounds']}")


def show_owed(owed: dict[str, Any]) -> None:
    print(
        f"owed alerts (by final state): {owed['owed']} {owed['owed_by_event']};"
        f" delivered {owed['delivered']} ({owed['delivered_on_a_retry']} on a retry),"
        f" given up {len(owed['given_up'])}, missing (violation) {len(owed['missing'])},"
        f" delivered twice with no kill between {len(owed['duplicates'])}"
    )
    for words in ("given_up", "missing", "duplicates"):
        for item in owed[words]:
            print(f"    {words}: {item}")


def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


async def run(trials: int, seed: int, workdir: Path, as_json: bool) -> dict[str, Any]:
    bench = Bench(workdir, random.Random(seed))
    await bench.start_peers()
    done: list[Trial] = []
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for number in range(1, trials + 1):
                trial = await bench.trial(number, http)
                done.append(trial)
                if not as_json:
                    flag = "" if trial.exit_code == 0 and trial.stop_s <= STOP_BOUND_S else "  <--"
                    flag += "  traceback" if trial.tracebacks else ""
                    print(
                        f"trial {number:3d}: {trial.signal:<16} at {trial.after_s:5.2f} s,"
                        f" exit {trial.exit_code}, stop {trial.stop_s:6.3f} s{flag}",
                        flush=True,
                    )
            seen, final = await bench.settle_and_read(http)
    finally:
        await bench.kill_live()
        await bench.stop_peers()
    return findings(bench, done, final, seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--keep", type=Path, help="keep the store and logs in this directory")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # cleans up as Ctrl-C does
    with tempfile.TemporaryDirectory(prefix="stop-anytime-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run(args.trials, args.seed, workdir, args.json))
    result["seed"] = args.seed
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        show(result)  # per-trial rows: --json


if __name__ == "__main__":
    main()
