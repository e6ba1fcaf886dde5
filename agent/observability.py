"""The agent's own error reporting and APM, each only when asked for.

sentry-sdk starts only when `SENTRY_DSN` is set (secrets scrubbed in `before_send`);
the New Relic agent only when `NEW_RELIC_LICENSE_KEY` is set — without a key it is
not a no-op (it installs instrumentation and retries registration forever).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn
from urllib.parse import urlsplit

from agent import __version__
from common.redaction import Redactor

log = logging.getLogger("postflight")


def _scrub(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, redact) for v in value]
    return value


def sentry_dsn_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why `SENTRY_DSN` cannot be used, if it cannot: said by `run` before it starts (exit
    2), where sentry-sdk's `BadDsn` stopped the started agent with a traceback, exit 1.
    Never the DSN's key (its user part)."""
    dsn = (os.environ if environ is None else environ).get("SENTRY_DSN")
    if not dsn:
        return None
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        Dsn(dsn)
    except BadDsn as exc:
        why = str(exc)
        key = urlsplit(dsn).username if "://" in dsn else None
        if key:
            why = why.replace(key, "…")
        return (
            f"SENTRY_DSN is not a Sentry DSN ({why}): copy it from the project's settings,"
            " Client Keys (DSN)"
        )
    return None


def init_sentry(redact: Redactor, environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    dsn = env.get("SENTRY_DSN")
    if not dsn:
        return False
    import sentry_sdk

    def before_send(event: Any, hint: Any) -> Any:
        return _scrub(event, redact)

    sentry_sdk.init(
        dsn=dsn,
        release=f"postflight@{__version__}",
        environment=env.get("SENTRY_ENVIRONMENT", "production"),
        before_send=before_send,
        send_default_pii=False,
    )
    log.info("reporting own errors to Sentry")
    return True


class NewRelicUnusable(Exception):
    """The New Relic agent refused its configuration (a NEW_RELIC_CONFIG_FILE it cannot
    open or read): `run` says so, exit 2, where its traceback ended the process, exit 1."""


def init_newrelic(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    key = env.get("NEW_RELIC_LICENSE_KEY")
    if not key:
        return False
    import newrelic.agent
    from newrelic.api.exceptions import ConfigurationError

    try:
        newrelic.agent.initialize()
    except ConfigurationError as exc:
        raise NewRelicUnusable(str(exc).replace(key, "…")) from None
    log.info("New Relic agent enabled")
    return True


NEWRELIC_SHUTDOWN_S = 2.0
"""How long the New Relic agent's own shutdown (its final harvest) may take at a stop."""


def end_process_running_newrelic(code: int) -> NoReturn:
    """End a process that runs the New Relic agent without the interpreter's exit. Its
    session thread (a daemon thread that connects, and again after each failure, for as
    long as the collector has not answered) can be inside OpenSSL when the interpreter
    exits, whose exit handlers free OpenSSL's locks under it: a segfault, exit -11 where a
    clean stop exits 0 (every stop while a collector held a connection unanswered). So New
    Relic's own bounded shutdown, the logs and Sentry's queue flushed, then `os._exit`:
    the store is closed by now, and nothing else waits for the interpreter's exit."""
    import newrelic.agent

    newrelic.agent.shutdown_agent(timeout=NEWRELIC_SHUTDOWN_S)
    sentry = sys.modules.get("sentry_sdk")
    if sentry is not None:  # its queue, which its own exit handler would have sent
        sentry.flush(timeout=2.0)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
