"""Apprise channel URLs: whether apprise can use one, and the pieces of it that are secret.

Apprise's own log lines quote a URL piece by piece ("An invalid Slack (third) Token
(xoxb-…) was specified"), so redacting whole configured values is not enough: every
piece of a channel's URL is redacted from them. Here, not in `alerting`, so the settings
can check channel URLs at load time without importing the notifier (which imports them).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from urllib.parse import unquote, urlsplit

from agent.apprise_plugins import load_plugins_for

_DELIMITERS = re.compile(r"[/:@?&=#,;+\s]+")
MIN_PIECE = 4
"""Shorter pieces (a port's digits, `api`) are left alone: they are not secrets, and
redacting them would garble every message."""


def url_pieces(url: str) -> frozenset[str]:
    """Every piece of `url` after its scheme (user, password, host, path segments, query
    keys and values), raw and percent-decoded, of at least `MIN_PIECE` characters."""
    rest = url.partition("://")[2] or url
    pieces = set()
    for piece in _DELIMITERS.split(rest):
        for form in (piece, unquote(piece)):
            if len(form) >= MIN_PIECE:
                pieces.add(form)
    return frozenset(pieces)


def piece_redactor(urls: Iterable[str]) -> Callable[[str], str]:
    """Text with every piece of `urls` replaced by `***`, longest first (a token that
    contains a shorter piece is hidden whole). Only where a piece stands whole, not inside
    a longer run of letters and digits: a path segment `fail` once made each "failure"
    of apprise's messages "***ure", while apprise quotes a token whole."""
    pieces = sorted({p for url in urls for p in url_pieces(url)}, key=len, reverse=True)
    if not pieces:
        return lambda text: text
    alternatives = "|".join(re.escape(p) for p in pieces)
    pattern = re.compile(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")
    return lambda text: pattern.sub("***", text)


def channel_label(masked: str) -> str:
    """What logs and the store say of a channel: apprise's privacy-masked URL cut to its
    scheme, user (as apprise masked it) and host, then `/…`. apprise masks the tokens it
    knows as such, but not what the user put in the path or the query (a `json://` path
    token, `?:token=…`, `?+Authorization=Bearer …`): those are never shown. A host that is
    not a host name (no dot: a token in the host's place) is hidden as well."""
    try:
        parts = urlsplit(masked)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return (masked.partition("://")[0] or "?") + "://***"
    if "." not in host and ":" not in host and host != "localhost":
        host = "***" if host else ""
    user = "***@" if "@" in parts.netloc else ""
    label = f"{parts.scheme}://{user}{host}" + (f":{port}" if port else "")
    return label + ("/…" if parts.path.strip("/") or parts.query or parts.fragment else "")


class _RedactPieces(logging.Filter):
    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        return True


@contextlib.contextmanager
def apprise_logs_redacted(urls: Iterable[str]) -> Iterator[None]:
    """While apprise parses `urls`, its log lines carry none of their pieces."""
    guard = _RedactPieces(piece_redactor(urls))
    logger = logging.getLogger("apprise")
    logger.addFilter(guard)
    try:
        yield
    finally:
        logger.removeFilter(guard)


def routed(channel_tags: Sequence[Collection[str]], wanted: Collection[str]) -> list[int]:
    """The channels (by index) an environment's `alerts.tags` pick: those sharing a tag
    with them; every channel when it names none. The notifier sends by it and the
    settings warn by it, so "matches no channel" means the same to both."""
    tags = frozenset(wanted)
    return [i for i, have in enumerate(channel_tags) if not tags or tags & frozenset(have)]


def unusable_channel(url: str) -> str | None:
    """Why apprise cannot use `url` (None: it can), never quoting the URL: only its scheme."""
    usable, warnings = _parsed(url)
    if usable:
        return None
    scheme = url.partition("://")[0] if "://" in url else "?"
    if warnings:  # apprise's own reason ("Invalid ~From~ email specified: ***")
        return f"apprise cannot use this {scheme}:// URL: {warnings[0]}"[:300]
    return (
        f"apprise cannot use this {scheme}:// URL (unknown scheme or missing parts; see the"
        " apprise documentation)"
    )


def channel_warnings(url: str) -> tuple[str, ...]:
    """What apprise warned of while it took `url` (a part it dropped: `to=oncall-team`,
    not an address, leaves the mail to go to its sender), the URL's pieces hidden; none
    for a URL it cannot use (that is an error, `unusable_channel`)."""
    usable, warnings = _parsed(url)
    return warnings if usable else ()


def _parsed(url: str) -> tuple[bool, tuple[str, ...]]:
    """Whether apprise can use `url`, and its warnings while it parsed it (redacted)."""
    import apprise  # loading its plugins takes a moment: only when there are channels

    load_plugins_for([url])
    said = _Said()
    logger = logging.getLogger("apprise")
    with apprise_logs_redacted([url]):
        logger.addHandler(said)  # after the redacting filter: it sees the redacted text
        try:
            usable = apprise.Apprise.instantiate(url) is not None
        finally:
            logger.removeHandler(said)
    return usable, tuple(said.warnings)


class _Said(logging.Handler):
    """apprise's warnings while it parses one URL (its errors only repeat the URL)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            self.warnings.append(" ".join(record.getMessage().split()))
