"""Structured logs: JSON (`--log-format json`) or text, carrying the deploy id and the
environment where a record has them, and never a secret."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from common.redaction import Redactor

_CONTEXT_FIELDS = ("deploy_id", "environment", "check", "rule", "provider")
_CONFIG_FIELDS = ("config", "field", "line", "variable")
"""Where a configuration error is (`extra=` of its record): the file, the field's path,
the file's line, the overriding variable; in JSON for a log shipper to key on."""

log_context: ContextVar[dict[str, str] | None] = ContextVar("postflight_log_context", default=None)
"""Fields for every record logged in this task and the tasks it starts (a window's watch
sets its deploy id and environment), so a module that knows nothing of windows (a
provider's client) still logs them."""


class _Context(logging.Filter):
    """Adds `log_context`'s fields a record does not carry itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (log_context.get() or {}).items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


SAID_ELSEWHERE = "postflight_said_elsewhere"
"""Set on a record another line of ours already says (apprise's warning of a channel send,
quoted by `postflight.alerting`'s failure line): kept for the library's own capture, which
reads it, and left out of the log, where it was a second line for each failure."""


class _Redacting(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, SAID_ELSEWHERE, False):
            return False
        message = record.getMessage()
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS + _CONFIG_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in _CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        if context:
            first, _, rest = line.partition("\n")
            line = f"{first} [{context}]" + (f"\n{rest}" if rest else "")
        return line


def setup_logging(fmt: str = "text", level: str = "info", redact: Redactor | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_Context())
    handler.addFilter(_Redacting(redact or Redactor()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # a library's warning (`warnings.warn`) as a record of the logs' format, not text
    # printed among JSON lines (logger `py.warnings`)
    logging.captureWarnings(True)
    # urllib3 carries apprise's requests: at DEBUG it logs each request line, a json://
    # channel's path and query (its tokens) included
    for noisy in ("aiohttp.access", "apprise", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # asyncpg's pool logs each failed try to reconnect its floor with a traceback (3 in a
    # PostgreSQL restart of 3 s, more the longer it is down): the store's loops already
    # say the outage once, and once more when it answers (`agent.store.outages`)
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
