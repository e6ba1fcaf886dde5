"""The agent stopped (SIGSTOP) as a slow alert channel takes its alert, past the alert's
lease, then woken (SIGCONT): the channel answered 200 while it was stopped. Counted at the
sink, repeats included: more than one request for an alert is a duplicate (contract §4).

    python bench/paused_alert.py [--trials 6] [--answer 1.5] [--pause 6]

A real daemon on SQLite (tests/e2e/pause_alert.py), `alerting.timeout` 1 s (the alert's
lease: 4 s), a deploy failing at its first round: its `deploy failed` alert is the one
held, its breach alert goes out at the same round (in flight at the stop too).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.pause_alert import run_paused_alert_trial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--answer", type=float, default=1.5, help="seconds the sink takes")
    parser.add_argument("--pause", type=float, default=6.0, help="seconds stopped")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    held = breaches = once = 0
    for n in range(args.trials):
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="paused-alert-") as workdir:
            trial = run_paused_alert_trial(Path(workdir), answer_s=args.answer, pause_s=args.pause)
        held, breaches = held + trial.held, breaches + trial.breaches
        once += trial.held == 1 and trial.breaches == 1
        row = {"trial": n, "held": trial.held, "breaches": trial.breaches}
        print(json.dumps({**row, "seconds": round(time.monotonic() - started, 1)}), flush=True)
    print(
        f"\n{commit}: {once}/{args.trials} trials with each alert once;"
        f" held requests={held} breach requests={breaches}"
        f" duplicates={held + breaches - 2 * args.trials}"
    )
    return 0 if once == args.trials else 1


if __name__ == "__main__":
    raise SystemExit(main())
