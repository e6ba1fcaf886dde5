"""A wait a provider asked for inside one call (`Retry-After`, a rate limit's reset), kept
in the store while it lasts: a kill -9 or a stop in it left nothing of it stored, and the
next start (or another replica) took the call's claim over at once and sent it again
inside the wait (GitHub answers a secondary rate limit again, and may block the token
longer).

`call` asks the keeper of the task it runs in (`keeping`), if any, to store the wait's end
before it waits (`AskedWait.keep`) and to take the call's claim back after it
(`AskedWait.resume`). A task sets its keeper around the calls its claim covers; a task it
spawns does not inherit it (`keeper` is the setting task's only), since its calls are not
under that claim.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class AskedWait(Protocol):
    """Keeps the claim a call is made under across a wait its provider asked for."""

    store_away: bool
    """The last `resume` failed here (not the claim taken over): the store did not answer,
    or a bug, logged as one; the claim lapses with the wait and a later try takes it."""
    not_back: str
    """With `store_away`: why, in words for a log line ("the store does not answer")."""

    async def keep(self, seconds: float) -> None:
        """Store that nothing of the call goes out for `seconds` from now: the claim is
        held, as a rate limit's wait, till then, and a restart or another replica takes
        it over no sooner. A store that fails leaves the claim as it was."""
        ...

    async def resume(self) -> bool:
        """After the wait: the claim taken back for the call's next attempt; False if
        another sender took it over meanwhile (the wait ended, and it held the claim), or
        the store did not answer, or a bug met (the claim lapsed with the wait: a later
        try takes it; `store_away` says which), and this call must send nothing more."""
        ...


_KEEPER: contextvars.ContextVar[tuple[asyncio.Task[object] | None, AskedWait] | None] = (
    contextvars.ContextVar("asked_wait_keeper", default=None)
)


@contextmanager
def keeping(keeper: AskedWait) -> Iterator[None]:
    """`keeper` keeps the asked waits of the calls made in this task meanwhile."""
    token = _KEEPER.set((asyncio.current_task(), keeper))
    try:
        yield
    finally:
        _KEEPER.reset(token)


def keeper() -> AskedWait | None:
    """The keeper this task set (`keeping`); None in another task, which copied it."""
    held = _KEEPER.get()
    if held is None or held[0] is not asyncio.current_task():
        return None
    return held[1]
