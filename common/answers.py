"""Reading an HTTP answer's body once its status line and headers came: shared by every
outbound client (a provider's query, a GitHub/Vercel call, the rollback's webhook), so
that each classes an answer whose body cannot be read by its status, alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # imported where an answer is read: the providers' settings load this
    # module's importers for their config models alone (validate-config, schema)
    import aiohttp


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
