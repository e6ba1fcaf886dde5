"""Good deploys on a busy host: does a real `postflight run` roll back an A/A deploy when
its targets share the agent's CPU with hogs?

Not a test; it prints figures (`--json`: one object). A window probes its environment as
its background runs did (the same `probes_per_round` a round), but the agent does more
around it (judging, storing rounds): on a starved host the target may answer slower
during windows than during the baseline, or the agent read it later, a false regression
of the agent's own making. Here, as a user runs it: the daemon on the example's defaults
(sequential policy, 40 probes a round, 30 s rounds and background runs; only `window`
shortened, `--window`), `--envs` environments, each with its own target in a process of
its own (aiohttp, `--latency` ± `--jitter`, never an error) and the example's
`production` as far as such a target serves it (`config/postflight.example.yaml`: its
`api-health` check, timeout 2s, max_latency 500ms; its analysis; its rules `probe-errors`
max 0.05 and `health-latency` p95 max 300ms) plus `health-p95` (latency_p95
max_increase 50%), a rollback webhook to a receiver in its own process. `--hogs` busy
loops at `--hog-nice` (the host's other work, at a user's default priority) run
throughout; after `--pre` seconds of background runs every environment's deploy is
registered at once, as a pipeline does (`POST /v1/deploys` from this process: a CI
runner's CLI is not on the agent's host; 12 `register --wait` started here stalled the
agent's first round).

Counted outside the agent's bookkeeping: rollbacks at the receiver; verdicts from the API.
From the store: each window's probe latency p95 (its rounds' stand-ins for background
runs) against its baseline's (the background runs before the deploy), failed probes
(timeouts: the targets never err) and latencies the agent dropped as its own stall's
(`checks.lag`). From each target: its own handler time p95 before and during the window
(a sleep overshoot is the target starved; each request kept in the run's directory), and
each probe's latency less its handler time.

Measured (session 46, 12 environments of a 50 ± 5 ms target, 2-core host already at load
11-19 from other work): 2 hogs, 5m windows: 0 rollbacks, 5 passed and 7 inconclusive
(`health-p95` short of evidence of a pass), 0 timeouts in 2,400 baseline and 4,800
window probes, p95 86-105 ms in windows against 92-124 ms in their baselines (lower in
12 of 12); 4 hogs (load 19-23), 6m windows: 0 rollbacks, 12 inconclusive, 0 timeouts in
8,160 probes, p95 142-172 against 127-195 (higher in 8 of 12: the host got busier, the
targets' own handler p95 104-122 ms before, 114-142 during). Paired request by request
(`outside_handler_p95_ms`), the time outside the target's handler (its process waiting
for a CPU to read and answer, and the wire) had a p95 of 39-101 ms in the baselines and
52-76 ms in the 10 windows that paired. Two more runs at 2 hogs: windows higher in 12 of
12 (p95 102-126 ms against 91-108, the targets' handler p95 89-99 against 75-86), then
lower in 12 of 12 (80-88 against 96-107; 11 passed), 0 rollbacks and 0 timeouts in both;
the agent took 1.1% of a core between windows and 2.1% during them (`agent_cpu_pct`),
nothing beside load 15-22: which side is slower follows the host, not the window.

`--regress`: every other environment's new version (`rgNN`) answers in 100 ± 10 ms from
its deploy (`POST /deploy` to its target just before the registration); the rest stay A/A.
Per window: when its first rollback reached the receiver (`rollback_after_s`), the share of
its latencies the agent dropped (`dropped_share`), and the target's handler p95 for the
probes whose latency was kept against all it served (`target_p95_kept_all_ms`). Measured
(session 46, 5m windows): 2 hogs (load 10-20): 6 of 6 regressions rolled back, all at the
window's end (297 s), 0 of 6 A/A; 4 hogs (load 15-22): 1 of 6 (at 297 s), 5 inconclusive,
0 of 6 A/A. Dropping did not bias: 0-9% dropped per window, the kept probes' handler p95
within 2 ms of all (121-129 ms vs 123-129 in the regressed). The host's delay outside the
handler adds to both sides, diluting the relative change: baseline p95 77-81 ms against
124-134 (+55-70%) at 2 hogs, 94-110 against 133-144 (+28-48%, under the 50% bound) at 4.
No hogs (load 3 to 1): 6 of 6, also all at 297 s (p95 56-65 against 110-111 ms): the
window's end is the policy's, not the host's.

    python bench/busy_host.py [--envs 12] [--hogs 2] [--window 5m] [--pre 150] [--json]
    python bench/busy_host.py target LATENCY JITTER SEED   # one target; prints its port
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.footprint import cpu_seconds, percentile  # noqa: E402
from bench.overload import SECRET, probe_counts, received, start_receiver  # noqa: E402
from tests.e2e import crash  # noqa: E402
from tests.e2e.crash import free_port  # noqa: E402

HOG = "while True: pass"
REGRESSION = 2.0
"""`--regress`: the new version's latency (and jitter) factor: 100 ± 10 ms for 50 ± 5."""


