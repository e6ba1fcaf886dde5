"""Reading an HTTP `Retry-After` header (RFC 9110 §10.2.3). Pure: `now` is given."""

from __future__ import annotations

import email.utils
import math
import re
from datetime import UTC

RETRYABLE_STATUSES = frozenset({408, 429})
"""Plus every 5xx (and a status HTTP has not): answers worth retrying. Any other
non-2xx will not change."""

NOT_AN_HTTP_STATUS = " (not an HTTP status: retried as a 5xx)"
"""Said after an error whose status is outside 100-599."""


def is_http_status(status: int) -> bool:
    """A status HTTP has (RFC 9110 §15: 100-599); aiohttp reads any three digits, and an
    invalid one is to be processed as a 5xx: retried like one."""
    return 100 <= status <= 599


def worth_retrying(status: int) -> bool:
    """408, 429, a 5xx or a status HTTP has not: the answer may change if asked again."""
    return status in RETRYABLE_STATUSES or 500 <= status < 600 or not is_http_status(status)


_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
"""The RFC's delay-seconds is digits; a fraction is taken too, as plainly meant."""


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP-date; None if
    absent or unreadable (then the caller's own backoff applies)."""
    if not value:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        # not a number in another form (`-1`, `1e3`, `+3`) either: read by `float`, `-1`
        # was 0 s and had every remaining attempt sent at once
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
