"""Obvious regressions on small live configs, through the real daemon, as a hidden
acceptance test would drive it: windows of seconds, sub-second intervals.

Not a test; it prints one row per window and a summary. Each batch of cases gets a
`postflight run` of its own (SQLite store in a temp dir), one environment per case, each
probing a local aiohttp target (`/api/health`, 50 ms lognormal, no errors). The rules are
the example configuration's and the contract's: `probe-errors` (`error_rate max 0.05`),
`health-latency` (`latency_p95 max 500ms`) and `health-p95` (`latency_p95 max_increase
50%`); the rollback webhook is a `RollbackReceiver`, alerts an apprise `json://` sink.

Baselines: `bg`: the agent's background runs probe for `--pre` seconds before the deploy
is registered (`POST /v1/deploys`); `prev`: a good `v1` window first, then `v2` with
`previous_version: v1` at once (its stand-in runs the baseline).

Deploy kinds: `err100` (every request 500), `err50`, `lat10` (latency x10), `lat2`,
`good` (no change) and `good_noisy` (no change, lognormal sigma 1.0 before and after).

Per window: its end state, rounds, seconds to the verdict after `deployed_at`, the
rollback requests the receiver got for it, the alerts the sink got naming it (their
titles' last words), the verdict's reason and the registration's warnings. A row is
flagged `!` when a user would call it wrong: a 100% errors or x10 latency deploy not
rolled back, a good one failed or rolled back, a rollback not called exactly once.

    python bench/small_windows.py                       # the default sweep
    python bench/small_windows.py --only 'w=3,.*err100' # a subset (regex on the case)
    python bench/small_windows.py --batch 4 --pre 4
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import re
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.live_judge import start_processes  # noqa: E402
from tests.receivers import JsonSink, RollbackReceiver  # noqa: E402

TOKEN = "small-windows-token-0123456789"
SECRET = "rb-secret-small"
BASE_LATENCY = 0.05
KINDS = ("err100", "err50", "lat10", "lat2", "good", "good_noisy")
MUST_ROLL_BACK = {"err100", "err50", "lat10"}
MUST_NOT_FAIL = {"good", "good_noisy"}


@dataclass
class Case:
    window: int
    interval: str
    probes: int | None
    policy: str
    kind: str
    baseline: str = "bg"
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        probes = "dflt" if self.probes is None else str(self.probes)
        return (
            f"w={self.window},i={self.interval},p={probes},{self.policy},"
            f"{self.baseline},{self.kind}"
        )

    @property
    def env(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


class Target:
    """`/api/health`: 50 ms lognormal (sigma 0.3, or 1.0 for a noisy one), no errors;
    `deploy(kind)` turns it into the new release."""

    def __init__(self, seed: int, noisy: bool) -> None:
        self.rng = random.Random(seed)
        self.sigma = 1.0 if noisy else 0.3
        self.latency = BASE_LATENCY
        self.error_rate = 0.0
        self.requests = 0
        self.failures = 0
        self.port = 0
        self.runner: web.AppRunner | None = None

    def deploy(self, kind: str) -> None:
        if kind == "err100":
            self.error_rate = 1.0
        elif kind == "err50":
            self.error_rate = 0.5
        elif kind == "lat10":
            self.latency = BASE_LATENCY * 10
        elif kind == "lat2":
            self.latency = BASE_LATENCY * 2

    async def health(self, request: web.Request) -> web.Response:
        self.requests += 1
        await asyncio.sleep(self.latency * math.exp(self.sigma * self.rng.gauss(0.0, 1.0)))
        if self.rng.random() < self.error_rate:
            self.failures += 1
            return web.json_response({"status": "error"}, status=500)
        return web.json_response({"status": "ok"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/health", self.health)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def env_yaml(case: Case, target: Target, receiver: str, concurrency: int | None = None) -> str:
    probes = "" if case.probes is None else f"\n    probes_per_round: {case.probes}"
    if concurrency is not None:
        probes += f"\n    max_concurrency: {concurrency}"
    return f"""
  {case.env}:
    base_url: http://127.0.0.1:{target.port}
    window: {case.window}s
    interval: {case.interval}
    background_interval: {case.interval}{probes}
    checks:
      - name: api-health
        type: http
        path: /api/health
        timeout: 2s
        expect:
          status: 200
    analysis:
      policy: {case.policy}
    rules:
      - name: probe-errors
        source: checks
        metric: error_rate
        max: 0.05
      - name: health-latency
        source: checks
        check: api-health
        metric: latency_p95
        max: 500ms
      - name: health-p95
        source: checks
        check: api-health
        metric: latency_p95
        max_increase: 50%
    rollback:
      url: {receiver}
      secret: {SECRET}
    alerts:
      tags: [oncall]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with http.get(f"{base}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the daemon never got ready")


