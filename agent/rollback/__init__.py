"""The rollback webhook (contract §3): `contract` (pure: body, `sign`, `verify`, the
intent) and `delivery` (crash-safe sending with retries)."""

from agent.rollback.contract import rollback_body, rollback_intent, sign, skipped_intent, verify
from agent.rollback.delivery import RollbackDelivery, backoff_delay

__all__ = [
    "RollbackDelivery",
    "backoff_delay",
    "rollback_body",
    "rollback_intent",
    "sign",
    "skipped_intent",
    "verify",
]
