"""Keeping secrets out of logs, alerts, API answers, error messages and check reports.

Pure: no I/O. One `Redactor` hides every configured secret, `user:pass@` in URLs,
bearer/basic tokens and `token=…`-style assignments; everything a check says about
a target passes through it too, so anything built from target responses or from
the configuration is scrubbed before it can reach a log, an alert or the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

REDACTED = MASK = "***"

SENSITIVE_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[-_]?key|auth(?!or)|cookie|session|credential|private",
    re.IGNORECASE,
)
"""Names of JSON fields and headers whose values are never shown."""

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@", re.I)
_ASSIGNED = re.compile(
    r"(?i)\b(authorization|api[-_]?key|x-api-key|token|secret|password)(\s*[=:]\s*)"
    r"((?:bearer|basic|token)\s+)?([^\s,;\"'&]+?)(?=[:.)\]}>]*(?:[\s,;\"'&]|$))"
)
"""`key=value`: the value stops before trailing punctuation (`token=…: status 500`,
`(api_key=…)`), which stays, as does a `Bearer` before it: only the secret is hidden."""
_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{4,})")
_SNIPPET_SCAN = 8192
"""How much of a body is decoded and scrubbed before the snippet is cut to size."""


class Redactor:
    """Replaces every known secret value, URL credentials and bearer tokens with `***`.

    Call it (`redact(text)`) or use `text`/`value`; both apply the same rules.
    """

    __slots__ = ("_pattern", "secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = tuple(
            sorted({s for s in secrets if s}, key=len, reverse=True)
        )
        # Longest first, so a secret that contains another is replaced whole.
        self._pattern = (
            re.compile("|".join(_standing(s) for s in self.secrets)) if self.secrets else None
        )

    def with_secrets(self, more: Iterable[str]) -> Redactor:
        """A redactor that also hides `more` (values captured during a run, say)."""
        return Redactor((*self.secrets, *more))

    def text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        if "://" in text:
            text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
        text = _ASSIGNED.sub(_assigned, text)
        return _SCHEME.sub(_scheme, text)

    __call__ = text

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


LONG_SECRET = 16
"""A configured secret this long is masked wherever it appears: no word contains it by
chance, and a copy glued to other text (`prefixSECRET`) must not show."""
_WORD = re.compile(r"\w")
_ESCAPED_BEFORE = r"(?<=%[0-9A-Fa-f]{2})|(?<=\\[a-z])|(?<=\\u[0-9A-Fa-f]{4})"
"""What may stand before a secret glued to it, yet is no part of its word: a
percent-escape (`?next=%2F%3Ftoken%3Dguess`) or a JSON/C escape (`\\nguess`)."""


def _standing(secret: str) -> str:
    """The pattern of `secret` where it stands whole: not with a word character (a letter,
    digit or `_`) on a side where its own end is one, but after an escape (`%3D`, `\\n`).
    A shorter secret masked inside words gave itself away and spoiled the text: `guess`
    made `guessable` read `***able`, `token` made `server.api_tokens[0]` read
    `server.api_***s[0]`. What it shows now is only a secret glued to other word
    characters (`guessable`), where no reader can tell it from the word; alone (`Bearer
    guess`, `?key=guess&`, `"guess"`, `/guess/`) it is masked, though the words around it
    may still betray a short or dictionary secret: hence the warnings for API tokens under
    16 characters, and `LONG_SECRET`'s masking everywhere."""
    escaped = re.escape(secret)
    if len(secret) >= LONG_SECRET:
        return escaped
    before = f"(?:(?<!\\w)|{_ESCAPED_BEFORE})" if _WORD.match(secret[0]) else ""
    after = "(?!\\w)" if _WORD.match(secret[-1]) else ""
    return f"{before}{escaped}{after}"


def _scheme(match: re.Match[str]) -> str:
    """`Bearer X`/`Basic X` masks X, but a lower-case word under 16 letters: prose (a
    receiver's `Bearer token required`, `basic authentication failed`) read `Bearer ***
    required`. No credential is one: a token has digits, symbols or capitals, and base64
    (`Basic dXNlcjpwYXNz`) capitals; a configured secret is masked as such anyway."""
    scheme, space, value = match.group(1, 2, 3)
    if value.isalpha() and value.islower() and len(value) < LONG_SECRET:
        return match.group(0)
    return f"{scheme}{space}{REDACTED}"


def _assigned(match: re.Match[str]) -> str:
    """`token=…` is always masked; `token: word` only when the word looks like a
    credential (digits or symbols, or long), so prose such as `capture token: expected`
    stays readable."""
    key, separator, scheme, value = match.group(1, 2, 3, 4)
    if ":" in separator and not scheme and value.isalpha() and len(value) < 16:
        return match.group(0)
    return f"{key}{separator}{scheme or ''}{REDACTED}"


