"""The one UTC timestamp format Postflight writes: RFC 3339 with a `Z`. Pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(value: datetime | float, *, millis: bool = True) -> str:
    """`2026-11-26T14:00:00Z`; with `millis`, milliseconds when there are some
    (`14:00:00.250Z`, as the API writes), else whole seconds, truncated (as the
    rollback body and provider queries want)."""
    seconds = value.timestamp() if isinstance(value, datetime) else value
    if not millis:
        seconds = math.floor(seconds)
    whole, ms = divmod(round(seconds * 1000), 1000)
    text = (_EPOCH + timedelta(seconds=whole)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"
