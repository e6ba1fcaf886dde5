"""A background run cut as a window starts (`agent.windows.in_flight`): does a probe it
sent before the cut reach the target inside the window's first round? Counted at the
target, a process of its own, by time.

    python bench/cut_overlap.py [--trials 20] [--probes 40] [--interval 1]

Each trial: a fresh `postflight run` on SQLite, one environment probed in the background
(`probes` probes spread over one round), a window registered at a random instant of its
first background run; the round's start is read from the store. Round 1 should hold
`probes` arrivals: one more is a request the cut run sent before the cut (the round's
own probes go out on the round's clock, read a few ms apart from the stored start, so
an early arrival alone does not tell them apart). Printed per trial: round 1's count,
its first arrivals and when its first probe was due, and the last arrival before it.

Here (f03f2b4b, 2 shared cores, 40 probes a 1 s round): 60 trials, one with 41 arrivals in
round 1, the extra 4.5 ms into it, before the round's first probe was due (14.8 ms in);
in the other 59 the cut run's last arrival came 3.9-259 ms before the round. One request
a few ms early, never beside the round's probes: left as it is (waiting for the cut
run's answers before the round would cost every cut a probe's latency, up to its
timeout for a hung target, on the probe grid's hot path).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.windows.probing import background_offset
from agent.windows.schedule import probe_step
from tests.e2e.crash import ROOT, TOKEN, free_port, server_and_store, store_rows

TARGET = textwrap.dedent(
    """
    import sys, time
    from aiohttp import web

    async def health(request):
        print(f"{time.time():.6f}", flush=True)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)
ENVIRONMENT = "staging"
TIMEOUT_S = 0.2


def _get(url: str, body: dict[str, str] | None = None) -> dict[str, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def trial(probes: int, interval: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="cut-overlap-") as tmp:
        workdir = Path(tmp)
        target_port, agent_port = free_port(), free_port()
        target = subprocess.Popen(
            [sys.executable, "-c", TARGET, str(target_port)], stdout=subprocess.PIPE, text=True
        )
        config = workdir / "postflight.yaml"
        config.write_text(
            server_and_store(workdir, agent_port)
            + "environments:\n"
            + f"  {ENVIRONMENT}:\n"
            + f"    base_url: http://127.0.0.1:{target_port}\n"
            + f"    window: {2 * interval:g}s\n    interval: {interval:g}s\n"
            + f"    background_interval: 60s\n    probes_per_round: {probes}\n"
            + "    checks:\n"
            + f"      - {{name: api-health, type: http, path: /health, timeout: {TIMEOUT_S:g}s}}\n"
            + "    rules:\n"
            + "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.5}\n"
        )
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{agent_port}"
        try:
            assert target.stdout is not None
            first_arrival = float(target.stdout.readline())  # the first background probe
            # a random instant of the run's spread (the round less the probe's timeout)
            time.sleep(
                max(0.0, first_arrival + random.uniform(0, interval - TIMEOUT_S) - time.time())
            )
            deploy = _get(f"{base}/v1/deploys", {"environment": ENVIRONMENT, "version": "v2"})
            while _get(f"{base}/v1/deploys/{deploy['id']}")["state"] == "watching":
                time.sleep(0.1)
            starts = [
                row[0]
                for row in store_rows(
                    workdir,
                    "SELECT started_at FROM rounds WHERE window_id = ? ORDER BY number",
                    deploy["id"],
                )
            ]
        finally:
            agent.terminate()
            agent.wait(timeout=15)
            target.terminate()
            target.wait(timeout=15)
        assert target.stdout is not None
        arrivals = [first_arrival] + [float(line) for line in target.stdout.read().split()]
    first = starts[0]
    end = starts[1] if len(starts) > 1 else first + interval
    step = probe_step(interval, interval, min(TIMEOUT_S, interval / 2), probes)
    in_round = sorted(at - first for at in arrivals if first <= at < end)
    before = [at - first for at in arrivals if at < first]
    return {
        "round_1": len(in_round),
        "first_ms": [round(1000 * at, 1) for at in in_round[:2]],
        "first_probe_due_ms": round(1000 * background_offset(ENVIRONMENT, step), 1),
        "last_before_ms": round(1000 * max(before), 1) if before else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    extra: list[dict[str, object]] = []
    for n in range(args.trials):
        row = trial(args.probes, args.interval)
        print(json.dumps({"trial": n, **row}), flush=True)
        if row["round_1"] != args.probes:
            extra.append({"trial": n, **row})
    print(f"\n{args.trials} trials: round 1 not {args.probes} arrivals in {len(extra)}: {extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