def serve_target(latency: float, jitter: float, seed: int) -> None:
    """A service answering `/api/health` in `latency` ± `jitter` seconds, never an error;
    `/stats`: each request's arrival (wall clock) and its handler's time; `POST /deploy`:
    the new version from now on, `REGRESSION` times slower (a real regression)."""
    from aiohttp import web

    rng = random.Random(seed)
    handled: list[tuple[float, float]] = []
    factor = [1.0]

    async def health(request: web.Request) -> web.Response:
        arrived, start = time.time(), time.monotonic()
        await asyncio.sleep(factor[0] * (latency + rng.uniform(-jitter, jitter)))
        handled.append((arrived, time.monotonic() - start))
        return web.json_response({"status": "ok"})

    async def deploy(request: web.Request) -> web.Response:
        factor[0] = REGRESSION
        return web.json_response({"factor": factor[0]})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(handled)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/api/health", health)
        app.router.add_get("/stats", stats)
        app.router.add_post("/deploy", deploy)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(site.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def start_target(a: argparse.Namespace, seed: int) -> tuple[subprocess.Popen[bytes], str]:
    args = ["target", str(a.latency), str(a.jitter), str(seed)]
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{int(proc.stdout.readline())}"


def environment(url: str, receiver: str, window: str) -> dict[str, Any]:
    """The example's `production` as far as a local target serves it: its `api-health`
    check, its analysis and the rules on that check, plus a `max_increase` on its p95;
    `window` shortened, a rollback webhook to `receiver`."""
    example = yaml.safe_load((ROOT / "config" / "postflight.example.yaml").read_text())
    production = example["environments"]["production"]
    rules = [r for r in production["rules"] if r["name"] in ("probe-errors", "health-latency")]
    rules.append({**rules[-1], "name": "health-p95", "max_increase": "50%"})
    del rules[-1]["max"]
    return {
        "base_url": url,
        "window": window,
        "checks": [c for c in production["checks"] if c["name"] == "api-health"],
        "analysis": production["analysis"],
        "rules": rules,
        "rollback": {"url": receiver, "secret": SECRET, "max_attempts": 8},
    }


def register(port: int, env: str) -> str:
    """Register a deploy of `env` as a pipeline's step does (`POST /v1/deploys`, from
    outside the host's CPU budget: no CLI process starting beside the agent); its id."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/deploys",
        data=json.dumps({"environment": env, "version": "v1"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {crash.TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(json.loads(response.read())["id"])


def verdicts(port: int, ids: list[str]) -> list[dict[str, Any]]:
    """Each deploy once its window ended (the API read every 5 s, as a waiting step does)."""
    while True:
        deploys = [api(port, f"/v1/deploys/{i}") for i in ids]
        if all(d["state"] not in ("scheduled", "watching") for d in deploys):
            return deploys
        time.sleep(5)


def api(port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {crash.TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def store_latencies(workdir: Path, env: str, deployed_at: float) -> dict[str, Any]:
    """The background runs' latencies before `deployed_at` and the window's rounds'
    (their stand-ins), with each side's failed probes."""
    before: list[float | None] = []
    during: list[float | None] = []
    failed = {"baseline": 0, "window": 0}
    dropped = {"baseline": 0, "window": 0}
    for (summary,) in crash.store_rows(
        workdir,
        "SELECT summary FROM probe_summaries WHERE environment = ? AND at < ?",
        env,
        deployed_at,
    ):
        run = json.loads(summary)
        before += run["latency"]
        failed["baseline"] += run["ok"].count(0)
        dropped["baseline"] += run["latency"].count(None)
    rounds = crash.store_rows(
        workdir,
        "SELECT r.summary FROM rounds r JOIN windows w ON w.id = r.window_id"
        " WHERE w.environment = ?",
        env,
    )
    for (summary,) in rounds:
        for run in json.loads(summary).get("stand_ins", []):
            during += run["latency"]
            failed["window"] += run["ok"].count(0)
            dropped["window"] += run["latency"].count(None)
    kept = {"baseline": [x for x in before if x is not None]}
    kept["window"] = [x for x in during if x is not None]
    return {
        "baseline_latencies": len(kept["baseline"]),
        "window_latencies": len(kept["window"]),
        "baseline_p95_ms": round(1000 * percentile(kept["baseline"], 0.95), 1),
        "window_p95_ms": round(1000 * percentile(kept["window"], 0.95), 1),
        "baseline_max_ms": round(1000 * max(kept["baseline"], default=0.0), 1),
        "window_max_ms": round(1000 * max(kept["window"], default=0.0), 1),
        "failed": failed,
        "latency_dropped": dropped,
        "rounds": len(rounds),
        "_probed": {"baseline": before, "window": during},
    }


def target_side(url: str, deployed_at: float, ended_at: float, keep: Path) -> dict[str, Any]:
    """The target's own handler time p95 (ms) before and during the window; each request's
    arrival and handler time kept in `keep`."""
    with urllib.request.urlopen(f"{url}/stats", timeout=60) as response:
        handled = json.loads(response.read())
    keep.write_text(json.dumps(handled))
    before = [d for at, d in sorted(handled) if at < deployed_at]
    during = [d for at, d in sorted(handled) if deployed_at <= at < ended_at]
    return {
        "target_baseline_p95_ms": round(1000 * percentile(before, 0.95), 1),
        "target_window_p95_ms": round(1000 * percentile(during, 0.95), 1),
        "_handled": {"baseline": before, "window": during},
    }


def outside_handler(probed: list[float | None], handled: list[float], head: bool) -> float | None:
    """p95 (ms) of each probe's latency less the target's handler time for it, paired in
    order: the time the target's process took to read and answer outside its handler, and
    the wire's. The target's extra arrivals are a background run the window's start cut:
    its first probes before the deploy (`head`: pair from the start), its last one after
    (pair from the end). None where the pairing fails (a latency shorter than its handler
    time: a probe the agent dropped whole)."""
    handled = handled[: len(probed)] if head else handled[len(handled) - len(probed) :]
    outside = [x - d for x, d in zip(probed, handled, strict=False) if x is not None]
    if len(handled) != len(probed) or min(outside, default=0.0) < 0:
        return None
    return round(1000 * percentile(outside, 0.95), 1)


def new_version(url: str) -> None:
    """The target serves the regressed new version from now on (`--regress`)."""
    request = urllib.request.Request(f"{url}/deploy", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def rollback_times(log: Path) -> dict[str, float]:
    """Each deploy's first rollback request at the receiver (its Idempotency-Key, the deploy
    id): when the receiver saw it (wall clock)."""
    first: dict[str, float] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            attempt = json.loads(line)
            key = attempt.get("idempotency_key")
            if key and (key not in first or attempt["at"] < first[key]):
                first[key] = float(attempt["at"])
    return first


def kept_and_all(probed: list[float | None], handled: list[float], head: bool) -> Any:
    """The target's handler time p95 (ms) for the probes whose latency the agent kept, and
    for all it served: a gap is the agent dropping the slow ones (paired in order as in
    `outside_handler`; None where the pairing fails)."""
    handled = handled[: len(probed)] if head else handled[len(handled) - len(probed) :]
    if len(handled) != len(probed) or not handled:
        return None
    kept = [d for x, d in zip(probed, handled, strict=True) if x is not None]
    return [round(1000 * percentile(kept, 0.95), 1), round(1000 * percentile(handled, 0.95), 1)]


def run(a: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="pf-busy-host-"))
    log = workdir / "rollbacks.jsonl"
    receiver, receiver_url = start_receiver(log)
    targets = [start_target(a, a.seed * 1000 + k) for k in range(a.envs)]
    # `--regress`: every other environment's new version is REGRESSION times slower
    names = [f"{'rg' if a.regress and k % 2 == 0 else 'aa'}{k:02d}" for k in range(a.envs)]
    port = free_port()
    config = workdir / "postflight.yaml"
    config.write_text(
        crash.server_and_store(workdir, port)
        + yaml.safe_dump(
            {
                "environments": {
                    n: environment(url, receiver_url, a.window)
                    for n, (_, url) in zip(names, targets, strict=True)
                }
            }
        )
    )
    hogs: list[subprocess.Popen[bytes]] = []
    agent = None
    try:
        agent = crash.start_agent(config, port, workdir / "agent.log")
        hogs = [
            subprocess.Popen([sys.executable, "-c", HOG], preexec_fn=lambda: os.nice(a.hog_nice))
            for _ in range(a.hogs)
        ]
        load_start, cpu_start, at_start = os.getloadavg()[0], cpu_seconds(agent.pid), time.time()
        time.sleep(a.pre)  # the background baseline, on the busy host
        load_deploy, cpu_deploy, at_deploy = os.getloadavg()[0], cpu_seconds(agent.pid), time.time()
        ids = []
        for name, (_, url) in zip(names, targets, strict=True):
            if name.startswith("rg"):
                new_version(url)
            ids.append(register(port, name))
        deploys = verdicts(port, ids)
        load_end, cpu_end, at_end = os.getloadavg()[0], cpu_seconds(agent.pid), time.time()
        for hog in hogs:
            hog.terminate()
        time.sleep(3)  # a rollback under way reaches the receiver
        first_rollback = rollback_times(log)
        counts = probe_counts(port)
        windows = []
        for name, (_, url), deploy in zip(names, targets, deploys, strict=True):
            row = crash.store_rows(
                workdir, "SELECT deployed_at, ended_at FROM windows WHERE id = ?", deploy["id"]
            )[0]
            rules = deploy.get("verdict") or {}
            probed = store_latencies(workdir, name, row[0])
            keep = workdir / f"{name}.target.json"
            target = target_side(url, row[0], row[1] or time.time(), keep)
            sides = probed.pop("_probed"), target.pop("_handled")
            window_probed = sides[0]["window"]
            rolled = first_rollback.get(deploy["id"])
            windows.append(
                {
                    "env": name,
                    "state": deploy["state"],
                    "rollback_after_s": None if rolled is None else round(rolled - row[0], 1),
                    "window_s": round((row[1] or time.time()) - row[0], 1),
                    "dropped_share": round(
                        window_probed.count(None) / max(len(window_probed), 1), 3
                    ),
                    "target_p95_kept_all_ms": kept_and_all(
                        window_probed, sides[1]["window"], head=False
                    ),
                    "rules": {r["name"]: r["outcome"] for r in rules.get("rules", [])},
                    **probed,
                    **target,
                    "outside_handler_p95_ms": {
                        side: outside_handler(sides[0][side], sides[1][side], side == "baseline")
                        for side in ("baseline", "window")
                    },
                }
            )
    finally:
        for hog in hogs:
            hog.terminate()
        crash.end_all(agent, receiver, *(proc for proc, _ in targets))
    states: dict[str, int] = {}
    for w in windows:
        states[w["state"]] = states.get(w["state"], 0) + 1
    regressed = [w for w in windows if w["env"].startswith("rg")]
    same = [w for w in windows if w["env"].startswith("aa")]
    rollback_after = [w["rollback_after_s"] for w in regressed if w["rollback_after_s"]]
    return {
        "workdir": str(workdir),
        "envs": a.envs,
        "hogs": a.hogs,
        "hog_nice": a.hog_nice,
        "window": a.window,
        "pre_s": a.pre,
        "loadavg_1m": [load_start, load_deploy, load_end],
        "agent_cpu_pct": {  # of a core, background runs only and windows
            "baseline": round(100 * (cpu_deploy - cpu_start) / (at_deploy - at_start), 1),
            "windows": round(100 * (cpu_end - cpu_deploy) / (at_end - at_deploy), 1),
        },
        "rollbacks_received": received(log),
        "regressions_rolled_back": f"{len(rollback_after)}/{len(regressed)}",
        "rollback_after_s": sorted(rollback_after),
        "aa_rolled_back": f"{sum(w['rollback_after_s'] is not None for w in same)}/{len(same)}",
        "states": states,
        "probe_runs": {k: int(v) for k, v in sorted(counts.items())},
        "windows": windows,
    }


def main() -> None:
    if sys.argv[1:2] == ["target"]:
        latency, jitter, seed = sys.argv[2:5]
        serve_target(float(latency), float(jitter), int(seed))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, default=12)
    p.add_argument("--hogs", type=int, default=2)
    p.add_argument("--hog-nice", type=int, default=0)
    p.add_argument("--window", default="5m")
    p.add_argument("--pre", type=float, default=150.0)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--jitter", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--regress", action="store_true", help="half the new versions 2x slower")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        if key != "windows":
            print(f"{key}: {value}")
    print(
        "\nenv state rollback_s/window_s dropped_share target_p95(kept/all) rounds"
        " p95_ms(base/win) max_ms failed dropped target_p95 outside_p95 rules"
    )
    for w in result["windows"]:
        print(
            w["env"],
            w["state"],
            f"{w['rollback_after_s']}/{w['window_s']}",
            w["dropped_share"],
            w["target_p95_kept_all_ms"],
            w["rounds"],
            f"{w['baseline_p95_ms']}/{w['window_p95_ms']}",
            f"{w['baseline_max_ms']}/{w['window_max_ms']}",
            "{baseline}/{window}".format(**w["failed"]),
            "{baseline}/{window}".format(**w["latency_dropped"]),
            f"{w['target_baseline_p95_ms']}/{w['target_window_p95_ms']}",
            "{baseline}/{window}".format(**w["outside_handler_p95_ms"]),
            " ".join(f"{k}={v}" for k, v in w["rules"].items()),
        )


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
