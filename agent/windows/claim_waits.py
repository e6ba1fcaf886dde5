"""The integrations' claims kept across a wait GitHub or Vercel asked for inside one call
(`agent.integrations.asked_waits`): an alert-table claim (a status, an approval, a
follow-up: `Store.take_alert`) and a protection rule's (`Store.claim_gate`).

While the wait lasts the claim is stored as one that lapses at its end, its run unsaid
(as `_let_claims_lapse` leaves a stopped run's): a restart under the same replica id does
not take it at once as its killed run's, and no replica takes it before the wait ends.
After the wait the call takes it back, as its own live run's, for the rest of the call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from agent.store.base import Store, StoreError

log = logging.getLogger("postflight.integrations")


def _logged_failure(what: str, step: str, exc: Exception, after: str) -> str:
    """Log a store call of an asked wait that failed (`step`, with what it leaves:
    `after`): the store's own error (`StoreError`: it did not answer, was busy, held) at
    warning; anything else is a bug, at error with its type, words and traceback, where
    every exception read as the store not answering. Why, in words for the call's line."""
    if isinstance(exc, StoreError):
        log.warning("%s: %s (%s); %s", what, step, exc, after)
        return "the store does not answer"
    log.error(
        "%s: %s, a bug (%s: %s); %s",
        what,
        step,
        type(exc).__name__,
        exc,
        after,
        exc_info=exc,
    )
    return f"a bug ({type(exc).__name__})"


# the steps of an asked wait's store calls, and what a failure of each leaves
NOT_KEPT = "its asked wait not kept"
KEPT_AS_CLAIMED = "kept as claimed: a restart takes it over at once, as before"
NOT_BACK = "not taken back after its asked wait"
LAPSES = "its claim lapses with the wait and a later try takes it; nothing more sent from here"


OWN_STAMP_S = 0.001
"""How far past this process's own claim stamp a later try of its own still takes it back
(the store keeps the stamp as written: a float's round trip, not a clock's skew)."""


class AlertClaimWait:
    """`AskedWait` for a claim `take_alert` took at `stamp`, lapsing `lease` after its
    stamp: kept by a stamp `lease` before the wait's end."""

    def __init__(
        self,
        store: Store,
        window_id: str,
        key: str,
        stamp: float,
        lease: float,
        clock: Callable[[], float],
    ) -> None:
        self._store, self._window_id, self._key = store, window_id, key
        self._lease, self._clock = lease, clock
        self.stamp = stamp
        """The claim's stamp as stored now: what a take-back or a hand-back is fenced by."""
        self.waiting = False
        """A kept wait holds the claim (a stop in it leaves it so: not handed back)."""
        self.store_away = False
        """The take-back after the wait failed here (`AskedWait`): `not_back` says why."""
        self.not_back = ""

    async def keep(self, seconds: float) -> None:
        moved = self._clock() + seconds - self._lease
        try:
            taken = await self._store.take_alert(
                self._window_id, self._key, moved, self.stamp + OWN_STAMP_S, waiting=True
            )
        except Exception as exc:
            _logged_failure(f"{self._key} of {self._window_id}", NOT_KEPT, exc, KEPT_AS_CLAIMED)
            return
        if taken:
            self.stamp, self.waiting = moved, True

    async def resume(self) -> bool:
        if not self.waiting:
            return True
        self.waiting = False
        now = self._clock()
        try:
            taken = await self._store.take_alert(
                self._window_id, self._key, now, self.stamp + OWN_STAMP_S
            )
        except Exception as exc:
            self.not_back = _logged_failure(
                f"{self._key} of {self._window_id}", NOT_BACK, exc, LAPSES
            )
            self.store_away = True
            return False
        if taken:
            self.stamp = now
        return bool(taken)


class GateClaimWait:
    """`AskedWait` for a protection rule's claim `claim_gate` took until `until`: kept by
    its end moved to the wait's (`extend_gate`), taken back for `hold_s` after it."""

    def __init__(
        self,
        store: Store,
        callback_url: str,
        github_environment: str,
        until: float,
        hold_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._store, self._url, self._environment = store, callback_url, github_environment
        self._hold_s, self._clock = hold_s, clock
        self.until = until
        """The claim's end as stored now: what a hand-back or a move is fenced by."""
        self.waiting = False
        """A kept wait holds the claim (a stop in it leaves it so: not handed back)."""
        self.store_away = False
        """The take-back after the wait failed here (`AskedWait`): `not_back` says why."""
        self.not_back = ""

    async def keep(self, seconds: float) -> None:
        end = self._clock() + seconds
        try:
            moved = await self._store.extend_gate(self._url, self._environment, self.until, end)
        except Exception as exc:
            _logged_failure(f"protection rule {self._url}", NOT_KEPT, exc, KEPT_AS_CLAIMED)
            return
        if moved:
            self.until, self.waiting = end, True

    async def resume(self) -> bool:
        if not self.waiting:
            return True
        self.waiting = False
        # past the kept end, which a claim taken since would have written past
        at = max(self._clock(), math.nextafter(self.until, math.inf))
        until = at + self._hold_s
        try:
            claimed = await self._store.claim_gate(self._url, self._environment, at, until)
        except Exception as exc:
            self.not_back = _logged_failure(f"protection rule {self._url}", NOT_BACK, exc, LAPSES)
            self.store_away = True
            return False
        if claimed:
            self.until = until
        return claimed
