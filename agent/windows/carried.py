"""A window's probes still awaited when their round closed, carried to the round that
finds them answered.

A probe fails on its own `timeout`, never because its round closed: a service answering
in 50 ms with a tail to 300 ms, its probes cut at the end of 250 ms rounds, read 16-26%
errors and was rolled back (`bench/small_windows.py`, 6 of 6 windows), where Gatus,
Flagger and Kayenta judge a request by its own timeout. So a round closes at its end as
before (a slow target never makes it overrun), and a probe still in flight then goes on
to its timeout; its result, answer or timeout, counts in the round during which it lands
(`take`), the window's last round waiting for the rest (`settle`).

No pile-up: a round sends no probe of a check to a target while a round's share of those
earlier rounds sent are still awaited (`room_for`), so at most two rounds' share are ever
in flight. A target that stops answering then gets a round's probes per timeout, not per
round; one answering within a round or so gets every probe, as before.

The watch owns one (`agent.windows.lifecycle.WindowWatch`) and closes it at its end: a
run still going then is cancelled, its result counted nowhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Hashable

from checks.base import CheckResult

log = logging.getLogger("postflight.probing")


class CarriedProbes:
    """The in-flight probes of one window's rounds, and the results they left for the
    next round. Memory: one cancel handle per probe in flight (at most two rounds' share
    per check and target, `room_for`) and the results landed since the last `take`."""

    def __init__(self) -> None:
        self._landed: list[CheckResult] = []
        self._flying: Counter[Hashable] = Counter()
        self._runs: dict[int, Callable[[], object]] = {}
        self._next = 0
        self._calm: asyncio.Event | None = None
        self.held_back = 0
        """Probes not sent: a round's share of their check's were still awaited."""
        self.said = False
        """Whether the window's log said so (once)."""

    def room_for(self, key: Hashable, share: int, own: int) -> bool:
        """Whether a probe of `key` (a check and target) may go: fewer than `share` (a
        round's) of those earlier rounds sent are still in flight, `own` of those in flight
        being this round's. Counts one not sent when not."""
        if self._flying[key] - own < share:
            return True
        self.held_back += 1
        return False

    def sent(self, key: Hashable) -> None:
        """A probe of `key` went out (or waits for a place under `max_concurrency`)."""
        self._flying[key] += 1

    def landed(self, key: Hashable) -> None:
        """A probe of `key` is over (answered, timed out, or not sent after all)."""
        if key not in self._flying:
            return  # cancelled by `close`, which forgot it
        left = self._flying[key] - 1
        if left > 0:
            self._flying[key] = left
        else:
            del self._flying[key]
            if not self._flying and self._calm is not None:
                self._calm.set()

    def adopt(self, cancel: Callable[[], object]) -> int:
        """A run still going as its round closed: `cancel` stops it (`close`). The token
        returned is given to `arrived` with its result."""
        self._next += 1
        self._runs[self._next] = cancel
        return self._next

    def arrived(self, token: int | None, result: CheckResult | None) -> None:
        """A carried run's result (None: it was not sent), for the next `take`; `token`
        None: it landed as its round closed, before `adopt`."""
        if token is not None:
            self._runs.pop(token, None)
        if result is not None:
            self._landed.append(result)

    @property
    def in_flight(self) -> int:
        return sum(self._flying.values())

    def take(self) -> list[CheckResult]:
        """The carried results landed since the last take, for the round closing now."""
        landed, self._landed = self._landed, []
        return landed

    async def settle(self, bound: float) -> list[CheckResult]:
        """Wait for the probes in flight (each ends by its own timeout; `bound` seconds at
        most), then `take`: the window's last round counts them. Those still out after
        `bound` are cancelled and counted nowhere."""
        if self._flying:
            self._calm = asyncio.Event()
            try:
                async with asyncio.timeout(bound):
                    await self._calm.wait()
            except TimeoutError:
                log.debug("%d carried probes cut at the window's end", self.in_flight)
                self.close()
            finally:
                self._calm = None
        return self.take()

    def close(self) -> None:
        """Cancel every carried run still going (the watch ended)."""
        runs, self._runs = self._runs, {}
        for cancel in runs.values():
            cancel()
        self._flying.clear()
