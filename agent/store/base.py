"""The store's interface: everything the agent must not lose, behind one Protocol.

State lives here, not in memory: a window, its baseline, each round, the verdict,
the rollback intent and every delivery attempt are written before they are acted
on, so a process killed at any instant restarts into the same decisions.
"""

from __future__ import annotations

from typing import Any, Protocol

from agent.records import (
    DeliveryAttempt,
    DeployWindow,
    IdempotentResponse,
    Page,
    RollbackIntent,
    RoundRecord,
    WindowCreated,
    WindowState,
)


class StoreError(Exception):
    """The store cannot answer (down, locked, corrupt)."""


class Conflict(StoreError):
    """The change does not apply to the record's current state."""


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    # windows
    async def create_window(
        self, window: DeployWindow, idempotency: IdempotentResponse | None = None
    ) -> WindowCreated:
        """Insert a window, superseding the environment's active one in the same
        transaction; with `idempotency`, also remember the response under its key."""
        ...

    async def idempotent_response(self, key: str) -> IdempotentResponse | None: ...

    async def get_window(self, window_id: str) -> DeployWindow | None: ...

    async def list_windows(
        self,
        *,
        environment: str | None = None,
        state: WindowState | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page: ...

    async def claim_windows(self, owner: str, now: float, lease_s: float) -> list[DeployWindow]:
        """Active windows this owner holds or may take (lease lapsed), now leased to it."""
        ...

    async def renew_lease(self, window_id: str, owner: str, until: float) -> bool: ...

    async def release_lease(self, window_id: str, owner: str) -> None: ...

    async def set_baseline(self, window_id: str, baseline: dict[str, Any]) -> None: ...

    async def record_round(
        self, record: RoundRecord, verdict: dict[str, Any] | None, owner: str | None = None
    ) -> bool:
        """Store a round and the window's latest verdict; False if the window ended
        meanwhile (or another replica owns it)."""
        ...

    async def rounds(self, window_id: str) -> list[RoundRecord]: ...

    async def finish_window(
        self,
        window_id: str,
        state: WindowState,
        verdict: dict[str, Any] | None,
        at: float,
        rollback: RollbackIntent | None = None,
    ) -> bool:
        """Move an active window to a final state (and store the rollback intent in
        the same transaction); False if it had already ended."""
        ...

    async def set_state(self, window_id: str, state: WindowState, expected: WindowState) -> bool:
        """Compare-and-set a window's state (`failed` → `rolled_back`)."""
        ...

    async def cancel_window(self, window_id: str, at: float) -> DeployWindow:
        """Cancel an active window; `Conflict` if it already ended, KeyError if unknown."""
        ...

    # rollback delivery
    async def get_rollback(self, window_id: str) -> RollbackIntent | None: ...

    async def update_rollback(self, intent: RollbackIntent) -> None:
        """Store the delivery's progress; a `delivered` intent moves its window from
        `failed` to `rolled_back` in the same transaction."""
        ...

    async def add_rollback(self, intent: RollbackIntent) -> bool:
        """Store a rollback for a window that already ended passed, failed or
        inconclusive (a manual rollback); False if it has one already, or is in
        another state."""
        ...

    async def record_delivery(self, attempt: DeliveryAttempt) -> None: ...

    async def deliveries(self, window_id: str) -> list[DeliveryAttempt]: ...

    async def pending_rollbacks(self) -> list[RollbackIntent]: ...

    # alerts
    async def claim_alert(self, window_id: str, event: str, at: float) -> bool:
        """True the first time (window, event) is claimed: one notification per deploy
        and event, across restarts."""
        ...

    async def record_alert(self, window_id: str, event: str, result: str, detail: str) -> None: ...

    async def alert_events(self, window_id: str) -> dict[str, str]:
        """event → last result for a window."""
        ...

    # background probing (pre-deploy baselines)
    async def add_probe_summary(
        self, environment: str, check: str, at: float, summary: dict[str, Any]
    ) -> None: ...

    async def probe_summaries(
        self, environment: str, since: float, until: float
    ) -> list[tuple[str, float, dict[str, Any]]]: ...

    async def prune_probe_summaries(self, before: float) -> int: ...
