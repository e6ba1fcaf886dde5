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
