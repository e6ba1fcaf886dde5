"""Where each xdist worker spent a run, for finding the suite's critical path.

Opt-in: `POSTFLIGHT_TIMELINE=DIR pytest -p tests.timeline` writes one JSON line per test
(its whole protocol, set-up to tear-down, in Unix seconds) to `DIR/<worker>.jsonl`, and
`python -m tests.timeline DIR` prints each worker's busy time and end, the idle tail (the
last worker's end minus each one's), the longest tests with when they started, and each
`xdist_group`'s span. The suite's wall time is its last worker's: a long test or group
started late leaves the others idle at the end, which only such a timeline shows.

Each test's CPU is recorded too (`cpu`: the worker's own, its threads included; `child_cpu`:
the processes it started and waited for, a daemon or CLI), and the summary ranks tests by it:
on a machine others load, a test's wall time is mostly its wait for a core, while its CPU is
what it costs the run's two cores wherever it runs.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TIMELINE_ENV = "POSTFLIGHT_TIMELINE"


def _worker(config: pytest.Config) -> str:
    """This session's xdist worker id, or "controller": from its config, not the environment,
    whose `PYTEST_XDIST_WORKER` a session run inside a worker (pytester) inherits."""
    workerinput: dict[str, object] = getattr(config, "workerinput", {})
    return str(workerinput.get("workerid", "controller"))


def _record(config: pytest.Config, **fields: object) -> None:
    directory = os.environ.get(TIMELINE_ENV)
    if not directory:
        return
    worker = _worker(config)
    out = Path(directory) / f"{worker}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as file:
        file.write(json.dumps({"worker": worker, **fields}) + "\n")


def pytest_sessionstart(session: pytest.Session) -> None:
    _record(session.config, event="sessionstart", t=time.time())


def pytest_sessionfinish(session: pytest.Session) -> None:
    _record(session.config, event="sessionfinish", t=time.time())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    start, cpu, child_cpu = time.time(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    try:
        return (yield)
    finally:
        mark = item.get_closest_marker("xdist_group")
        group = (mark.args[0] if mark.args else mark.kwargs.get("name")) if mark else None
        _record(
            item.config,
            event="test",
            nodeid=item.nodeid,
            group=group,
            start=start,
            end=time.time(),
            cpu=_cpu(resource.RUSAGE_SELF) - cpu,
            child_cpu=_cpu(resource.RUSAGE_CHILDREN) - child_cpu,
        )


def _cpu(who: int) -> float:
    """User and system CPU seconds of this process (`RUSAGE_SELF`) or of its children that
    ended and were waited for (`RUSAGE_CHILDREN`)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Span:
    worker: str
    nodeid: str
    group: str | None
    start: float
    end: float
    cpu: float = 0.0
    child_cpu: float = 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _read(directory: Path) -> tuple[list[Span], dict[str, dict[str, float]]]:
    spans: list[Span] = []
    sessions: dict[str, dict[str, float]] = defaultdict(dict)
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["event"] == "test":
                spans.append(
                    Span(
                        record["worker"],
                        record["nodeid"],
                        record["group"],
                        record["start"],
                        record["end"],
                        record.get("cpu", 0.0),
                        record.get("child_cpu", 0.0),
                    )
                )
            else:
                sessions[record["worker"]][record["event"]] = record["t"]
    return spans, sessions


def summary(directory: Path, top: int = 25) -> str:
    """The timeline's figures, in seconds from the controller's start."""
    spans, sessions = _read(directory)
    controller = sessions.get("controller", {})
    t0 = controller.get("sessionstart", min(s.start for s in spans))
    by_worker: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_worker[span.worker].append(span)
    ends = {w: max(s.end for s in ss) for w, ss in by_worker.items()}
    last = max(ends.values())
    head = f"{len(spans)} tests, the last ended at {last - t0:.1f} s"
    if "sessionfinish" in controller:
        head += f", the controller finished at {controller['sessionfinish'] - t0:.1f} s"
    lines = [head, "worker  tests   first    busy     end  idle-tail"]
    for worker, ss in sorted(by_worker.items()):
        first = min(s.start for s in ss) - t0
        busy = sum(s.seconds for s in ss)
        tail = last - ends[worker]
        lines.append(
            f"{worker:7} {len(ss):5} {first:7.1f} {busy:7.1f} {ends[worker] - t0:7.1f} {tail:7.1f}"
        )
    lines.append(f"the {top} longest tests (worker, start, seconds, nodeid):")
    for span in sorted(spans, key=lambda s: -s.seconds)[:top]:
        lines.append(f"  {span.worker} {span.start - t0:7.1f} {span.seconds:6.1f}  {span.nodeid}")
    cpu = sum(s.cpu + s.child_cpu for s in spans)
    lines.append(f"the {top} tests that took the most CPU of the {cpu:.1f} s all took")
    lines.append("(worker, start, seconds, cpu, child cpu, nodeid):")
    for span in sorted(spans, key=lambda s: -(s.cpu + s.child_cpu))[:top]:
        lines.append(
            f"  {span.worker} {span.start - t0:7.1f} {span.seconds:6.1f} {span.cpu:6.1f}"
            f" {span.child_cpu:6.1f}  {span.nodeid}"
        )
    groups: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for span in spans:
        if span.group:
            groups[(span.group, span.worker)].append(span)
    lines.append("groups (name, worker, tests, start, end, busy):")
    for (name, worker), ss in sorted(groups.items()):
        start, end = min(s.start for s in ss) - t0, max(s.end for s in ss) - t0
        busy = sum(s.seconds for s in ss)
        lines.append(f"  {name:26} {worker} {len(ss):5} {start:7.1f} {end:7.1f} {busy:7.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))