async def register(
    http: aiohttp.ClientSession, base: str, env: str, version: str, previous: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"environment": env, "version": version}
    if previous:
        body["previous_version"] = previous
    async with http.post(
        f"{base}/v1/deploys", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        answer: dict[str, Any] = await r.json()
        assert r.status == 201, answer
        return answer


async def until_ended(http: aiohttp.ClientSession, base: str, deploy_id: str) -> dict[str, Any]:
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    while True:
        async with http.get(f"{base}/v1/deploys/{deploy_id}", headers=hdr) as r:
            d: dict[str, Any] = await r.json()
        pending = (d.get("rollback") or {}).get("state") == "pending"
        if d["state"] not in ("watching", "scheduled") and not pending:
            return d
        await asyncio.sleep(0.25)


def seconds_between(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


async def one(
    case: Case, target: Target, http: aiohttp.ClientSession, base: str, pre: float
) -> None:
    previous = None
    if case.baseline == "prev":
        first = await register(http, base, case.env, "v1", None)
        await until_ended(http, base, first["id"])
        previous = "v1"
    else:
        await asyncio.sleep(pre)
    target.deploy(case.kind)
    answer = await register(http, base, case.env, "v2", previous)
    d = await until_ended(http, base, answer["id"])
    verdict = d.get("verdict") or {}
    decided = verdict.get("decided_at")
    case.row = {
        "id": d["id"],
        "state": d["state"],
        "rounds": d.get("rounds"),
        "decided_s": round(seconds_between(d["deployed_at"], decided), 1) if decided else None,
        "reason": verdict.get("reason", ""),
        "rules": {r["name"]: r["outcome"] for r in verdict.get("rules", [])},
        "details": {r["name"]: r.get("detail") for r in verdict.get("rules", [])},
        "warnings": answer.get("warnings") or [],
    }


async def batch(cases: list[Case], a: argparse.Namespace, tmp: Path, n: int) -> None:
    receiver = RollbackReceiver(SECRET)
    await receiver.start()
    sink = JsonSink()
    await sink.start()
    targets = [Target(a.seed * 1000 + k, c.kind == "good_noisy") for k, c in enumerate(cases)]
    for t in targets:
        await t.start()
    port = free_port()
    here = tmp / f"batch{n:02d}"
    here.mkdir()
    cfg = f"""server:
  listen: 127.0.0.1:{port}
  api_tokens: ["{TOKEN}"]
store:
  url: sqlite:///{here / "postflight.db"}
alerting:
  channels:
    - url: {sink.url()}
      tags: [oncall]
environments:""" + "".join(
        env_yaml(c, t, receiver.url, a.concurrency) for c, t in zip(cases, targets, strict=True)
    )
    (here / "postflight.yaml").write_text(cfg)
    proc, _ = start_processes(here, 0)  # the daemon, its output in daemon.log
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, base)
            await asyncio.gather(
                *(one(c, t, http, base, a.pre) for c, t in zip(cases, targets, strict=True))
            )
            await asyncio.sleep(1.0)  # a last alert on its way to the sink
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        for t in targets:
            await t.stop()
        await receiver.stop()
        await sink.stop()
    for c in cases:
        if not c.row:
            continue
        c.row["rollbacks"] = sum(
            1 for x in receiver.attempts if x.idempotency_key == c.row["id"] and x.accepted
        )
        c.row["attempts"] = sum(1 for x in receiver.attempts if x.idempotency_key == c.row["id"])
        c.row["alerts"] = [
            alert_word(x.title) for x in sink.notifications if c.row["id"] in x.message
        ]
        c.row["flags"] = flags(c)


def alert_word(title: str) -> str:
    """The event a title names: its words after the version."""
    return title.split(": ", 1)[-1][:40]


def flags(c: Case) -> list[str]:
    """What a user would call wrong about this window."""
    r = c.row
    out = []
    if c.kind in MUST_ROLL_BACK and r["state"] != "rolled_back":
        out.append("not rolled back")
    if c.kind in MUST_NOT_FAIL and r["state"] in ("failed", "rolled_back"):
        slow = any(w.startswith("check ") and "took longer than" in w for w in r["warnings"])
        out.append("good deploy failed" + (" (warned: slow answers cut)" if slow else ""))
    if r["state"] == "rolled_back" and r["rollbacks"] != 1:
        out.append(f"{r['rollbacks']} rollbacks")
    if r["state"] == "inconclusive" and c.kind in MUST_ROLL_BACK | MUST_NOT_FAIL:
        told = any("cannot" in w or "too short" in w or "can detect" in w for w in r["warnings"])
        if not told:
            out.append("inconclusive, not warned")
    return out


def matrix(a: argparse.Namespace) -> list[Case]:
    cases: list[Case] = []
    for w, i, k in itertools.product((3, 5, 10, 20), ("250ms", "500ms", "1s"), KINDS):
        cases.append(Case(w, i, None, "sequential", k))
    for w, k in itertools.product((5, 10), KINDS):
        cases.append(Case(w, "500ms", 5, "sequential", k))
    for w, i, k in itertools.product((3, 10), ("250ms", "1s"), KINDS):
        cases.append(Case(w, i, None, "threshold", k))
    for p, k in itertools.product(("sequential", "threshold"), ("lat10", "lat2", "good")):
        cases.append(Case(10, "500ms", None, p, k, baseline="prev"))
    if a.only:
        cases = [c for c in cases if re.search(a.only, c.name)]
    return cases


async def main(a: argparse.Namespace) -> int:
    cases = matrix(a)
    tmp = Path(tempfile.mkdtemp(prefix="pf-small-"))
    print(f"{len(cases)} cases, batches of {a.batch}, in {tmp}", flush=True)
    for n in range(0, len(cases), a.batch):
        group = cases[n : n + a.batch]
        await batch(group, a, tmp, n // a.batch)
        for c in group:
            print_row(c)
    (tmp / "results.json").write_text(
        json.dumps([{"case": c.name, **c.row} for c in cases], indent=1)
    )
    summary(cases)
    return 0


def print_row(c: Case) -> None:
    r = c.row
    if not r:
        print(f"{c.name}: no result", flush=True)
        return
    mark = "!" if r["flags"] else " "
    print(
        f"{mark} {c.name:42} {r['state']:12} rounds={r['rounds']!s:>3} "
        f"t={r['decided_s']!s:>5} rb={r['rollbacks']}/{r['attempts']} "
        f"alerts={'|'.join(r['alerts'])} reason={r['reason'][:110]!r}"
        + (f" FLAGS={r['flags']}" if r["flags"] else "")
        + (f" warnings={[w[:90] for w in r['warnings']]}" if r["warnings"] else ""),
        flush=True,
    )


def summary(cases: list[Case]) -> None:
    print("\n| policy | kind | windows | rolled back | failed | passed | inconclusive | flagged |")
    print("|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[Case]] = {}
    for c in cases:
        groups.setdefault((c.policy, c.kind), []).append(c)
    for (policy, kind), g in sorted(groups.items()):
        states = [c.row.get("state") for c in g]
        flagged = sum(bool(c.row.get("flags")) for c in g)
        print(
            f"| {policy} | {kind} | {len(g)} | {states.count('rolled_back')} | "
            f"{states.count('failed')} | {states.count('passed')} | "
            f"{states.count('inconclusive')} | {flagged} |"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="regex on the case name (w=…,i=…,p=…,policy,baseline,kind)")
    p.add_argument("--batch", type=int, default=6, help="cases per daemon, run at once")
    p.add_argument("--pre", type=float, default=5.0, help="bg: seconds of background probes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, help="max_concurrency (default: unset, 16)")
    sys.exit(asyncio.run(main(p.parse_args())))
