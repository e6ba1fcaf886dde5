"""Reading an HTTP `Retry-After` header (RFC 9110 §10.2.3). Pure: `now` is given."""

from __future__ import annotations

import email.utils
import math
from datetime import UTC

RETRYABLE_STATUSES = frozenset({408, 429})
"""Plus every 5xx: answers worth retrying. Any other non-2xx will not change."""


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP-date; None if
    absent or unreadable (then the caller's own backoff applies)."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
