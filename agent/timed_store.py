"""How long the agent waits for its store, call by call, by kind of call.

An API that answers a GET late, or rounds that start late, may be waiting for the store
(a write queued behind a group's commit, the file's write lock, a long transaction) or
for the agent's own event loop: this is the store's side, each call from its start to
its answer (a lock's queue and a group's commit included) less the loop's stall
meanwhile (`checks.lag`, where its heartbeat beats: probes are running), which the call
spent waiting for the agent, not for the store. Measured whole, a SQLite soak at load 30
put the reads' p99 at 30 s and the round writes' at 30 s, where the stored rounds' overruns
said the loop was stalled up to 16.7 s (12.8 s of it waiting for a CPU).
No clock of the store's own: `time.perf_counter`, read twice a call.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, Literal, get_args

from agent.store.base import Store
from agent.store.proxy import StoreProxy
from checks.ticks import ticks

StoreCallKind = Literal["round_write", "lease", "read", "change"]
STORE_CALL_KINDS: tuple[StoreCallKind, ...] = get_args(StoreCallKind)

ROUND_WRITES = frozenset({"record_round"})
"""A watch's round, stored before the next round starts."""
LEASES = frozenset(
    {"claim_windows", "claim_leases", "renew_lease", "release_lease", "release_leases"}
)
"""The watcher's claim of windows (every second) and the watches' lease renewals."""
READS = frozenset(
    {
        "ping",
        "idempotent_response",
        "get_window",
        "get_windows",
        "list_windows",
        "newest_window_of",
        "store_time",
        "rounds",
        "keys_forgotten_before",
        "get_rollback",
        "deliveries",
        "newer_deploy",
        "count_look_up",
        "pending_rollbacks",
        "count_alert_attempts",
        "alert_retries_due",
        "next_alert_retry",
        "alert_retries_of",
        "unsettled_alerts",
        "claims_without_outcome",
        "alert_events",
        "alerts_of",
        "gate_state",
        "pending_gates",
        "gate_claimed_before",
        "gate_refused",
        "probe_summaries",
        "probe_fingerprints",
    }
)
"""What reads without changing anything: the API's answers, the page's, a watch's."""
UNTIMED = frozenset({"open", "close", "hold_replica_id"})
"""The store's life, not its calls: `open` waits for a store that does not answer yet."""


def call_kind(name: str) -> StoreCallKind:
    """The kind of the store's method `name`; any other change is a `change`."""
    if name in ROUND_WRITES:
        return "round_write"
    if name in LEASES:
        return "lease"
    if name in READS:
        return "read"
    return "change"


Observe = Callable[[StoreCallKind, float], None]


class TimedStore(StoreProxy):
    """A `Store` whose every call is timed, `observe(kind, seconds)` at its answer (a
    failure's too); every other attribute is the wrapped store's own."""

    def __init__(self, store: Store, observe: Observe) -> None:
        super().__init__(store)
        self._observe = observe

    def __getattr__(self, name: str) -> Any:
        found = super().__getattr__(name)
        if name in UNTIMED or not inspect.iscoroutinefunction(found):
            return found
        kind, observe = call_kind(name), self._observe

        @functools.wraps(found)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            lag = ticks().lag
            stalled = lag.beating()
            began = time.perf_counter()
            try:
                return await found(*args, **kwargs)
            finally:
                took = time.perf_counter() - began
                if stalled is not None:
                    took = max(0.0, took - (lag.total() - stalled))
                observe(kind, took)

        return timed  # made at each look-up: a method patched on the store later is timed too


def timed_store(store: Store, observe: Observe) -> Store:
    """`store`, each call's time told to `observe`."""
    return TimedStore(store, observe).as_store()
