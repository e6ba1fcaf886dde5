"""Benchmark: `http`-check probes per second of one agent process, beside blackbox_exporter and wrk.

Not a test; it prints figures. It starts its own nginx (Debian `nginx-light`)
on a free 127.0.0.1 port answering `return 200`, and a
`prometheus-blackbox-exporter` probing that nginx, then measures in alternating
rounds, so a busy machine slows every contender alike:

- wrk straight at nginx: the ceiling of the target and the machine;
- wrk driving blackbox_exporter's `/probe`: one request = one blackbox probe;
- the agent: `HttpCheck` runs as a round runs it (`checks.registry.start_check`, from
  callbacks; `run_check` in a task when the lean client does not take the request), N
  at a time over the shared keep-alive session, every `CheckResult` kept in a list
  (every probe's result recorded), on uvloop when installed (as the daemon does) and
  on the default asyncio loop;
- the agent with a new connection per probe (keep-alive disabled), on the
  daemon's loop: the same work blackbox_exporter does for each probe;
- the agent with every probe through aiohttp (`TargetSessions(lean=False)`), on the
  daemon's loop: what the lean client (`checks.wire`) saves per probe;
- the agent as a window's rounds run it (`--windows`, default 200): that many
  environments of the default configuration, each a 1 s round of 10 probes through
  `EnvironmentProbe.run_round` (timers, tasks, metrics, deadlines), on fixed schedules
  spread over the second: the CPU per probe the capacity of `bench/footprint.py` is made of.

Goals: ≥ 1.2× blackbox_exporter with a new connection per probe (the same
work), ≥ 3× with keep-alive (what the daemon does). Each figure is the median
over rounds. Usage:
    python bench/probes.py [--seconds 3] [--rounds 3] [--concurrency 32] [--windows 200]
                           [--json] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import pstats
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.windows.probing import EnvironmentProbe
from checks.base import CheckContext, CheckResult
from checks.http import HttpCheck, HttpCheckConfig
from checks.registry import run_check, start_check
from checks.sessions import TargetSessions

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

NEW_CONNECTION_GOAL = 1.2
"""× blackbox_exporter, both opening a connection per probe (the same work)."""
KEEPALIVE_GOAL = 3.0
"""× blackbox_exporter, the agent on its keep-alive pool (what the daemon does)."""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 10000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""

BLACKBOX_CONF = """
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def need(binary: str, package: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if path is None:
        raise SystemExit(f"{binary} not found: apt-get install {package}")
    return path


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on 127.0.0.1:{port}")


@contextlib.contextmanager
def running(args: list[str], port: int, what: str, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, what)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def nginx(workdir: Path) -> Iterator[str]:
    """A local nginx answering `return 200`; yields its base URL."""
    binary = need("nginx", "nginx-light")
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port))
    with running([binary, "-c", str(conf), "-p", str(workdir)], port, "nginx", workdir / "n.log"):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def blackbox(workdir: Path, target: str) -> Iterator[str]:
    """A blackbox_exporter; yields the /probe URL that probes `target` once per request."""
    binary = need("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    port = free_port()
    conf = workdir / "blackbox.yml"
    conf.write_text(BLACKBOX_CONF)
    args = [binary, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}"]
    with running(args, port, "blackbox_exporter", workdir / "bb.log"):
        url = f"http://127.0.0.1:{port}/probe?module=http_2xx&target={target}/"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        if not re.search(r"^probe_success 1$", text, re.MULTILINE):
            raise SystemExit(f"blackbox_exporter's probe of {target} failed:\n{text}")
        yield url


def wrk(url: str, seconds: float, connections: int, threads: int = 2) -> float:
    """Requests per second wrk sustained; refuses figures that include failed requests."""
    binary = need("wrk", "wrk")
    out = subprocess.run(
        [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors against {url}:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return float(m.group(1))


@dataclass
class AgentRound:
    probes_per_s: float
    probes: int
    failed: int
    cpu_us_per_probe: float


async def agent_probes(
    base_url: str, seconds: float, concurrency: int, keepalive: bool = True, lean: bool = True
) -> AgentRound:
    """As many http-check runs as `concurrency` workers complete in `seconds`, all recorded;
    without `keepalive`, each on a connection of its own; without `lean`, through aiohttp."""
    check = HttpCheck(HttpCheckConfig(name="bench", path="/", expect={"status": 200}))
    results: list[CheckResult] = []
    async with TargetSessions(
        limit_per_target=concurrency, keepalive=keepalive, lean=lean
    ) as sessions:
        ctx = CheckContext(base_url, sessions.get(base_url), "bench")
        for _ in range(concurrency):  # open the pool's connections before timing
            results.append(await run_check(check, ctx))
        results.clear()
        loop = asyncio.get_running_loop()
        stop = time.perf_counter() + seconds
        over = loop.create_future()
        running = concurrency

        def next_probe(result: CheckResult | None = None) -> None:
            """Each worker's next probe as a round starts one: from callbacks
            (`start_check`), else (aiohttp only) `run_check` in a task."""
            nonlocal running
            if result is not None:
                results.append(result)
            if time.perf_counter() >= stop:
                running -= 1
                if not running:
                    over.set_result(None)
            elif not start_check(check, ctx, next_probe):
                task = loop.create_task(run_check(check, ctx))
                task.add_done_callback(lambda t: next_probe(t.result()))

        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(concurrency):
            next_probe()
        await over
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    failed = sum(not r.ok for r in results)
    return AgentRound(len(results) / elapsed, len(results), failed, cpu / len(results) * 1e6)


WINDOW_CONFIG = """
server: {{api_tokens: [bench-token-0123456789]}}
environments:
  bench:
    base_url: {url}
    interval: 1s
    checks:
      - {{name: health, type: http, path: /health, timeout: 2s}}
"""


async def agent_windows(base_url: str, seconds: float, windows: int) -> AgentRound:
    """`windows` environments probing as their rounds do (1 s, the default 10 probes), round
    k of window i due at start + i/windows + k: probes recorded per second and CPU per probe."""
    env = load_settings_text(WINDOW_CONFIG.format(url=base_url)).environments["bench"]
    loop = asyncio.get_running_loop()
    results: list[CheckResult] = []
    async with TargetSessions() as sessions:
        metrics = Metrics()
        probes = [EnvironmentProbe(f"w{i}", env, sessions, metrics) for i in range(windows)]
        await asyncio.gather(*(p.run_round(0.2, probes=1) for p in probes[:32]))  # connect

        async def rounds(probe: EnvironmentProbe, first: float) -> None:
            due = first
            while due < start + seconds:
                await asyncio.sleep(max(0.0, due - loop.time()))
                results.extend(await probe.run_round(1.0, probes=env.probes_per_round))
                due += 1.0

        start = loop.time() + 0.1
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(rounds(p, start + i / windows) for i, p in enumerate(probes)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    failed = sum(not r.ok for r in results)
    return AgentRound(len(results) / elapsed, len(results), failed, cpu / len(results) * 1e6)


def agent_round(
    base_url: str,
    seconds: float,
    concurrency: int,
    loop_factory: LoopFactory | None,
    keepalive: bool = True,
    lean: bool = True,
) -> AgentRound:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(agent_probes(base_url, seconds, concurrency, keepalive, lean))


def windows_round(
    base_url: str, seconds: float, windows: int, loop_factory: LoopFactory | None
) -> AgentRound:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(agent_windows(base_url, seconds, windows))


def uvloop_factory() -> LoopFactory | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def profile(base_url: str, seconds: float, concurrency: int) -> str:
    """cProfile of one agent round on the default loop: where a probe's time goes."""
    prof = cProfile.Profile()
    prof.enable()
    agent_round(base_url, seconds, concurrency, None)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32, help="agent workers")
    parser.add_argument("--blackbox-connections", type=int, default=32)
    parser.add_argument(
        "--windows", type=int, default=200, help="windows probing as rounds do (0: skip)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--profile", action="store_true", help="also profile the agent")
    args = parser.parse_args()

    uv = uvloop_factory()
    loops: list[tuple[str, LoopFactory | None]] = [("asyncio", None)]
    if uv is not None:
        loops.insert(0, ("uvloop", uv))
    figures: dict[str, list[float]] = {"wrk": [], "blackbox": []}
    agent: dict[str, list[AgentRound]] = {name: [] for name, _ in loops}
    fresh: list[AgentRound] = []  # a new connection per probe, on the daemon's loop
    plain: list[AgentRound] = []  # every probe through aiohttp, on the daemon's loop
    windowed: list[AgentRound] = []  # as the rounds of `--windows` windows probe
    with tempfile.TemporaryDirectory(prefix="postflight-bench-") as tmp:
        workdir = Path(tmp)
        with nginx(workdir) as target, blackbox(workdir, target) as probe_url:
            for n in range(args.rounds):
                log(args, f"round {n + 1}/{args.rounds}")
                figures["wrk"].append(wrk(target + "/", args.seconds, 64))
                figures["blackbox"].append(wrk(probe_url, args.seconds, args.blackbox_connections))
                for name, factory in loops:
                    agent[name].append(agent_round(target, args.seconds, args.concurrency, factory))
                fresh.append(
                    agent_round(target, args.seconds, args.concurrency, loops[0][1], False)
                )
                plain.append(
                    agent_round(target, args.seconds, args.concurrency, loops[0][1], lean=False)
                )
                if args.windows:
                    windowed.append(windows_round(target, args.seconds, args.windows, loops[0][1]))
            profiled = profile(target, args.seconds, args.concurrency) if args.profile else ""

    wrk_rps = statistics.median(figures["wrk"])
    bb = statistics.median(figures["blackbox"])
    best = loops[0][0]
    rate = {
        name: statistics.median(r.probes_per_s for r in rounds) for name, rounds in agent.items()
    }
    cpu = {
        name: statistics.median(r.cpu_us_per_probe for r in rounds)
        for name, rounds in agent.items()
    }
    every_round = [r for rounds in (*agent.values(), fresh, plain, windowed) for r in rounds]
    recorded = sum(r.probes for r in every_round)
    failed = sum(r.failed for r in every_round)
    ratio = rate[best] / bb
    fresh_rate = statistics.median(r.probes_per_s for r in fresh)
    fresh_cpu = statistics.median(r.cpu_us_per_probe for r in fresh)
    fresh_ratio = fresh_rate / bb
    plain_rate = statistics.median(r.probes_per_s for r in plain)
    plain_cpu = statistics.median(r.cpu_us_per_probe for r in plain)
    result: dict[str, Any] = {
        "agent_probes_per_s": round(rate[best], 1),
        "agent_new_connection_probes_per_s": round(fresh_rate, 1),
        "agent_new_connection_cpu_us_per_probe": round(fresh_cpu, 1),
        "agent_aiohttp_probes_per_s": round(plain_rate, 1),
        "agent_aiohttp_cpu_us_per_probe": round(plain_cpu, 1),
        "agent_windows": args.windows,
        "agent_windows_probes_per_s": (
            round(statistics.median(r.probes_per_s for r in windowed), 1) if windowed else None
        ),
        "agent_windows_cpu_us_per_probe": (
            round(statistics.median(r.cpu_us_per_probe for r in windowed), 1) if windowed else None
        ),
        "agent_loop": best,
        "agent_probes_per_s_by_loop": {k: round(v, 1) for k, v in rate.items()},
        "agent_cpu_us_per_probe": {k: round(v, 1) for k, v in cpu.items()},
        "blackbox_probes_per_s": round(bb, 1),
        "wrk_req_per_s": round(wrk_rps, 1),
        "agent_vs_blackbox": round(ratio, 2),
        "agent_new_connection_vs_blackbox": round(fresh_ratio, 2),
        "goal_keepalive_3x_met": ratio >= KEEPALIVE_GOAL,
        "goal_new_connection_1_2x_met": fresh_ratio >= NEW_CONNECTION_GOAL,
        "probes_recorded": recorded,
        "probes_failed": failed,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "agent_concurrency": args.concurrency,
        "raw": {
            "wrk": figures["wrk"],
            "blackbox": figures["blackbox"],
            **{f"agent_{k}": [round(r.probes_per_s, 1) for r in v] for k, v in agent.items()},
            "agent_new_connection": [round(r.probes_per_s, 1) for r in fresh],
            "agent_aiohttp": [round(r.probes_per_s, 1) for r in plain],
        },
    }
    if args.json:
        print(json.dumps(result))
        return
    rows = [
        ("wrk → nginx (ceiling)", wrk_rps, "", ""),
        ("blackbox_exporter ← wrk", bb, "1.00×", ""),
        *(
            (
                f"postflight agent ({name})",
                rate[name],
                f"{rate[name] / bb:.2f}×",
                f"{cpu[name]:.0f}",
            )
            for name, _ in loops
        ),
        (
            f"agent, new conn. ({best})",
            fresh_rate,
            f"{fresh_ratio:.2f}×",
            f"{fresh_cpu:.0f}",
        ),
        (
            f"agent, aiohttp only ({best})",
            plain_rate,
            f"{plain_rate / bb:.2f}×",
            f"{plain_cpu:.0f}",
        ),
    ]
    if windowed:
        rows.append(
            (
                f"agent, {args.windows} windows ({best})",
                result["agent_windows_probes_per_s"],
                "",
                f"{result['agent_windows_cpu_us_per_probe']:.0f}",
            )
        )
    print(f"\nhttp-check probes per second (median of {args.rounds} × {args.seconds:g}s rounds)\n")
    print(f"{'':28} {'probes/s':>10} {'vs blackbox':>12} {'CPU µs/probe':>13}")
    for name, value, vs, cpu_text in rows:
        print(f"{name:28} {value:>10,.0f} {vs:>12} {cpu_text:>13}")
    print(
        f"\ngoals: new connection per probe ≥{NEW_CONNECTION_GOAL:g}× blackbox: "
        f"{_met(fresh_ratio >= NEW_CONNECTION_GOAL)} ({fresh_ratio:.2f}×); keep-alive "
        f"≥{KEEPALIVE_GOAL:g}×: {_met(ratio >= KEEPALIVE_GOAL)} ({ratio:.2f}× on {best}); "
        f"{recorded:,} agent probes recorded, {failed} failed"
    )
    if profiled:
        print("\nprofile of one agent round (default loop, by own time):\n" + profiled)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def log(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
