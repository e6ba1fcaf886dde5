"""A failed alert over HTTP leaves no reference cycle for the collector.

apprise's HTTP plugins (json://, Slack, webhooks…) send through requests and urllib3, and
a request that fails (refused, timed out, reset) leaves its exception in a frame its own
traceback holds: urllib3's `urlopen` keeps it as `new_e`/`err`, `Retry.increment` as
`error` (urllib3 issue #3082). The plugin catches it and logs a line, and ~165 objects
(frames, tracebacks, connections; ~25 kB) wait for the cyclic collector, which the daemon
runs rarely (`agent.windows.heap`): a channel down piled them up at every alert and retry.
apprise catches the exception inside the plugin, so it never reaches us; the one place it
passes through on its way there is `requests.Session.send`. While a notifier's send runs
(`sending`, a context variable apprise's worker threads inherit: it runs each plugin in a
copy of the caller's context), the exception leaving `Session.send` is stripped of its
tracebacks (`common.tracebacks`) and raised on unchanged otherwise: apprise keeps only its
words. Outside a send (nothing else in the agent uses requests) nothing changes.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any

import requests

from common.tracebacks import without_tracebacks

_SENDING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "postflight_alert_sending", default=False
)
_MARK = "_postflight_drops_tracebacks"


@contextlib.contextmanager
def sending() -> Iterator[None]:
    """Within it (and in the worker threads apprise starts from it), a failed requests
    call leaves no cycle."""
    token = _SENDING.set(True)
    try:
        yield
    finally:
        _SENDING.reset(token)


def drop_request_tracebacks() -> None:
    """Wrap `requests.Session.send` once per process (idempotent)."""
    original: Callable[..., Any] = requests.Session.send
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        try:
            return original(self, request, **kwargs)
        except Exception as exc:
            if _SENDING.get():
                without_tracebacks(exc)
            raise

    setattr(send, _MARK, True)
    requests.Session.send = send  # type: ignore[method-assign]
