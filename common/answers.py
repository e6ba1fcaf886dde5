"""Reading an HTTP answer's body once its status line and headers came: shared by every
outbound client (a provider's query, a GitHub/Vercel call, the rollback's webhook), so
that each classes an answer whose body cannot be read by its status, alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where an answer is read: the providers' settings load this
    # module's importers for their config models alone (validate-config, schema)
    import aiohttp


async def read_answer(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, str]:
    """Up to `limit` bytes of an answer's body (all of it when shorter), or none and why
    it could not be read. Its status line and headers came: they are the answer (a 2xx
    taken, a 404 refused at once, a 503's Retry-After honoured), where a body that does not
    decode (a proxy's page marked gzip and not gzip) raised as if no answer came, and the
    call was sent again: a rollback or a workflow dispatch twice, a provider's query to
    its last attempt."""
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
        return b"", f"(its body could not be read: {' '.join(str(said).split())})"
    return b"".join(chunks), ""
