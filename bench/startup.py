"""What starting Postflight costs, and where it goes: median wall and CPU time of the
commands a user or a pipeline types (`--help`, `register`, `status`, `validate-config`)
and of a daemon's start to its first `/readyz` 200, then each path's costliest imports.

    python bench/startup.py [--runs 5] [--top 12] [--json]

Every e2e test, every CLI call and every pipeline step pays these. The times are
`bench/cli_start.py`'s (the commands, against a daemon started here) and
`bench/daemon_start.py`'s (the start, no alert channel); the imports are `python -X
importtime` of the same processes, each module's own time (its imports' not counted),
the least of `--runs` processes, so that a busy machine's stalls count less. Note the
load (`uptime`) beside any figure: on 2 shared cores the times move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cli_start import _time, an_agent, client_env, commands
from bench.daemon_start import _start, daemon_env
from tests.e2e.crash import ROOT

_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")


def own_import_times(stderr: str) -> dict[str, int]:
    """Each module's own import time in µs, from `-X importtime`'s lines."""
    return {m.group(2): int(m.group(1)) for m in _IMPORT_LINE.finditer(stderr)}


def least(runs: Iterable[dict[str, int]]) -> dict[str, int]:
    """Each module's least time over the runs (a module some run missed: its least seen)."""
    best: dict[str, int] = {}
    for run in runs:
        for name, us in run.items():
            best[name] = min(us, best.get(name, us))
    return best


def _command_imports(argv: list[str], env: dict[str, str]) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agent", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr[-2000:]}")
    return own_import_times(done.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=12, help="imports shown per path")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    times: dict[str, dict[str, float]] = {}
    imports: dict[str, dict[str, int]] = {}
    env = client_env()
    with an_agent() as port:
        for name, argv in commands(port).items():
            times[name] = _time(argv, env, args.runs)
            imports[name] = least(_command_imports(argv, env) for _ in range(args.runs))
    env = daemon_env()
    _start(env, channel=False)  # uncounted, as the commands' first run
    starts = [_start(env, channel=False) for _ in range(args.runs)]
    times["run (to /readyz)"] = {
        "wall_s": statistics.median(s[0] for s in starts),
        "cpu_s": statistics.median(s[1] for s in starts),
    }
    traced = (_start(env, False, ("-X", "importtime"))[2] for _ in range(args.runs))
    imports["run (to /readyz)"] = least(own_import_times(said) for said in traced)
    if args.json:
        print(json.dumps({"load": load, "times": times, "imports": imports}, indent=2))
        return 0
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; median of {args.runs} each")
    print(f"{'command':<18} {'wall':>8} {'cpu':>8} {'imports':>8}")
    for name, f in times.items():
        total = sum(imports[name].values()) / 1000
        print(
            f"{name:<18} {f['wall_s'] * 1000:>6.0f}ms {f['cpu_s'] * 1000:>6.0f}ms {total:>6.0f}ms"
        )
    for name, own in imports.items():
        print(f"\n{name}: the {args.top} costliest imports (own time, least of {args.runs})")
        for module, us in sorted(own.items(), key=lambda item: -item[1])[: args.top]:
            print(f"  {us / 1000:>7.1f}ms  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
