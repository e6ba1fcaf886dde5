"""Keeping secrets out of logs, alerts, API answers and error messages. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@", re.I)
_ASSIGNED = re.compile(
    r"(?i)\b(authorization|api[-_]?key|x-api-key|token|secret|password)(\s*[=:]\s*)"
    r"(?:(?:bearer|basic|token)\s+)?([^\s,;\"'&]+)"
)
_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{4,})")

MASK = "***"


class Redactor:
    """Replaces every known secret value, URL credentials and bearer tokens with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        ordered = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
        text = _ASSIGNED.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        return _SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
