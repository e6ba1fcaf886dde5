"""The rollback's sender stopped (SIGSTOP) the instant the receiver takes its request, for
longer than the attempt's timeout but less than its lease, then woken: the receiver's 2xx
waits in its socket meanwhile. Counted at the receiver: requests and 2xx answered to a
connected sender per deploy; more than one is a rollback delivered twice.

    python bench/paused_sender.py [--trials 5] [--replicas 2] [--pause 2.5] [--seed 1]

Real agent processes on a throwaway PostgreSQL (tests/e2e/chaos.py), one regressed
deploy a trial, `rollback.timeout` 2 s, `store.lease` 4 s (the attempt's lease: 4 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import on_a_cluster
from tests.e2e.chaos import Chaos, Plan, chaos_run
from tests.pg import PgCluster
from tests.receivers import RollbackAttempt


async def trial(plan: Plan, url: str, pause_s: float) -> dict[str, Any]:
    plan.windows, plan.regressed, plan.sigstop = 1, 1, False
    plan.receiver_script = "200"
    paused: list[str] = []
    holder: dict[str, Chaos] = {}

    async def stop_the_sender(attempt: RollbackAttempt) -> None:
        if attempt.n != 1:
            return
        run = holder["run"]
        await run.monitor.poll()
        owner = run.monitor.rollbacks[attempt.idempotency_key or ""]["lease_owner"]
        sender = next(r for r in run.replicas if r.name == owner)
        sender.signal(signal.SIGSTOP)
        paused.append(owner)
        asyncio.get_running_loop().call_later(pause_s, sender.signal, signal.SIGCONT)

    async with chaos_run(plan, url, stop_the_sender) as run:
        holder["run"] = run
        await run.register(0)
        await run.settle(within=plan.window_s + 30)
        await asyncio.sleep(3.0)
        run.count_deliveries()
        requests = len(run.receiver_log.read_text().splitlines())
        heard = sum(run.f.delivered.values())
        return {"paused": paused, "requests": requests, "heard_2xx": heard, "ok": heard == 1}


async def run_all(args: argparse.Namespace, cluster: PgCluster) -> list[dict[str, Any]]:
    rows = []
    for n in range(args.trials):
        plan = Plan(seed=args.seed + n, replicas=args.replicas, lease_s=4.0, rollback_timeout_s=2.0)
        started = time.monotonic()
        row = await trial(plan, await cluster.create_database(), args.pause)
        row["seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--pause", type=float, default=2.5, help="seconds stopped")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = on_a_cluster(run_all, args)
    ok = sum(r["ok"] for r in rows)
    print(
        f"\n{ok}/{len(rows)} trials with one 2xx; requests={sum(r['requests'] for r in rows)}"
        f" heard_2xx={sum(r['heard_2xx'] for r in rows)}"
    )
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
