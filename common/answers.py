"""Reading an HTTP answer's body once its status line and headers came: shared by every
outbound client (a provider's query, a GitHub/Vercel call, the rollback's webhook), so
that each classes an answer whose body cannot be read by its status, alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from common.redaction import truncate

if TYPE_CHECKING:  # imported where an answer is read: the providers' settings load this
    # module's importers for their config models alone (validate-config, schema)
    import aiohttp


ERROR_SAID_CHARS = 200
"""The most of an error answer a message quotes (an alert, a rollback's `last_error`)."""


class Read(NamedTuple):
    """An answer's body as read (`read_answer`)."""

    body: bytes
    unread: str = ""
    """Why its body could not be read (`body` is empty then), or "" when it was."""
    cut_short: bool = False
    """The body stopped before its end (the connection dropped, the server closed early:
    fewer bytes than its Content-Length, a chunked body without its last chunk), where
    one that came whole but does not decode (Content-Encoding lies) is not: a read asked
    again may come whole, and a body that lies lies again."""


async def read_answer(response: aiohttp.ClientResponse, limit: int) -> Read:
    """Up to `limit` bytes of an answer's body (all of it when shorter), or none and why
    it could not be read. Its status line and headers came: they are the answer (a 2xx
    taken, a 404 refused at once, a 503's Retry-After honoured), where a body that does not
    decode (a proxy's page marked gzip and not gzip) raised as if no answer came, and the
    call was sent again: a rollback or a workflow dispatch twice, a provider's query to
    its last attempt. Whether it was cut short (`Read.cut_short`) is the caller's to weigh:
    a read (a provider's query) asks again, a call that was taken (a 2xx) is not resent."""
    import aiohttp  # only where an answer is read: see the imports

    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit:  # one read gives what has come so far, not `limit` bytes
            chunk = await response.content.read(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except aiohttp.ClientPayloadError as exc:
        said = getattr(exc.__cause__, "message", None) or str(exc)  # not aiohttp's 400
        why = f"(its body could not be read: {' '.join(str(said).split())})"
        return Read(b"", why, cut_short=_cut_short(exc))
    return Read(b"".join(chunks))


def _cut_short(exc: BaseException) -> bool:
    """Whether a body's read failed because it stopped early: anything but a body that
    came and does not decode (aiohttp's ContentEncodingError, DecompressSizeError) is,
    as it was taken before `read_answer` told the two apart (a connection lost)."""
    from aiohttp.http_exceptions import ContentEncodingError, DecompressSizeError

    return not isinstance(exc.__cause__, ContentEncodingError | DecompressSizeError)


def error_said(text: str, redact: Callable[[str], str] = str, limit: int = ERROR_SAID_CHARS) -> str:
    """What an API's error answer says, to quote in a message: Vercel's `error.message`
    and `error.code` (`{"error": {"code", "message"}}`), GitHub's `message` (with its
    first `errors` entry's field and code, a 422's "Validation Failed" says no more), never
    the JSON around them; any other body's text, its whitespace collapsed. Scrubbed by
    `redact` before it is cut to `limit` characters: a secret cut first would show its
    start, unmatched. Quoting the body raw showed `{"error": {"code": …` cut at 200 bytes,
    and a GitHub message past them not at all."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    message, code = _message_and_code(data)
    if message is None:
        return truncate(redact(" ".join(text.split())), limit)
    tail = f" ({truncate(redact(code), limit // 4)})" if code else ""
    return truncate(redact(" ".join(message.split())), max(limit - len(tail), 1)) + tail


def _message_and_code(data: Any) -> tuple[str | None, str]:
    """(message, code) of Vercel's or GitHub's error shape; (None, "") for another body."""
    if not isinstance(data, dict):
        return None, ""
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):  # Vercel's
        code = error.get("code")
        return error["message"], code if isinstance(code, str) else ""
    if isinstance(data.get("message"), str):  # GitHub's
        errors = data.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else None
        if isinstance(first, dict):
            parts = (first.get("field"), first.get("code") or first.get("message"))
            return data["message"], ": ".join(p for p in parts if isinstance(p, str) and p)
        return data["message"], ""
    return None, ""
