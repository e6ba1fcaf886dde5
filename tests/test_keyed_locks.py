"""`common.keyed_locks`: one holder of a key at a time, in turn, and no lock kept after."""

from __future__ import annotations

import asyncio

from common.keyed_locks import KeyedLocks


async def test_holders_of_a_key_take_turns_and_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def hold(key: str, name: str) -> None:
        async with locks.hold(key):
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    await asyncio.gather(hold("a", "a1"), hold("a", "a2"), hold("b", "b1"))
    assert order.index("a1-") < order.index("a2+")
    assert order.index("b1+") < order.index("a1-")  # another key's holder ran meanwhile
    assert len(locks) == 0


async def test_a_waiter_cancelled_or_a_holder_failing_leaves_no_lock() -> None:
    locks = KeyedLocks()
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("a"):
            held.set()
            await release.wait()
            raise RuntimeError("failed while holding")

    async def waiter() -> None:
        async with locks.hold("a"):
            raise AssertionError("never holds: cancelled first")

    first = asyncio.create_task(holder())
    await held.wait()
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert len(locks) == 1
    second.cancel()
    release.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert isinstance(results[1], asyncio.CancelledError)
    assert len(locks) == 0
    async with locks.hold("a"):  # free again
        assert len(locks) == 1
    assert len(locks) == 0
