"""The daemon's heap settings: the collector tuned once, its pauses counted, growth traced."""

from __future__ import annotations

import asyncio
import gc
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.metrics import Metrics
from agent.windows import heap
from tests.api.test_edges import running_daemon
from tests.cli.test_run_start import agent_env, free_port


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, whatever a test changed."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _pauses(metrics: Metrics, which: str) -> float:
    return metrics.registry.get_sample_value(f"postflight_{which}_seconds_count") or 0.0


def test_tuning_freezes_what_lives_and_raises_the_thresholds(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(heap.GC_THRESHOLDS_ENV, raising=False)
    gc.unfreeze()
    kept = [object() for _ in range(10)]  # alive now: frozen, never walked again
    heap.tune_collector()
    assert gc.get_threshold() == heap.THRESHOLDS
    assert gc.get_freeze_count() > len(kept)


def test_tuning_off_leaves_cpython_defaults(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(heap.GC_THRESHOLDS_ENV, "off")
    gc.unfreeze()
    before = gc.get_threshold()
    heap.tune_collector()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_every_collection_pause_is_counted_while_the_daemon_runs(collector: None) -> None:
    metrics = Metrics()
    async with heap.daemon_heap(metrics):
        before = {which: _pauses(metrics, which) for which in ("gc_pause", "gc_full_pause")}
        gc.collect()  # a full collection: counted in both
        gc.collect(0)  # a young one: only among every collection's
        assert _pauses(metrics, "gc_full_pause") == before["gc_full_pause"] + 1
        assert _pauses(metrics, "gc_pause") >= before["gc_pause"] + 2
        counted = {which: _pauses(metrics, which) for which in before}
    gc.collect()  # the callback is gone with the daemon
    assert {which: _pauses(metrics, which) for which in before} == counted
    assert not any(isinstance(cb, heap.GcPauses) for cb in gc.callbacks)


async def test_the_daemon_freezes_what_start_up_left_once_it_is_up(
    collector: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`serve` (what `postflight run` runs) freezes start-up's objects once it is up:
    nothing a full pass of the collector walks again (`bench/page_size.py`'s
    `gc_frozen`, `gc_walked_by_a_full_pass`)."""
    monkeypatch.delenv(heap.GC_THRESHOLDS_ENV, raising=False)
    gc.unfreeze()
    async with running_daemon(tmp_path):
        for _ in range(100):
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 10_000  # the imports, settings and the app's parts
        assert gc.get_threshold() == heap.THRESHOLDS


def test_growth_between_two_snapshots_names_the_line(tmp_path: Path) -> None:
    tracemalloc.start(4)
    try:
        first = tracemalloc.take_snapshot()
        grown = [bytearray(1000) for _ in range(1000)]  # about 1 MB, on this line
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    path = heap.write_growth(tmp_path / "trace", first, second, (1.0, 2.0), 4)
    text = path.read_text()
    assert len(grown) == 1000
    assert "from 1s to 2s" in text
    assert "test_heap.py" in text.split("## by lineno")[1].split("## by traceback")[0]
    total_mb = float(text.split("total: ")[1].split(" MB")[0])
    assert total_mb >= 1.0


def test_growth_tracer_reads_its_directory_and_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(heap.TRACEMALLOC_ENV, raising=False)
    assert heap.growth_tracer() is None
    monkeypatch.setenv(heap.TRACEMALLOC_ENV, "/tmp/where")
    monkeypatch.setenv(heap.TRACEMALLOC_AT_ENV, "60,120")
    assert heap.growth_tracer() == (Path("/tmp/where"), (60.0, 120.0))


def agent_config(tmp_path: Path) -> Path:
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: '127.0.0.1:{free_port()}', api_tokens: [tok-1234567890abcdef]}}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/postflight.db'}}\n"
        "environments: {production: {base_url: 'http://127.0.0.1:9/'}}\n"
    )
    return config


def run_exit(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`postflight run` that is expected to exit on its own, with what it said."""
    return subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(agent_config(tmp_path))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def running(tmp_path: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`postflight run` logging to `log`, killed if a test leaves it running."""
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(agent_config(tmp_path))],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        yield agent
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def wait_for_log(
    agent: subprocess.Popen[bytes], log: Path, line: str, deadline: float, every: float
) -> None:
    """Polls the log for `line`; fails with the log if the agent exits or time runs out."""
    while line not in log.read_text():
        assert agent.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(every)


def stop_cleanly(agent: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, and the agent exits 0 within 30 s."""
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0, log.read_text()


@pytest.mark.timeout(120)
def test_postflight_run_writes_the_traced_growth_where_and_when_asked(tmp_path: Path) -> None:
    """The README: `POSTFLIGHT_TRACEMALLOC=dir` (with `POSTFLIGHT_TRACEMALLOC_AT`, seconds
    after the start) writes the traced heap's growth to `dir/tracemalloc-diff.txt`."""
    trace = tmp_path / "trace"
    log = tmp_path / "agent.log"
    env = agent_env() | {heap.TRACEMALLOC_ENV: str(trace), heap.TRACEMALLOC_AT_ENV: "0.2,0.5"}
    with running(tmp_path, env, log) as agent:
        deadline = time.monotonic() + 90
        wait_for_log(agent, log, "traced heap growth written", deadline, every=0.1)
        stop_cleanly(agent, log)
    assert "from 0.2s to 0.5s after the start" in (trace / "tracemalloc-diff.txt").read_text()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (heap.GC_THRESHOLDS_ENV, "500k"),
        (heap.GC_THRESHOLDS_ENV, "1,2"),
        (heap.TRACEMALLOC_AT_ENV, "300"),
        (heap.TRACEMALLOC_AT_ENV, "600,300"),
    ],
)
def test_a_diagnostic_variable_it_cannot_read_is_named_with_what_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """What `postflight run` says before it starts of each way of mistyping a variable
    (it said one line and exited 2: the test below): which variable and its value. Two
    thresholds were used as they came."""
    monkeypatch.delenv(heap.GC_THRESHOLDS_ENV, raising=False)
    monkeypatch.delenv(heap.TRACEMALLOC_AT_ENV, raising=False)
    monkeypatch.setenv(heap.TRACEMALLOC_ENV, str(tmp_path / "trace"))
    monkeypatch.setenv(variable, value)
    (problem,) = heap.diagnostic_problems()
    assert problem.startswith(f"{variable}={value!r}: write "), problem


@pytest.mark.timeout(120)
def test_a_diagnostic_variable_it_cannot_read_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Mistyped, such a variable stopped the agent after it was listening with a
    traceback (`ValueError: invalid literal for int()`, exit 1); a trace directory that
    cannot be made (read only when the snapshots were taken, 300 s in by default) was the
    traced task's OSError, raised at the stop and said as `cannot listen on 127.0.0.1:…:
    [Errno 2] …`, exit 2 after a clean SIGTERM. Now `postflight run` says each, one line
    a variable, and exits 2 before it starts (each way of mistyping them: above)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = agent_env() | {
        heap.TRACEMALLOC_ENV: str(blocker / "trace"),
        heap.GC_THRESHOLDS_ENV: "500k",
    }
    done = run_exit(tmp_path, env)
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert f"postflight run: error: {heap.GC_THRESHOLDS_ENV}='500k': " in said, said
    assert f"postflight run: error: {heap.TRACEMALLOC_ENV}={str(blocker / 'trace')!r}: " in said, (
        said
    )
    assert "Traceback" not in said and "listening on" not in said, said


@pytest.mark.timeout(120)
def test_a_trace_that_cannot_be_written_is_a_warning_and_the_stop_stays_clean(
    tmp_path: Path,
) -> None:
    """The directory gone by the time the growth is written (a file in its place): one
    warning, and SIGTERM still exits 0."""
    trace = tmp_path / "trace"
    log = tmp_path / "agent.log"
    env = agent_env() | {heap.TRACEMALLOC_ENV: str(trace), heap.TRACEMALLOC_AT_ENV: "1,2"}
    with running(tmp_path, env, log) as agent:
        deadline = time.monotonic() + 90
        wait_for_log(agent, log, "listening on", deadline, every=0.05)
        if trace.is_dir():
            trace.rmdir()
        trace.write_text("not a directory")
        wait_for_log(agent, log, "traced heap growth not written", deadline, every=0.1)
        stop_cleanly(agent, log)
    assert "cannot listen" not in log.read_text()
