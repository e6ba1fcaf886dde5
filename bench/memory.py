"""Memory per deploy window on the defaults, told from in-flight work: bytes the agent
keeps for good after N windows have closed and it has gone quiet.

Not a test; it prints figures (`--json`: one object). One `postflight run` (the soak's
configuration: the example's checks and rules, everything else its defaults, at a short
`--window` and `--interval` so that many windows fit a few minutes) watches environments
whose targets are `good`, `errors_x5`, `latency_x2` and `bursty_aa` (`bench/soak.py`'s
peers and drivers: each deploy registered as a pipeline does, its page read and its
event stream followed). It runs `--windows` windows, waits until none is open and
`--quiet` seconds more (background probes only), and then, on the agent's loop after a
full collection, takes a `tracemalloc` snapshot with the process's RSS; then as many
windows again (2x) and twice that (4x), a snapshot after each. Memory a window leaves
behind grows with the windows; memory in flight does not, so load on the machine does
not change the figure. Printed: traced bytes and RSS at 1x/2x/4x, bytes per window
between steps, the allocation sites that grew most from 1x to 4x (per window), and the
`/metrics` series count (label sets are memory too).

    python bench/memory.py [--windows 24] [--window 20s] [--interval 2s] [--quiet 40]
                           [--store sqlite|postgresql] [--frames 8] [--top 15] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import gc
import importlib
import itertools
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import types
import weakref
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import soak  # noqa: E402
from bench.processes import free_port, spawn_env, stop_agents, wait_ready  # noqa: E402
from common.durations import parse_duration  # noqa: E402

KINDS = ("good", "errors_x5", "latency_x2", "bursty_aa")
IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


# ------------------------------------------------------------- in the agent's process


def snapshot_on(loop: asyncio.AbstractEventLoop, path: Path) -> dict[str, Any]:
    """A full collection and a `tracemalloc` snapshot taken between two of `loop`'s
    callbacks (nothing of the agent half-built), dumped to `path`."""
    done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

    def run() -> None:
        try:
            before = tracemalloc.get_traced_memory()[0]
            gc.set_debug(gc.DEBUG_SAVEALL)  # what the collection frees, kept to be counted
            try:
                gc.collect()
                garbage = collections.Counter(_kind(o) for o in gc.garbage)
                cycles = {
                    name: cycle_of(name, gc.garbage)
                    for name in os.environ.get("MEMORY_CYCLES", "").split(",")
                    if name
                }
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.collect()  # what was saved is garbage again: freed now, not counted twice
            current = peak = 0
            if tracemalloc.is_tracing():  # else (`--frames 0`): RSS and objects alone
                current, peak = tracemalloc.get_traced_memory()  # before the snapshot's own
                tracemalloc.take_snapshot().dump(str(path))
                tracemalloc.reset_peak()
            tasks = len([t for t in asyncio.all_tasks(loop) if not t.done()])
            kinds = collections.Counter(_kind(o) for o in gc.get_objects())
            held = {
                name: holders(name)
                for name in os.environ.get("MEMORY_HOLDERS", "").split(",")
                if name
            }
            done.set_result(
                {"traced": current, "traced_peak": peak, "tasks": tasks}
                | {"garbage_objects": garbage.total(), "garbage_bytes": before - current}
                | {"collected": COLLECTED[0], "garbage": dict(garbage.most_common(15))}
                | {"census": dict(kinds.most_common(600)), "holders": held}
                | {"structures": structures(), "cycles": cycles}
            )
        except BaseException as exc:  # said by the watcher, not the agent's loop
            done.set_exception(exc)

    loop.call_soon_threadsafe(run)
    return done.result(300)


OWN = ("agent.", "checks.", "common.", "alerting.")
CONTAINERS = (dict, set, list, collections.deque, weakref.WeakKeyDictionary, weakref.WeakSet)


def structures() -> dict[str, int]:
    """The size of every module-level container and memo of the agent's own modules
    (`module.name`: its `len`, or a memo's entries): one that grows with the windows and
    has no bound is a leak, whatever the allocator does with its bytes."""
    sizes: dict[str, int] = {}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith(OWN) or module is None:
            continue
        for name, value in list(vars(module).items()):
            if name.startswith("__") or getattr(value, "__module__", module_name) != module_name:
                continue  # imported from elsewhere: counted at its home
            if hasattr(value, "cache_info"):
                sizes[f"{module_name}.{name}()"] = value.cache_info().currsize
            elif isinstance(value, CONTAINERS):
                sizes[f"{module_name}.{name}"] = len(value)
    return sizes


COLLECTED = [0]
"""Objects the collector freed since the start, every collection's (`gc.callbacks`):
cyclic garbage, which only the collector frees (the agent's young generation is
collected every 500,000 allocations, its oldest rarely: `agent.windows.heap`)."""


def _count_collected(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop":
        COLLECTED[0] += info["collected"]


def cycle_of(name: str, garbage: list[Any]) -> list[str]:
    """One cycle through the first garbage object of type `name` (module.qualname): each
    object's type and what refers to the next, back to it (a debugging aid)."""
    inside = {id(o): o for o in garbage}
    start = next((o for o in garbage if _kind(o) == name), None)
    if start is None:
        return []
    paths: dict[int, list[Any]] = {id(start): [start]}
    todo = collections.deque([start])
    while todo:
        at = todo.popleft()
        for ref in gc.get_referents(at):
            if ref is start:
                return [_label(o) + " ->" for o in paths[id(at)]] + [_label(start)]
            if id(ref) in inside and id(ref) not in paths:
                paths[id(ref)] = [*paths[id(at)], ref]
                todo.append(ref)
    return ["no cycle back"]


def _kind(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def holders(name: str) -> list[list[str]]:
    """What holds the newest live objects of type `name` (module.qualname): for up to
    three, the chain of referrers from a module (`objgraph`'s, when installed; a
    debugging aid, not a dependency)."""
    try:
        objgraph: Any = importlib.import_module("objgraph")
    except ImportError:
        return [["objgraph not installed"]]
    found = [o for o in gc.get_objects() if _kind(o) == name]
    chains = []
    for obj in found[-3:]:
        chain = objgraph.find_backref_chain(obj, objgraph.is_proper_module, max_depth=12)
        chains.append([_label(o) for o in chain])
    return chains


def _label(obj: object) -> str:
    label = _kind(obj)
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    if isinstance(obj, dict):
        return label + f"(len {len(obj)}, keys {[str(k)[:40] for k in list(obj)[:4]]})"
    if isinstance(obj, (list, set, tuple)):
        return label + f"(len {len(obj)})"
    return label


def traced_agent(folder: Path, frames: int, argv: list[str]) -> None:
    """Run `python -m agent ARGV` in this process, traced; a snapshot each time a
    `want-K` file appears in `folder` (`snap-K.tm`, its figures in `snap-K.json`)."""
    if frames > 0:
        tracemalloc.start(frames)
    gc.callbacks.append(_count_collected)

    def serve() -> None:
        while True:
            time.sleep(0.2)
            for want in sorted(folder.glob("want-*")):
                k = want.name.removeprefix("want-")
                loop = soak.running_loop()
                figures: dict[str, Any]
                if loop is None:
                    figures = {"error": "no loop"}
                else:
                    try:
                        figures = snapshot_on(loop, folder / f"snap-{k}.tm")
                    except (RuntimeError, TimeoutError) as exc:
                        figures = {"error": repr(exc)}
                with open("/proc/self/status") as status:
                    rss = next(int(x.split()[1]) for x in status if x.startswith("VmRSS:"))
                figures |= {"rss_mb": round(rss / 1024, 1)} | soak.allocators()
                (folder / f"snap-{k}.json").write_text(json.dumps(figures))
                want.unlink()

    threading.Thread(target=serve, daemon=True).start()
    sys.argv = ["agent", *argv]
    runpy.run_module("agent", run_name="__main__", alter_sys=True)


# ------------------------------------------------------------- the drivers


class Budget:
    """Windows still to open, shared by the drivers of a step."""

    def __init__(self, n: int) -> None:
        self.left, self.lock = n, threading.Lock()

    def take(self) -> bool:
        with self.lock:
            self.left -= 1
            return self.left >= 0


class Windows(soak.Driver):
    """The soak's pipeline driver, opening windows while the step's budget lasts."""

    def __init__(
        self, i: int, agent_port: int, target_port: int, kind: str, budget: Budget, step: int
    ):
        super().__init__(i, agent_port, target_port, seed=1000 * step + i, kind=kind)
        self.budget, self.step = budget, step

    def run(self) -> None:
        n = 0
        while self.budget.take():
            n += 1
            version = f"s{self.step}v{n}"
            try:
                self.control("bad")
                body = {"environment": f"env{self.i:02d}", "version": version}
                deploy = self.register(body, {"Idempotency-Key": f"env{self.i}-{version}"})
                self.kinds[self.kind] += 1
                threading.Thread(target=self.stream, args=(deploy["id"],), daemon=True).start()
                ended = self.ended(deploy["id"])
                self.control("good")
                if ended is not None:
                    self.verdicts.append({"id": deploy["id"], "state": ended["state"]})
            except (OSError, ValueError) as exc:
                self.failed(exc)


# ------------------------------------------------------------- the run


LONG = ("census", "holders", "structures", "cycles", "garbage")
"""A snapshot's figures left out of the line printed at each step (in the result)."""


def measure(args: argparse.Namespace) -> dict[str, Any]:
    return soak.on_store(args, measure_on)


def measure_on(args: argparse.Namespace, store_url: str) -> dict[str, Any]:
    out: Path = args.out
    kinds = [KINDS[i % len(KINDS)] for i in range(args.environments)]
    env = spawn_env()
    peer = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--peers",
            str(out / "peers.json"),
            ",".join(kinds),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert peer.stdout is not None
    ports = json.loads(peer.stdout.readline())
    port = free_port()
    config = out / "postflight.yaml"
    config.write_text(soak.configuration(store_url, ports, args.window, args.interval))
    snaps = out / "snaps"
    snaps.mkdir(exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    agent_argv = ["--log-format", "json", "run", "--config", str(config)]
    with (out / "agent.log").open("wb") as log:
        agent = subprocess.Popen(
            [*me, "--agent", str(snaps), str(args.frames), "--", *agent_argv],
            cwd=ROOT,
            env=env | {"POSTFLIGHT_LISTEN": f"{soak.HOST}:{port}"},
            stdout=log,
            stderr=log,
        )
    steps: list[dict[str, Any]] = []
    drivers: list[Windows] = []
    try:
        wait_ready(agent, port, time.monotonic() + 120, f"{out}/agent.log")
        done = 0
        for step, multiple in enumerate(args.steps, 1):
            budget = Budget(multiple * args.windows - done)
            done = multiple * args.windows
            these = [
                Windows(i, port, target, kinds[i], budget, step)
                for i, target in enumerate(ports["targets"])
            ]
            begun = time.monotonic()
            for d in these:
                d.start()
                time.sleep(args.interval / len(these))
            for d in these:
                d.join()
            drivers += these
            ran_s = time.monotonic() - begun
            time.sleep(args.quiet)
            figures = snapshot(snaps, step)
            text = soak.scrape(port)
            (out / f"metrics-{step}.txt").write_text(text)
            figures["metrics_series"] = sum(1 for x in text.splitlines() if x[:1] not in ("#", ""))
            figures |= {"windows": done, "ran_s": round(ran_s, 1)}
            steps.append(figures)
            if not args.json:
                shown = {k: v for k, v in figures.items() if k not in LONG}
                print(json.dumps(shown), flush=True)
    finally:
        stop_agents([agent])
        peer.terminate()
        peer.wait()
    return report(snaps, steps, drivers, args)


def snapshot(snaps: Path, step: int) -> dict[str, Any]:
    want = snaps / f"want-{step}"
    want.touch()
    figures_path = snaps / f"snap-{step}.json"
    deadline = time.monotonic() + 600
    while not figures_path.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no snapshot from the agent in 10 minutes")
        time.sleep(0.2)
    time.sleep(0.1)  # the file is written in one call; let it land
    return dict(json.loads(figures_path.read_text()))


def report(
    snaps: Path, steps: list[dict[str, Any]], drivers: list[Windows], args: argparse.Namespace
) -> dict[str, Any]:
    """Growth per window between steps and the sites that grew most, first to last."""
    per_window = []
    for a, b in itertools.pairwise(steps):
        n = b["windows"] - a["windows"]
        per_window.append(
            {
                "from": a["windows"],
                "to": b["windows"],
                "traced_bytes_per_window": round((b["traced"] - a["traced"]) / n),
                "rss_kb_per_window": round((b["rss_mb"] - a["rss_mb"]) * 1024 / n, 1),
                "series_per_window": round((b["metrics_series"] - a["metrics_series"]) / n, 2),
                "collected_per_window": round((b["collected"] - a["collected"]) / n),
            }
        )
    n = steps[-1]["windows"] - steps[0]["windows"]
    if n <= 0:
        raise SystemExit(
            f"{len(steps)} step(s) and no window between the first and the last: nothing to"
            " compare per window (more --steps, or --windows large enough to open)"
        )
    sites = []
    for stat in _grown(snaps, len(steps), args.group)[: args.top]:
        frames = [f"{f.filename.removeprefix(str(ROOT) + '/')}:{f.lineno}" for f in stat.traceback]
        sites.append(
            {
                "bytes_per_window": round(stat.size_diff / n, 1),
                "blocks_per_window": round(stat.count_diff / n, 2),
                "size": stat.size,
                "site": frames[0] if args.group == "lineno" else frames,
            }
        )
    sized = [s.pop("structures", {}) for s in steps]
    growing = [
        {"structure": k, "per_window": round((v - sized[0].get(k, 0)) / n, 2), "size": v}
        for k, v in sized[-1].items()
        if v > sized[0].get(k, 0)
    ]
    growing.sort(key=lambda g: -g["per_window"])
    census = [s.pop("census", {}) for s in steps]
    grown = {k: v - census[0].get(k, 0) for k, v in census[-1].items()}
    objects = [
        {"type": k, "per_window": round(v / n, 2), "count": census[-1][k]}
        for k, v in sorted(grown.items(), key=lambda kv: -kv[1])[: args.top]
        if v > 0
    ]
    errors: dict[str, int] = {}
    states: dict[str, int] = {}
    for d in drivers:
        for key, count in d.errors.items():
            errors[key] = errors.get(key, 0) + count
        for v in d.verdicts:
            states[v["state"]] = states.get(v["state"], 0) + 1
    return {
        "store": args.store,
        "steps": steps,
        "per_window": per_window,
        "top_sites": sites,
        "objects": objects,
        "structures": growing,
        "states": states,
        "driver_errors": errors,
    }


def _grown(snaps: Path, last: int, group: str) -> list[tracemalloc.StatisticDiff]:
    """The allocation sites' growth from the first snapshot to the `last` (none taken:
    `--frames 0`)."""
    if not (snaps / "snap-1.tm").exists():
        return []
    first = tracemalloc.Snapshot.load(str(snaps / "snap-1.tm")).filter_traces(IGNORED)
    end = tracemalloc.Snapshot.load(str(snaps / f"snap-{last}.tm")).filter_traces(IGNORED)
    return end.compare_to(first, group)


def table(r: dict[str, Any]) -> str:
    lines = ["windows  traced_MB  peak_MB  rss_MB  series  tasks  garbage_objects  garbage_MB"]
    for s in r["steps"]:
        lines.append(
            f"{s['windows']:7d}  {s['traced'] / 2**20:9.2f}  {s['traced_peak'] / 2**20:7.2f}"
            f"  {s['rss_mb']:6.1f}  {s['metrics_series']:6d}  {s['tasks']:5d}"
            f"  {s['garbage_objects']:15d}  {s['garbage_bytes'] / 2**20:10.2f}"
        )
    for p in r["per_window"]:
        lines.append(
            f"{p['from']}->{p['to']} windows: {p['traced_bytes_per_window']} traced bytes/window,"
            f" {p['rss_kb_per_window']} kB RSS/window, {p['series_per_window']} series/window,"
            f" {p['collected_per_window']} objects collected/window"
        )
    lines.append("top sites (bytes per window, first to last step):")
    for s in r["top_sites"]:
        lines.append(f"  {s['bytes_per_window']:10.1f}  {s['blocks_per_window']:7.2f}  {s['site']}")
    lines.append("cyclic garbage at the last step, by type:")
    for kind, count in r["steps"][-1]["garbage"].items():
        lines.append(f"  {count:8d}  {kind}")
    lines.append(
        "module-level containers and memos that grew, first to last step (per window, size):"
    )
    for g in r["structures"]:
        lines.append(f"  {g['per_window']:8.2f}  {g['size']:7d}  {g['structure']}")
    lines.append("live objects that grew most, first to last step (per window, count):")
    for o in r["objects"]:
        lines.append(f"  {o['per_window']:8.2f}  {o['count']:7d}  {o['type']}")
    return "\n".join(lines)


def main() -> None:
    if "--agent" in sys.argv:
        at = sys.argv.index("--")
        folder, frames = sys.argv[sys.argv.index("--agent") + 1 : at]
        traced_agent(Path(folder), int(frames), sys.argv[at + 1 :])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=24, help="windows of the first step")
    parser.add_argument("--steps", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4])
    parser.add_argument("--window", type=parse_duration, default=20.0)
    parser.add_argument("--interval", type=parse_duration, default=2.0)
    parser.add_argument("--quiet", type=float, default=40.0, help="seconds quiet before a snapshot")
    parser.add_argument("--environments", type=int, default=12)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--frames", type=int, default=8, help="tracemalloc frames per trace (0: not traced)"
    )
    parser.add_argument("--group", choices=["lineno", "traceback"], default="lineno")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="memory-"))
    args.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops the agent and peers
    print(f"memory in {args.out}", flush=True)
    result = measure(args)
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=None if args.json else 1))
    if not args.json:
        print(table(result))


if __name__ == "__main__":
    main()
