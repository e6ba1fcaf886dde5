"""Sending an alert leaves no reference cycle for the collector.

The daemon collects rarely (`agent.windows.heap`), so whatever a send leaves in cycles
waits, alert after alert and retry after retry, for a young collection. Two sources,
both inside apprise's call, where neither the exceptions nor the objects reach us:

- apprise's HTTP plugins (json://, Slack, webhooks…) send through requests and urllib3,
  and a request that fails (refused, timed out, reset) leaves its exception in a frame
  its own traceback holds: urllib3's `urlopen` keeps it as `new_e`/`err`,
  `Retry.increment` as `error` (urllib3 issue #3082); ~165 objects (~35 kB) a failed
  send. The plugin catches it, so the one place it passes on its way there is
  `requests.Session.send`: while a notifier sends (`sending`, a context variable
  apprise's worker threads inherit, as it runs each plugin in a copy of the caller's
  context), the exception leaving it loses its tracebacks (`common.tracebacks`) and goes
  on unchanged otherwise (apprise logs only its words). Outside a send (nothing else in
  the agent uses requests) nothing changes.
- apprise renders the Markdown body as HTML for an e-mail (any HTML channel) with a new
  Python-Markdown instance each time, which refers to itself through its processors:
  ~127 objects (~23 kB) a mail, sent or not. `reuse_markdown` has it convert with one
  instance, set up as apprise sets up its own and reset between conversions (as
  Python-Markdown asks of a reused one), under a lock: the same HTML (tested against
  apprise's own), no garbage. Each conversion still left one cycle of Python-Markdown's
  own: its raw-HTML step (`RawHtmlPostprocessor.run`) defines a function that calls
  itself through its closure, 5 objects a conversion (~900 in an 18-minute failing
  soak); the reused instance runs the same step with the recursion through a method.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import string
import threading
from collections.abc import Callable, Iterator
from typing import Any

from common.tracebacks import without_tracebacks

_SENDING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "postflight_alert_sending", default=False
)
_MARK = "_postflight_no_cycles"


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
    """Wrap `requests.Session.send` once per process (idempotent). Called by a notifier
    with channels: requests is apprise's, which a daemon without channels never loads."""
    import requests

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


def reuse_markdown() -> None:
    """Have apprise's Markdown-to-HTML conversion reuse one Python-Markdown instance, set
    up as apprise sets up each of its own (idempotent; nothing done if apprise's
    converter is not the one this was written against)."""
    from apprise.common import NotifyFormat
    from apprise.conversion import format as conversion

    key = (NotifyFormat.MARKDOWN, NotifyFormat.HTML)
    original = conversion.CONVERTERS.get(key)
    if original is not conversion.markdown_to_html:
        return  # already ours, or apprise changed: its own conversion stays
    lock = threading.Lock()
    reused: list[Any] = []

    @functools.wraps(original)
    def markdown_to_html(content: str, extensions: Any = None) -> str:
        if extensions is not None:
            return original(content, extensions)
        with lock:
            if not reused:
                reused.append(_apprise_markdown(conversion._MARKDOWN_EXTENSIONS))
            md = reused[0]
            try:
                return str(md.convert(content))
            finally:
                md.reset()

    setattr(markdown_to_html, _MARK, True)
    conversion.CONVERTERS[key] = markdown_to_html


def _apprise_markdown(extensions: Any) -> Any:
    """A Python-Markdown instance as `apprise.conversion.format.markdown_to_html` makes
    one: its extensions, every ASCII punctuation escapable, escapes written as HTML."""
    from apprise.compat.markdown33 import escape_placeholders_as_html
    from markdown import Markdown  # type: ignore[import-untyped]

    md = Markdown(extensions=list(extensions))
    md.ESCAPED_CHARS = sorted(set(md.ESCAPED_CHARS) | set(string.punctuation))
    escape_placeholders_as_html(md)
    _raw_html_without_closure(md)
    return md


def _raw_html_without_closure(md: Any) -> None:
    """Replace `md`'s raw-HTML postprocessor by one doing the same through a method, where
    Python-Markdown's makes a self-referring closure each run (nothing done if it is not
    the class this was written against)."""
    from markdown import util
    from markdown.postprocessors import RawHtmlPostprocessor  # type: ignore[import-untyped]

    if type(md.postprocessors["raw_html"]) is not RawHtmlPostprocessor:
        return
    priority = next(i.priority for i in md.postprocessors._priority if i.name == "raw_html")

    class RawHtml(RawHtmlPostprocessor):  # type: ignore[misc]
        """`RawHtmlPostprocessor.run` as of Python-Markdown 3.11, its recursion through a
        `functools.partial` of a method: no cycle."""

        def run(self, text: str) -> str:
            if not self.md.htmlStash.html_counter:
                return text
            base_placeholder = util.HTML_PLACEHOLDER % r"([0-9]+)"
            pattern = re.compile(f"<p>{base_placeholder}</p>|{base_placeholder}")
            return pattern.sub(functools.partial(self._substitute, pattern), text)

        def _substitute(self, pattern: re.Pattern[str], m: re.Match[str]) -> str:
            if key := m.group(1):
                wrapped = True
            else:
                key = m.group(2)
                wrapped = False
            if (index := int(key)) >= self.md.htmlStash.html_counter:
                return m.group(0)
            html = self.stash_to_string(self.md.htmlStash.rawHtmlBlocks[index])
            again = functools.partial(self._substitute, pattern)
            if not wrapped or self.isblocklevel(html):
                return pattern.sub(again, html)
            return pattern.sub(again, f"<p>{html}</p>")

    md.postprocessors.register(RawHtml(md), "raw_html", priority)
