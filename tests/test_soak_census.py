"""bench/soak.py's census of the agent's heap, taken while the agent runs: it must not
break what the agent is doing meanwhile."""

from __future__ import annotations

import pytest

from tests.fresh_interpreter import in_a_fresh_interpreter

BUILDING_TUPLES = """
import asyncio, json, sys, threading
from tests.bench_module import bench_module
bench = bench_module("soak")
sys.setswitchinterval(1e-6)  # the threads take turns at every chance: a census cuts in
failures, censuses = [], []

async def agent():
    loop = asyncio.get_running_loop()
    taker = threading.Thread(
        target=lambda: censuses.extend(bench.census_on(loop) for _ in range(8))
    )
    taker.start()
    kept = [[object()] for _ in range(20_000)]  # a census long enough to be cut into
    while taker.is_alive():
        for _ in range(200):
            try:
                tuple(x for x in range(64) if x % 3 or kept is None)
            except SystemError as exc:
                failures.append(repr(exc))
        await asyncio.sleep(0)
    taker.join()

asyncio.run(agent())
print(json.dumps({"failures": failures, "coros": [list(c["coros"]) for c in censuses]}))
"""


@pytest.mark.timeout(60)
def test_a_census_leaves_the_tuples_the_agent_is_building_alone() -> None:
    """Taken from the watcher's thread, a census held every live object (the list of
    `gc.get_objects()`) while the agent went on: a tuple the agent was building from a
    generator then had a second reference, and growing it failed with `SystemError: bad
    argument to internal function` (a default soak's agent stopped so). On the agent's
    loop, between two callbacks, it holds nothing being built.
    In a fresh interpreter, whose heap is the agent's few objects: in a long-lived xdist
    worker each census walked every object the worker's earlier tests left (56 s of a
    full run's test for its 8, against its timeout of 60 s). The threads switch every
    microsecond there: a census taken from the thread (the old `census`) then failed 6
    times in 6 runs (6-7 SystemErrors each), where at the default 5 ms it failed 2 in 5."""
    taken = in_a_fresh_interpreter(BUILDING_TUPLES)
    assert taken["failures"] == []
    assert len(taken["coros"]) == 8
    for coros in taken["coros"]:  # each saw the agent's task, under way
        assert [name.rpartition(".")[2] for name in coros] == ["agent"]


TWO_LOOPS = """
import asyncio, json, threading
from tests.bench_module import bench_module
bench = bench_module("soak")
other = asyncio.new_event_loop()
parked = other.create_future()

async def elsewhere():
    await parked

async def agent():
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, bench.census_on, loop)

runner = threading.Thread(target=other.run_until_complete, args=(elsewhere(),))
runner.start()
try:
    taken = asyncio.run(agent())
finally:
    other.call_soon_threadsafe(parked.set_result, None)
    runner.join()
    other.close()
print(json.dumps({"coros": list(taken["coros"])}))
"""


@pytest.mark.timeout(60)
def test_a_census_counts_the_tasks_of_its_loop_only() -> None:
    """Another loop's task under way in the same process (in a test run, a worker's
    earlier tests leave some) is not the agent's: the census of the agent's loop does
    not count it. In a fresh interpreter, as the census of the tuples: in a long-lived
    xdist worker it walked every object the worker's earlier tests left."""
    taken = in_a_fresh_interpreter(TWO_LOOPS)
    assert [name.rpartition(".")[2] for name in taken["coros"]] == ["agent"]


ALLOCATING = """
import json
from tests.bench_module import bench_module
bench = bench_module("soak")
before = bench.allocators()
large = [bytearray(1000) for _ in range(20_000)]  # 20 MB in malloc's heap
small = [(i, i + 1) for i in range(200_000)]  # ~13 MB of pymalloc's 56-byte blocks
after = bench.allocators()
print(json.dumps({"before": before, "after": after, "kept": len(large) + len(small)}))
"""


@pytest.mark.timeout(60)
def test_the_allocators_split_says_where_memory_went() -> None:
    """RSS that grows while the census stays flat is told apart: blocks over 512 bytes in
    glibc's heap, small objects outside it (pymalloc's arenas). Measured in a fresh
    interpreter: in one that ran other tests, pymalloc reuses the arenas they freed and
    RSS outside the heap need not grow."""
    figures = in_a_fresh_interpreter(ALLOCATING)
    before, after = figures["before"], figures["after"]
    if "heap_used_mb" not in before:
        pytest.skip("not glibc 2.33 or later: no mallinfo2")
    assert figures["kept"] == 220_000
    assert after["heap_used_mb"] - before["heap_used_mb"] >= 18
    assert after["outside_heap_mb"] - before["outside_heap_mb"] >= 10
    assert after["anon_mb"] - before["anon_mb"] >= 28