def without_credentials(url: str) -> str:
    """`url` without its `user:password@`: a link for people to open (the deploy page, an
    alert) to a service the agent reaches with credentials in its URL (a Prometheus behind
    basic auth). Masking them (`***@`) would leave a link that cannot be opened."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


_ADDRESS_DELIMITERS = re.compile(r"[/?&=#;,+\s]+")


def _token_like(piece: str) -> bool:
    """A piece of an address that may be its secret: long, or with a digit (a hook's id
    or token: `T0123ABCD`, `a8Kq2Zr7Xw4L`), not a word of its route (`hooks`, `rollback`)."""
    return len(piece) >= 16 or (len(piece) >= 6 and any(c.isdigit() for c in piece))


@lru_cache(maxsize=64)
def address_redactor(url: str) -> Callable[[str], str]:
    """Text with the token-like pieces of `url`'s path, query and fragment replaced by
    `***` where they stand whole: a webhook whose URL carries its token in the path (as
    Zapier's, Make's and chat services' hooks do), quoted back by the receiver's refusal
    ("Cannot POST /hooks/catch/1234/a8Kq…/"), shows its route, not its token. The host
    and port stay: the agent's own words name them (`cannot connect to 10.0.3.7:8443`)."""
    parts = urlsplit(url)
    rest = "/".join((parts.path, parts.query, parts.fragment))
    pieces = {
        form
        for piece in _ADDRESS_DELIMITERS.split(rest)
        for form in (piece, unquote(piece))
        if _token_like(form)
    }
    if not pieces:
        return lambda text: text
    alternatives = "|".join(re.escape(p) for p in sorted(pieces, key=len, reverse=True))
    pattern = re.compile(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")
    return lambda text: pattern.sub(REDACTED, text)


_QUERY_SECRET = re.compile(r"^(?:key|code|sig|signature|x-amz-signature|x-goog-signature)$", re.I)
"""Query names that carry a URL's secret without saying so: an Azure Function's `code`,
a SAS's `sig`, a pre-signed URL's signature, Google's `key`."""
SHORTEST_SECRET = 4
"""A shorter configured secret is not hidden: it would mask every `a` or `id` in a text."""


def url_secrets(url: str, *, whole: bool = False) -> set[str]:
    """The secret-bearing parts of a configured URL, as written and percent-decoded, for a
    `Redactor` to hide where they stand alone: a receiver's refusal that quotes back the
    password it was sent, or a check target's that quotes its `?token=`. `_URL_CREDENTIALS`
    hides `user:pass@` only in a whole URL. Found: the userinfo's password, its user when
    it looks like a token and no password follows (`https://ghp_…@host`), and query values
    under a sensitive name (`token`, `api_key`, `sig`, …). `whole`: the URL is a secret as
    a whole (an apprise URL, whose tokens are its host and path, as in
    `discord://{id}/{token}`, `slack://T0123/B0456/XyZ…`), so every token-like piece of
    them is one too, but a host with a dot (a DNS name, an address)."""
    try:
        parts = urlsplit(url.strip())
        password, username = parts.password, parts.username
    except ValueError:  # not a URL to take apart
        return set()
    found = [password or ""]
    if username and password is None and _token_like(unquote(username)):
        found.append(username)
    for pair in re.split(r"[&;]", parts.query):
        name, _, value = pair.partition("=")
        name = unquote_plus(name)
        if value and (SENSITIVE_KEY.search(name) or _QUERY_SECRET.match(name)):
            found.extend((value, unquote_plus(value)))
    if whole:
        host = parts.netloc.rpartition("@")[2]  # `tgram://{bot}:{token}/`: both pieces
        rest = "/".join((*host.split(":"), parts.path, parts.query, parts.fragment))
        found.extend(
            piece
            for piece in _ADDRESS_DELIMITERS.split(rest)
            if "." not in piece and _token_like(unquote(piece))
        )
    forms = {form for piece in found for form in (piece, unquote(piece))}
    return {form for form in forms if len(form) >= SHORTEST_SECRET}


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
    text = visible(" ".join(redactor.text(text).split()))
    return truncate(text, limit)


def visible(text: str) -> str:
    """`text` with every character that is not printable written as its escape (`\\x1b`,
    `\\u202e`): a target's body quoted in a failure reaches terminals (`check`, `status`),
    alerts and logs, where an escape sequence could clear the screen or retitle the
    terminal, and a bidirectional override reorder what follows."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code <= 0xFF
        else f"\\u{code:04x}"
        if code <= 0xFFFF
        else f"\\U{code:08x}"
    )


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
