"""Replicas on one PostgreSQL under kill -9 and SIGSTOP: duplicates, overwrites, takeover.

Runs real agent processes (tests/e2e/chaos.py) against a throwaway PostgreSQL cluster
it starts itself, and judges from outside: the receiver counts every 2xx-answered
rollback (duplicates included), a monitor reads the store's tables for overwritten
rounds and counters that go back.

    python bench/ha_chaos.py [--runs 5] [--duration 60] [--seed 1] [--json]
        [--cases random,graceful_restart,paused_woken,sender_killed,store_outage]

Cases:
- random: 3 replicas, 10 deploys (5 regressed) over the run, kill -9 of a replica
  every 6-10 s (down 0.5-3 s), one SIGSTOP past the lease;
- graceful_restart: SIGTERM and restart of another replica while a rollback is in
  flight (the receiver answers 503 slowly, then 200);
- paused_woken: a replica paused past the lease, its windows' new owners killed,
  then it wakes;
- sender_killed: the sender killed mid-attempt (the receiver is slow) and held down
  (up to 40 s) until a survivor delivers, which must be within one lease + the rollback
  timeout + 10 s (the survivor waits the timeout out: `takeover_wait_s`); its restart
  then must not send again;
- store_outage: PostgreSQL stopped as the receiver takes the rollback (its 200 still to
  go out) and kept away 0.5 s past the attempt's lease (max(lease, rollback timeout + 1)),
  then started again on its port and data: the sender holds the 2xx until the store
  takes it; the replicas' sweeps, taking the lapsed lease as the store returns, must
  not send it again.

Goals: 0 duplicate delivered rollbacks, 0 overwritten rounds or backward counters,
orphans delivered by a survivor within one lease + the rollback timeout + 10 s, no
window stuck, each regressed deploy's rollback `delivered` and its window `rolled_back`
in the store (unrecorded), every replica's /readyz 200 at the end (unready). A regressed
deploy whose window ended `passed` or `inconclusive` on fewer rounds than its
`failure_limit` (rounds lost to its holder's kills and pauses: the threshold policy
cannot fail it) is counted apart as `ended_short`, a judging matter, not a rollback lost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import on_a_cluster
from tests.e2e.chaos import (
    Plan,
    graceful_restart,
    paused_woken,
    random_chaos,
    sender_killed,
    store_outage,
)
from tests.pg import PgCluster

CASES = {
    "random": random_chaos,
    "graceful_restart": graceful_restart,
    "paused_woken": paused_woken,
    "sender_killed": sender_killed,
}
STORE_CASES = {"store_outage": store_outage}
"""Cases that stop and start the cluster itself (nothing else runs meanwhile)."""


async def run_all(args: argparse.Namespace, cluster: PgCluster) -> list[dict[str, Any]]:
    rows = []
    for case in args.cases.split(","):
        for run in range(args.runs if case in ("random", *STORE_CASES) else 1):
            plan = Plan(seed=args.seed + run, duration_s=args.duration, lease_s=args.lease)
            url = await cluster.create_database()
            started = time.monotonic()
            if case in STORE_CASES:
                findings = await STORE_CASES[case](plan, url, cluster)
            else:
                findings = await CASES[case](plan, url)
            row = {"case": case, "run": run, **findings.summary(), "ok": findings.ok}
            if case == "sender_killed":
                pickup = findings.orphan_pickup_s
                bound = plan.lease_s + plan.rollback_timeout_s + 10  # + the takeover wait
                row["ok"] = row["ok"] and bool(pickup) and max(pickup) <= bound
            row["seconds"] = round(time.monotonic() - started, 1)
            if not row["ok"] or args.verbose:
                row["events"] = findings.events
                row["problems"] = (
                    findings.overwritten_rounds
                    + findings.backward_counters
                    + findings.overwritten_deliveries
                    + findings.stuck
                    + findings.unrecorded
                    + [f"{e} (ended short)" for e in findings.ended_short]
                    + [f"{name}: /readyz not 200" for name in findings.unready]
                    + [f"{e} (unjudged)" for e in findings.unjudged]
                    + [f"{k}: {n} deliveries" for k, n in findings.delivered.items() if n != 1]
                )
            rows.append(row)
            if not args.json:
                print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['case']:<16} run {row['run']}: deploys={row['deploys']}"
        f" regressed={row['regressed']} delivered={row['delivered_rollbacks']}"
        f" duplicates={row['duplicates']} undelivered={row['undelivered']}"
        f" overwritten_rounds={row['overwritten_rounds']}"
        f" backward_counters={row['backward_counters']}"
        f" overwritten_deliveries={row['overwritten_deliveries']}"
        f" takeover_max={row['takeover_s_max']}s ({row['takeovers']})"
        f" orphan_pickup_max={row['orphan_pickup_s_max']}s ({row['orphans']})"
        f" stuck={row['stuck_windows']} unrecorded={row['unrecorded']}"
        f" ended_short={row['ended_short']}"
        f" unready={row['unready']} unjudged={row['unjudged']}"
        f" kills={row['kills']} pauses={row['pauses']}"
        f" [{row['seconds']}s] {'ok' if row['ok'] else 'WRONG'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=5, help="runs of the random and store_outage cases"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of chaos a run")
    parser.add_argument("--lease", type=float, default=3.0, help="store.lease, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", default=",".join([*CASES, *STORE_CASES]))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="events of every run")
    args = parser.parse_args()
    rows = on_a_cluster(run_all, args)
    summary = {
        "runs": len(rows),
        "ok": sum(r["ok"] for r in rows),
        "duplicates": sum(r["duplicates"] for r in rows),
        "overwritten_rounds": sum(r["overwritten_rounds"] for r in rows),
        "backward_counters": sum(r["backward_counters"] for r in rows),
        "overwritten_deliveries": sum(r["overwritten_deliveries"] for r in rows),
        "stuck_windows": sum(r["stuck_windows"] for r in rows),
        "unrecorded": sum(r["unrecorded"] for r in rows),
        "ended_short": sum(r["ended_short"] for r in rows),
        "unready": sum(r["unready"] for r in rows),
        "unjudged": sum(r["unjudged"] for r in rows),
        "takeover_s_max": max((r["takeover_s_max"] or 0 for r in rows), default=0),
        "orphan_pickup_s_max": max((r["orphan_pickup_s_max"] or 0 for r in rows), default=0),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"\n{summary['ok']}/{summary['runs']} runs met the goals;"
            f" duplicates={summary['duplicates']}"
            f" overwritten_rounds={summary['overwritten_rounds']}"
            f" backward_counters={summary['backward_counters']}"
            f" stuck={summary['stuck_windows']}"
            f" unrecorded={summary['unrecorded']} ended_short={summary['ended_short']}"
            f" unready={summary['unready']} unjudged={summary['unjudged']}"
            f" takeover_max={summary['takeover_s_max']}s"
            f" orphan_pickup_max={summary['orphan_pickup_s_max']}s"
        )
        for row in rows:
            for event in row.get("events", []) + row.get("problems", []):
                print(f"  {row['case']} {row['run']}: {event}")
    return 0 if summary["ok"] == summary["runs"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
