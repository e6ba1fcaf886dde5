"""A provider fetch that ran out of time because the agent itself stalled: the agent's
failure, not the provider's.

Why: the agent reads a provider's answer on its own event loop. A loop stalled by a GC
pause, a blocked callback or a machine it shares reads an answer that came in time too
late, and the fetch ended as "Sentry did not answer": the rule inconclusive, and on-call
told Sentry was down while Sentry was fine. The rule is the probes' (`checks.lag`): a
wait that ended without an answer is the agent's when its loop was stalled for more
than a tenth of it, and when it was still not keeping time, as the wait ended, for more
than a tenth of it (`LoopLag.unattended`): an answer that came before that last stall
was read once the loop kept time again, so only that stall can have hidden one. A
machine that starves the agent stalls it a little in every wait (load 12-16: more than
a tenth of nearly every 300-600 ms wait): with the first test alone, a provider that
hung was never told, each of its fetches the agent's. An answer the provider gave (a
429, a 5xx), a connection it refused, or a timeout while the agent kept up stays the
provider's, whatever came after it in the same fetch.

Each fetch (`HttpProvider._observe`) and marker write watches the loop with `FetchLag`
(`watching`); `HttpProvider.send` finds it in `WATCHING` (a context variable: pages and
the tasks a fetch starts share it).
No I/O; the heartbeat is `checks.ticks`'s, the probes' own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from checks.lag import LoopLag, unread_answer_explains
from checks.ticks import ticks


@dataclass(slots=True)
class Span:
    """The loop's stall so far and the time, when a wait began."""

    lag: LoopLag
    mark: float
    started: float

    @classmethod
    def begin(cls) -> Span:
        lag = ticks().lag
        return cls(lag, lag.total(), asyncio.get_running_loop().time())

    def stall(self) -> tuple[float, float] | None:
        """(stalled, waited) when the loop's stall since `begin` explains a wait that ended
        now without an answer (`checks.lag.unread_answer_explains`: the stall under way as
        it ended too, and why a probe's rule differs); else None."""
        stalled = self.lag.total() - self.mark
        waited = asyncio.get_running_loop().time() - self.started
        explains = unread_answer_explains(waited, stalled, self.lag.unattended())
        return (stalled, waited) if explains else None


@dataclass(slots=True)
class FetchLag:
    """One fetch's watch on the agent's loop, and the provider's own latest failure."""

    span: Span
    said: str | None = None
    """What the provider itself did wrong in this fetch (an answer to retry, a failed
    connection, no answer while the agent kept up): then the fetch's failure is its."""


WATCHING: ContextVar[FetchLag | None] = ContextVar("postflight_provider_fetch", default=None)
"""The fetch or marker write under way in this task (`watching`); None outside one."""


@contextmanager
def watching() -> Iterator[FetchLag]:
    """A fetch or a marker's write under way in this task, for `HttpProvider.send` (and
    the tasks it starts) to find in `WATCHING`; the task's context is as before after it."""
    fetch = FetchLag(Span.begin())
    token = WATCHING.set(fetch)
    try:
        yield fetch
    finally:
        WATCHING.reset(token)


def agent_words(title: str, stalled: float, waited: float) -> str:
    """Why no answer was read, blaming the agent: what the rule says if it stays unknown."""
    return (
        f"agent overloaded: its event loop was stalled {stalled:.3f}s of the {waited:.3f}s it"
        f" waited for {title}, so an answer was not read in time (not a {title} failure;"
        " asked again)"
    )
