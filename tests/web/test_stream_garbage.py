"""An event stream that ended leaves nothing for the collector: the daemon collects
rarely (`agent.windows.heap`), so what each stream left in reference cycles (its
deploy's reader, its snapshot of the window and rounds) piled up, stream after stream,
until a full collection (`bench/soak.py`: +40 MB/h on a dozen environments)."""

from __future__ import annotations

import asyncio
import collections
import gc

import pytest

from tests.web.conftest import JourneyAgent

pytestmark = pytest.mark.e2e


@pytest.mark.usefixtures("heap_set_aside")
async def test_an_ended_stream_leaves_none_of_the_agents_objects_in_a_reference_cycle(
    journey_agent: JourneyAgent,
) -> None:
    agent = await journey_agent()
    one = await agent.register("production", "v1")
    await agent.register("production", "v2")  # `one` superseded: its stream ends at once
    url = f"{agent.url}/v1/deploys/{one['id']}/events"

    async def stream_to_its_end() -> None:
        async with agent.http.get(url, headers=agent.headers) as r:
            assert r.status == 200
            await r.read()

    await stream_to_its_end()  # what a first stream builds once
    await asyncio.sleep(0.1)
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            await stream_to_its_end()
        await asyncio.sleep(0.1)  # its reader's task ends
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}"
            for o in gc.garbage
            if type(o).__module__.startswith("agent.")
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == {}
