"""Store retention: deletes, in the background, what no window will read again.

Rounds of windows that ended more than `store.retention.rounds` ago (and what their
settled alerts would be sent again with), idempotency keys older than that, background probe
summaries older than the longest `lookback` (or `store.retention.probe_summaries`),
background leases that lapsed more than `LEASE_GRACE_S` ago (an environment removed from
the config keeps none for good), and protection rules' requests and answered gates older
than `GATES_KEPT_S`.
Deletes in bounded batches so the store is never locked for long; it never touches an
active window, and a failure is logged (a store outage once, `StoreOutageLog`) and retried on the
next pass, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from agent.settings import Settings
from agent.store.base import Store
from agent.store.outages import StoreOutageLog

log = logging.getLogger("postflight.retention")

PRUNE_EVERY_S = 60.0
BATCH = 5000
"""Rows per delete: one short transaction each, so rounds being recorded wait little."""
RESWEEP_S = 3600.0
"""How far back before the previous pass's cutoff a pass looks again for ended windows'
rounds: a window's end is stamped with the clock of the replica that ended it, which may
run behind ours (the first pass of a process sweeps all of them)."""
GATES_KEPT_S = 90 * 86400.0
"""How long a protection rule's request (`gate_requests`: a replay of it is told its gate,
not answered again) and an answered gate are kept, or `store.retention.rounds` if longer:
three times GitHub's longest wait (a job waits 30 days for its answer), so no request
still waited on is forgotten."""


def gates_kept_s(rounds_s: float) -> float:
    """How long gates' requests are kept with `store.retention.rounds` at `rounds_s`: a
    request older than this is a replay the store no longer tells (the hook ignores it)."""
    return max(GATES_KEPT_S, rounds_s)


LEASE_GRACE_S = 60.0
"""How long past its end a background lease stays before it is deleted: a replica's clock
running this much ahead of its holder's still deletes no live lease (a lapsed one is as
good as none: `Store.prune_background_leases`), and a dead row costs nothing meanwhile."""


class Pruned(NamedTuple):
    """What one pass deleted."""

    rounds: int
    probe_summaries: int
    background_leases: int
    alert_payloads: int = 0
    idempotency_keys: int = 0
    gates: int = 0
    """Protection rules' requests and answered gates (`GATES_KEPT_S`)."""


class StorePruner:
    """One pass every `every` seconds; the first at start."""

    def __init__(
        self,
        store: Store,
        *,
        rounds_s: float,
        probe_summaries_s: float,
        clock: Callable[[], float] = time.time,
        every: float = PRUNE_EVERY_S,
    ) -> None:
        self.store = store
        self.rounds_s = rounds_s
        self.probe_summaries_s = probe_summaries_s
        self.clock = clock
        self.every = every
        self.swept_before: float | None = None
        """Every round of a window that ended before this is deleted (a pass went through
        them all): the next pass starts `RESWEEP_S` before it, not at the first window."""

    @classmethod
    def from_settings(
        cls, settings: Settings, store: Store, clock: Callable[[], float] = time.time
    ) -> StorePruner:
        return cls(
            store,
            rounds_s=settings.store.retention.rounds,
            probe_summaries_s=settings.probe_summary_retention,
            clock=clock,
        )

    async def prune_once(self) -> Pruned:
        """What this pass deleted. Background leases are pruned by lapse, not by this
        replica's config: during a rolling config change another replica may still probe
        an environment this one no longer has, and its lease, renewed at each slot, is
        live; one no replica renews any more (its environment removed, its holder crashed
        before a clean stop gave it up) lapses and goes."""
        now = self.clock()
        before = now - self.rounds_s
        since = None if self.swept_before is None else self.swept_before - RESWEEP_S
        rounds = await _in_batches(
            lambda: self.store.prune_rounds(before, limit=BATCH, ended_after=since)
        )
        payloads = await _in_batches(
            lambda: self.store.prune_alert_payloads(before, limit=BATCH, ended_after=since)
        )
        self.swept_before = before
        keys = await _in_batches(lambda: self.store.prune_idempotency(before, BATCH))
        probes = await self.store.prune_probe_summaries(now - self.probe_summaries_s)
        leases = await self.store.prune_background_leases(now - LEASE_GRACE_S)
        gates = await self.store.prune_gates(now - gates_kept_s(self.rounds_s))
        if gates:
            log.info("retention: forgot %d protection rule request(s) and answered gate(s)", gates)
        if rounds or probes:
            log.info("retention: deleted %d rounds and %d probe summaries", rounds, probes)
        if leases:
            log.info("retention: deleted %d lapsed background lease(s)", leases)
        if payloads or keys:
            log.info(
                "retention: forgot the payloads of %d settled alert(s) and %d idempotency key(s)",
                payloads,
                keys,
            )
        return Pruned(rounds, probes, leases, payloads, keys, gates)

    async def run(self) -> None:
        """A pass every `every` seconds. A store that does not answer is said once, and
        once that it answers again, as each background loop says it: logged with its
        traceback at every pass, a PostgreSQL restart was an ERROR a minute."""
        outage = StoreOutageLog(log, "retention pass")
        while True:
            try:
                await self.prune_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be briefly unavailable: next pass
                outage.failed(exc)
            else:
                outage.answered()
            await asyncio.sleep(self.every)


async def _in_batches(prune: Callable[[], Awaitable[int]]) -> int:
    """Call `prune` (deleting at most `BATCH`) until a call deletes fewer; how many in all.
    Between batches the rounds waiting on the store go first."""
    total = 0
    while True:
        deleted = await prune()
        total += deleted
        if deleted < BATCH:
            return total
        await asyncio.sleep(0)
