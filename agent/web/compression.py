"""Gzip for the deploy pages and their files, and why it is safe here.

A window of 720 rounds of 50 rules is a 2.6 MB page (139 KB gzipped), and every open page
fetches its live part, as big, again on each event: on a phone or a VPN during an
incident that was seconds a fetch.

BREACH (compression as a side channel) needs a secret in a compressed body beside text
the attacker chooses, in a response the victim's browser fetches for the attacker with
its credentials, many times. The pages carry no such secret: no CSRF token (sign-in and
sign-out are guarded by `Sec-Fetch-Site`), no API token, never the session (an HttpOnly
cookie); the one token a page may carry is the `?view=` it was opened with, which whoever
made the request already knows. So every page and file is compressed. The event stream
is not (`agent.web.events`): its `state` events carry the deploy object, whose
`links.page` holds a view token signed for that response, beside the deployer's labels.
`tests/web/test_compression.py` fails if a page ever carries a token it was not sent.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_response import ContentCoding


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an `Accept-Encoding` header takes gzip (RFC 9110 section 12.5.3): named, or
    `*`, with a weight above 0 (`gzip;q=0` refuses it). aiohttp's own choice looked for the
    word alone and took deflate first."""
    named: float | None = None
    anything: float | None = None
    for part in accept_encoding.lower().split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding in ("gzip", "x-gzip"):
            named = weight
        elif coding == "*":
            anything = weight
    chosen = named if named is not None else anything
    return chosen is not None and chosen > 0


def compressed(request: web.Request, response: web.Response) -> web.Response:
    """`response`, gzipped when the client takes gzip (large bodies are compressed in a
    thread by aiohttp, off the loop), with `Vary: Accept-Encoding` either way so no cache
    hands one client's encoding to another."""
    vary = response.headers.get("Vary")
    if not vary or "accept-encoding" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"
    if response.body is not None and accepts_gzip(request.headers.get("Accept-Encoding", "")):
        response.enable_compression(ContentCoding.gzip)
    return response


@dataclass(frozen=True, slots=True)
class Deflated:
    """A page's part as UTF-8 and as raw deflate blocks, compressed once: each open tab's
    fetch on each event gzipped the whole 2.6 MB live part again (`gzip_around` splices
    these blocks between the fetch's own head and tail)."""

    raw: bytes
    blocks: bytes
    """Deflate blocks ending byte-aligned (a sync flush), none final: no back-reference
    before the part's start, so they decode the same after any head."""


def _raw_deflater() -> zlib._Compress:
    """A deflater of raw blocks (no zlib header: `gzip_around` writes gzip's own), at
    zlib's default level (aiohttp's)."""
    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)


def deflated(text: str) -> Deflated:
    """`text` deflated once, as `gzip_around` splices it (zlib's default level, aiohttp's)."""
    raw = text.encode()
    deflater = _raw_deflater()
    return Deflated(raw, deflater.compress(raw) + deflater.flush(zlib.Z_SYNC_FLUSH))


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""RFC 1952: deflate, no flags, no mtime, unknown OS."""


def gzip_around(head: str, part: Deflated, tail: str) -> bytes:
    """One gzip member of `head + part + tail` (UTF-8) that deflates only `head` and
    `tail`: `part`'s blocks are spliced in as compressed once. Its CRC reads the part's
    bytes (zlib's crc32: ~1 ms for 2.6 MB, where deflating them took ~50 ms)."""
    before, after = head.encode(), tail.encode()
    first = _raw_deflater()
    last = _raw_deflater()
    crc = zlib.crc32(after, zlib.crc32(part.raw, zlib.crc32(before)))
    size = len(before) + len(part.raw) + len(after)
    return b"".join(
        (
            _GZIP_HEADER,
            first.compress(before),
            first.flush(zlib.Z_SYNC_FLUSH),
            part.blocks,
            last.compress(after),
            last.flush(zlib.Z_FINISH),
            struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF),
        )
    )
