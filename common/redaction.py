"""Keeping secrets out of what checks report: messages, body snippets and details.

Pure: no I/O. Everything a check says about a target can end up in logs,
alerts and the API, so anything built from target responses or from the
configuration passes through a `Redactor` first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "***"

SENSITIVE_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[-_]?key|auth(?!or)|cookie|session|credential|private",
    re.IGNORECASE,
)
"""Names of JSON fields and headers whose values are never shown."""

_URL_USERINFO = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]*@")
_SNIPPET_SCAN = 8192
"""How much of a body is decoded and scrubbed before the snippet is cut to size."""


class Redactor:
    """Replaces known secret values, and the password of `user:pass@` URLs, with `***`."""

    __slots__ = ("_pattern", "secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = tuple(
            sorted({s for s in secrets if s}, key=len, reverse=True)
        )
        # Longest first, so a secret that contains another is replaced whole.
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in self.secrets)) if self.secrets else None
        )

    def with_secrets(self, more: Iterable[str]) -> Redactor:
        """A redactor that also hides `more` (values captured during a run, say)."""
        return Redactor((*self.secrets, *more))

    def text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        if "://" in text:
            text = _URL_USERINFO.sub(REDACTED + "@", text)
        return text

    def value(self, value: Any) -> Any:
        """A JSON-like value with secrets redacted and sensitive fields blanked, recursively."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                k: REDACTED if isinstance(k, str) and SENSITIVE_KEY.search(k) else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def snippet(body: bytes, redactor: Redactor, limit: int = 200) -> str:
    """The start of a response body, fit to show in a failure message.

    A JSON body has its sensitive fields blanked before it is cut, so a token
    the target echoes back is hidden even when it is not a configured secret.
    """
    head = body[:_SNIPPET_SCAN]
    text = head.decode("utf-8", errors="replace")
    if len(body) <= _SNIPPET_SCAN and text[:1] in "{[":
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            text = json.dumps(redactor.value(parsed), ensure_ascii=False, separators=(",", ":"))
    text = " ".join(redactor.text(text).split())
    return truncate(text, limit)


def sensitive_values(value: Any) -> list[str]:
    """String values found under sensitive keys of a JSON-like value (a login body, say).

    They are secrets for the run even when the configuration did not mark them.
    """
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and SENSITIVE_KEY.search(k) and isinstance(v, str | int):
                if not isinstance(v, bool):
                    found.append(str(v))
            else:
                found.extend(sensitive_values(v))
    elif isinstance(value, list):
        for v in value:
            found.extend(sensitive_values(v))
    return found
