"""Benchmark: how exactly the `load` check holds its rate and measures latency, beside wrk.

Not a test; it prints figures. It starts a local target (aiohttp, on uvloop
when installed, in its own process) that answers every request after sleeping
a known delay, then for each rate runs one `load` check through
`checks.registry.run_check` and reports the achieved rate (goal: within 1% of
the configured one) as counted at the target, on the target's own clock: every
arrival is time-stamped there, the warm-up's are dropped, and the achieved rate
and the spacing between arrivals (p99) come from those stamps, not from the
agent's own bookkeeping and the measured p50/p99 against the injected delay (goal:
within 2 ms). wrk runs at the same target for comparison; it is a closed-model
tool, so it is given about rate × delay connections, which holds roughly the
same rate.

Usage:
    python bench/load_accuracy.py [--rates 50,200,1000] [--duration 10] [--delay-ms 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from checks.base import CheckContext
from checks.load import LoadCheck, LoadCheckConfig
from checks.registry import run_check
from checks.sessions import TargetSessions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import itertools

from bench.probes import LoopFactory, free_port, need, running, uvloop_factory

ACHIEVED_GOAL = 0.01
LATENCY_GOAL_MS = 2.0


def serve(port: int, delay_s: float) -> None:
    """The target: stamp each arrival on its own clock, sleep `delay_s`, answer 200
    (run in a child process). `GET /_arrivals` hands the stamps over and forgets them."""
    from aiohttp import web

    arrivals: list[float] = []

    async def handler(_: web.Request) -> web.Response:
        arrivals.append(time.perf_counter())
        await asyncio.sleep(delay_s)
        return web.Response(text="ok")

    async def hand_over(_: web.Request) -> web.Response:
        stamps = list(arrivals)
        arrivals.clear()
        return web.json_response(stamps)

    app = web.Application()
    app.router.add_get("/", handler)
    app.router.add_get("/_arrivals", hand_over)
    factory = uvloop_factory()
    loop = factory() if factory is not None else asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=loop)


async def agent_run(base_url: str, rate: float, duration: float, warmup: float) -> dict[str, Any]:
    config = LoadCheckConfig(
        name="accuracy",
        type="load",
        rate=rate,
        duration=duration,
        warmup=warmup,
        max_in_flight=1000,
        timeout=5.0,
    )
    check = LoadCheck(config)
    async with TargetSessions() as sessions:
        ctx = CheckContext(base_url, sessions.get(base_url), "bench")
        try:
            result = await run_check(check, ctx)
        finally:
            await check.aclose()  # its own connections (`checks.load.LoadPool`)
    if result.details.get("crashed"):
        raise SystemExit(f"load check crashed: {result.message}")
    return result.details


def agent_round(
    base_url: str, rate: float, duration: float, warmup: float, factory: LoopFactory | None
) -> dict[str, Any]:
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(agent_run(base_url, rate, duration, warmup))


def target_arrivals(base_url: str) -> list[float]:
    """The arrival stamps the target kept since the last call (its clock, seconds)."""
    with urllib.request.urlopen(f"{base_url}/_arrivals", timeout=10) as resp:
        stamps: list[float] = json.loads(resp.read())
    return stamps


def arrival_figures(stamps: list[float], warmup_requests: int) -> dict[str, float | int]:
    """Achieved rate and spacing p99 of the measured arrivals (the warm-up's dropped)."""
    measured = sorted(stamps)[warmup_requests:]
    if len(measured) < 2:
        return {"arrivals": len(measured), "achieved": math.nan, "spacing_p99_ms": math.nan}
    gaps = sorted(b - a for a, b in itertools.pairwise(measured))
    p99 = gaps[min(len(gaps) - 1, math.ceil(0.99 * len(gaps)) - 1)]
    return {
        "arrivals": len(measured),
        "achieved": round((len(measured) - 1) / (measured[-1] - measured[0]), 3),
        "spacing_p99_ms": round(p99 * 1000, 3),
    }


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_latency(url: str, connections: int, seconds: float) -> dict[str, float]:
    """wrk's requests/s and p50/p99 latency (ms) against `url` with `connections` open."""
    out = subprocess.run(
        [need("wrk", "wrk"), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures: dict[str, float] = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if m is None:
            raise SystemExit(f"cannot read wrk's output:\n{out}")
        figures[f"p{pct}_ms"] = round(float(m.group(1)) * _UNIT_MS[m.group(2)], 3)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    figures["req_per_s"] = float(m.group(1)) if m else math.nan
    return figures


def parser() -> argparse.ArgumentParser:
    """The bench's options: apart from `main`, so the README's figures of what it runs by
    default are checked against them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,200,1000", help="requests per second, comma list")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="the target's delay")
    parser.add_argument("--wrk-seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = parser().parse_args()
    if args.serve:
        serve(args.serve, args.delay_ms / 1000)
        return

    rates = [float(r) for r in args.rates.split(",")]
    factory = uvloop_factory()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_dir = Path("/tmp")
    server = [sys.executable, __file__, "--serve", str(port), "--delay-ms", str(args.delay_ms)]
    results: dict[str, dict[str, Any]] = {}
    with running(server, port, "target", log_dir / f"postflight-bench-target-{port}.log"):
        time.sleep(0.2)
        for rate in rates:
            if not args.json:
                print(f"rate {rate:g}/s …", file=sys.stderr, flush=True)
            target_arrivals(base_url)  # forget anything before this run
            d = agent_round(base_url, rate, args.duration, args.warmup, factory)
            warm = math.ceil(args.warmup * rate - 1e-9)
            at_target = arrival_figures(target_arrivals(base_url), warm)
            conns = max(1, round(rate * args.delay_ms / 1000))
            w = wrk_latency(base_url + "/", conns, args.wrk_seconds)
            lat = d["latency_ms"]
            results[f"{rate:g}"] = {
                "configured": rate,
                "achieved": d["achieved_rate"],
                "achieved_error_pct": round(abs(d["achieved_rate"] - rate) / rate * 100, 3),
                "target_arrivals": at_target["arrivals"],
                "target_achieved": at_target["achieved"],
                "target_achieved_error_pct": round(
                    abs(at_target["achieved"] - rate) / rate * 100, 3
                ),
                "target_spacing_p99_ms": at_target["spacing_p99_ms"],
                "expected_spacing_ms": round(1000 / rate, 3),
                "requests": d["requests"],
                "errors": d["errors"],
                "dropped": d["dropped"],
                "injected_ms": args.delay_ms,
                "p50_ms": lat.get("p50"),
                "p99_ms": lat.get("p99"),
                "max_ms": lat.get("max"),
                "start_lag_p99_ms": d["start_lag_ms"]["p99"],
                "wrk_connections": conns,
                "wrk_req_per_s": w["req_per_s"],
                "wrk_p50_ms": w["p50_ms"],
                "wrk_p99_ms": w["p99_ms"],
            }

    for row in results.values():
        p50, p99, inj = row["p50_ms"], row["p99_ms"], row["injected_ms"]
        row["rate_goal_met"] = row["target_achieved_error_pct"] <= ACHIEVED_GOAL * 100
        row["p50_goal_met"] = p50 is not None and abs(p50 - inj) <= LATENCY_GOAL_MS
        row["p99_goal_met"] = p99 is not None and abs(p99 - inj) <= LATENCY_GOAL_MS
        # How far the agent's figures are from wrk's at the same target: the part of a
        # miss that is the agent's own, as opposed to the target's or the machine's.
        row["p50_minus_wrk_ms"] = round(p50 - row["wrk_p50_ms"], 3) if p50 is not None else None
        row["p99_minus_wrk_ms"] = round(p99 - row["wrk_p99_ms"], 3) if p99 is not None else None
    out: dict[str, Any] = {
        "rates": results,
        "loop": "uvloop" if factory is not None else "asyncio",
        "duration_s": args.duration,
        "all_goals_met": all(
            r["rate_goal_met"] and r["p50_goal_met"] and r["p99_goal_met"] for r in results.values()
        ),
    }
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"\nload check accuracy: target sleeps {args.delay_ms:g}ms; {args.duration:g}s per rate "
        f"after {args.warmup:g}s warm-up; agent on {out['loop']}\n"
    )
    head = (
        f"{'rate/s':>7} {'target/s':>9} {'err %':>6} {'gap p99':>7} {'agent/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'lag p99':>7} {'errors':>6} │ {'wrk c':>5} {'wrk/s':>7} {'wrk p50':>7} {'wrk p99':>7}"
    )
    print(head)
    for row in results.values():
        print(
            f"{row['configured']:>7g} {row['target_achieved']:>9.2f} "
            f"{row['target_achieved_error_pct']:>6.2f} {row['target_spacing_p99_ms']:>7.2f} "
            f"{row['achieved']:>9.2f} "
            f"{_num(row['p50_ms'])} {_num(row['p99_ms'])} {_num(row['max_ms'])} "
            f"{row['start_lag_p99_ms']:>7.2f} {row['errors']:>6} │ {row['wrk_connections']:>5} "
            f"{row['wrk_req_per_s']:>7.0f} {row['wrk_p50_ms']:>7.2f} {row['wrk_p99_ms']:>7.2f}"
        )
    print(
        f"\ntarget/s and gap p99: arrivals counted and time-stamped at the target (warm-up"
        f" dropped); agent/s: the check's own figure.\ngoals: rate at the target within"
        f" {ACHIEVED_GOAL:.0%}, p50 and p99 within {LATENCY_GOAL_MS:g}ms of the injected delay"
    )
    for label, row in results.items():
        print(
            f"  {label:>5}/s: rate {_met(row['rate_goal_met'])}, p50 {_met(row['p50_goal_met'])}, "
            f"p99 {_met(row['p99_goal_met'])}; agent − wrk: p50 {_diff(row['p50_minus_wrk_ms'])}, "
            f"p99 {_diff(row['p99_minus_wrk_ms'])}"
        )


def _diff(value: float | None) -> str:
    return f"{value:+.2f}ms" if value is not None else "-"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _num(value: float | None) -> str:
    return f"{value:>7.2f}" if value is not None else f"{'-':>7}"


if __name__ == "__main__":
    main()
