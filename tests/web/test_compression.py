"""The pages and their files go gzipped to a client that takes gzip (a 720-round page of
50 rules: 2.6 MB, 139 KB gzipped, fetched again by every open page on each event); the
event stream does not, and no page carries a secret that BREACH could read through its
compressed size (`agent.web.compression`)."""

from __future__ import annotations

import gzip
import re
import time
import zlib
from typing import Any

import aiohttp
import pytest

from agent.appkeys import SETTINGS
from agent.records import DeployWindow, RoundRecord
from agent.store.sqlite import SqliteStore
from agent.web import assets
from agent.web.compression import accepts_gzip
from agent.web.links import sign, signing_key
from agent.web.pages import SECURITY_HEADERS
from tests.api.harness import AUTH, OTHER_TOKEN, TOKEN, RecordingEvents, make_app
from tests.app_client import AppClient

ID = "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"
VERDICT = {
    "outcome": "pending",
    "reason": "",
    "rules": [{"name": "errors", "metric": "error_rate", "outcome": "pass", "observed": 0.0}],
}
GZIP = {"Accept-Encoding": "gzip, deflate, br"}
PLAIN = {"Accept-Encoding": "identity"}


async def watched(store: SqliteStore, rounds: int = 40) -> None:
    now = time.time()
    labels = {"pipeline": "run-1234 <b>"}
    window = DeployWindow(
        ID, "production", "v2", "v1", "abc123", labels, "watching", now - 60, now + 540, now - 60
    )
    await store.create_window(window)
    for number in range(1, rounds + 1):
        summary = {"observations": {"errors": {"value": number / 1000}}, "decision": "continue"}
        record = RoundRecord(ID, number, now - 60 + number, summary)
        assert await store.record_round(record, VERDICT)


async def raw(client: AppClient, path: str, **headers: str) -> tuple[Any, bytes]:
    """The answer's headers and its bytes as they came over the wire (not decoded)."""
    response = await client.get(path, headers=headers)
    return response, await response.read()


async def test_a_page_and_its_live_part_go_gzipped_to_a_client_that_takes_gzip(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """Before, 2.6 MB went uncompressed for each open page on each event."""
    await watched(store)
    now = time.time()  # one clock: the two answers are the same page
    # no cookie jar: the session a bearer token's page sets would sign the second answer
    # in (its Sign out button), another page than the first's
    client: AppClient = await aiohttp_client(
        make_app(store, RecordingEvents(), clock=lambda: now),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    for path in (f"/deploys/{ID}", f"/deploys/{ID}?fragment=1", "/deploys"):
        plain, text = await raw(client, path, **AUTH, **PLAIN)
        assert plain.status == 200 and "Content-Encoding" not in plain.headers
        zipped, wire = await raw(client, path, **AUTH, **GZIP)
        assert zipped.status == 200 and zipped.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in zipped.headers["Vary"]
        assert int(zipped.headers["Content-Length"]) == len(wire) < len(text) / 2
        assert gzip.decompress(wire) == text  # the same page
        for name, value in SECURITY_HEADERS.items():
            assert zipped.headers[name] == value
    refused, _ = await raw(client, f"/deploys/{ID}", **AUTH, **{"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers


class _Counted:
    """A zlib compressor that counts the bytes it is fed."""

    def __init__(self, real: Any, fed: list[int]) -> None:
        self._real, self._fed = real, fed

    def compress(self, data: bytes) -> bytes:
        self._fed.append(len(data))
        return bytes(self._real.compress(data))

    def flush(self, *mode: int) -> bytes:
        return bytes(self._real.flush(*mode))


async def test_open_tabs_share_one_compressed_rounds_part_per_round(
    aiohttp_client: Any, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each open tab's fetch of the live part on each event gzipped all of it again (~50 ms
    of CPU for the 2.6 MB of 720 rounds of 50 rules): its rounds part is deflated once per
    stored round and spliced into each answer, whose bytes are the page's as before."""
    await watched(store, rounds=300)
    now = time.time()
    client: AppClient = await aiohttp_client(
        make_app(store, RecordingEvents(), clock=lambda: now), auto_decompress=False
    )
    real = zlib.compressobj
    fed: list[int] = []
    monkeypatch.setattr(zlib, "compressobj", lambda *a, **k: _Counted(real(*a, **k), fed))
    path = f"/deploys/{ID}?fragment=1"
    for round_stored in (False, True):
        if round_stored:  # a new round: a new part, deflated once again
            summary = {"observations": {"errors": {"value": 0.5}}, "decision": "continue"}
            assert await store.record_round(RoundRecord(ID, 301, now - 1, summary), VERDICT)
        _, text = await raw(client, path, **AUTH, **PLAIN)
        fed.clear()
        for _ in range(3):  # three tabs
            zipped, wire = await raw(client, path, **AUTH, **GZIP)
            assert zipped.headers["Content-Encoding"] == "gzip"
            assert "Accept-Encoding" in zipped.headers["Vary"]
            assert int(zipped.headers["Content-Length"]) == len(wire) < len(text) / 2
            assert gzip.decompress(wire) == text  # the same page, to the byte
        assert sum(fed) < len(text) / 2, (sum(fed), len(text))  # was 3 x the page


async def test_the_pages_files_go_gzipped_and_revalidate_as_before(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    client: AppClient = await aiohttp_client(
        make_app(store, RecordingEvents()), auto_decompress=False
    )
    script = assets.packaged().url_name("page.js")
    response, wire = await raw(client, f"/deploys/static/{script}", **GZIP)
    assert response.status == 200 and response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Vary"] == "Accept-Encoding"
    assert "immutable" in response.headers["Cache-Control"]
    body = assets.packaged().find("page.js")
    assert body is not None and gzip.decompress(wire) == body[0].body
    tag = response.headers["ETag"]
    again, _ = await raw(client, "/deploys/static/page.js", **GZIP, **{"If-None-Match": tag})
    assert again.status == 304 and again.headers["Vary"] == "Accept-Encoding"
    plain, wire = await raw(client, "/deploys/static/page.js", **PLAIN)
    assert "Content-Encoding" not in plain.headers and wire == body[0].body


async def test_the_event_stream_is_not_compressed(aiohttp_client: Any, store: SqliteStore) -> None:
    """Its `state` events carry the deploy object, whose `links.page` holds a view token
    signed for that answer, beside the deployer's labels: what BREACH reads through a
    compressed size. (Compressed, each event would also wait in the compressor.)"""
    await watched(store, rounds=1)
    client: AppClient = await aiohttp_client(
        make_app(store, RecordingEvents()), auto_decompress=False
    )
    async with client.get(f"/v1/deploys/{ID}/events", headers={**AUTH, **GZIP}) as response:
        assert response.status == 200 and "Content-Encoding" not in response.headers
        first = await response.content.readuntil(b"\n\n")
        while first.startswith(b":"):  # a comment; `retry:` comes with the first event
            first = await response.content.readuntil(b"\n\n")
        assert b"event: state" in first and b"?view=v1." in first


@pytest.mark.parametrize("way", ["bearer", "session", "view"])
async def test_a_compressed_page_carries_no_token_it_was_not_sent(
    aiohttp_client: Any, store: SqliteStore, way: str
) -> None:
    """What makes compressing the pages safe (BREACH): no secret in them. If a page ever
    carries a token signed for it (a sign-out form's CSRF token, a link to share), an API
    token or the session, this fails: decide again (`agent.web.compression`)."""
    await watched(store)
    app = make_app(store, RecordingEvents())
    client: AppClient = await aiohttp_client(app)
    key = signing_key(app[SETTINGS].server)
    sent = sign(key, ID, time.time() + 3600)
    headers: dict[str, str] = dict(GZIP)
    view: dict[str, str] = {}
    if way == "bearer":
        headers |= AUTH
    elif way == "session":
        login = await client.post(
            "/login", data={"token": TOKEN, "next": "/deploys"}, allow_redirects=False
        )
        assert login.status == 303
    else:
        view = {"view": sent}
    for part in ({}, {"fragment": "1"}):
        response = await client.get(f"/deploys/{ID}", params=view | part, headers=headers)
        page = await response.text()
        assert response.status == 200 and response.headers["Content-Encoding"] == "gzip"
        tokens = set(re.findall(r"v1\.\d+\.[A-Za-z0-9_-]+", page))
        assert tokens <= ({sent} if way == "view" else set()), tokens
        assert TOKEN not in page and OTHER_TOKEN not in page
        for cookie in client.session.cookie_jar:
            assert cookie.value not in page


@pytest.mark.parametrize(
    ("header", "takes"),
    [
        ("gzip, deflate, br, zstd", True),
        ("deflate, gzip;q=1.0, *;q=0.5", True),
        ("GZIP", True),
        ("*", True),
        ("identity", False),
        ("", False),
        ("gzip;q=0", False),
        ("gzip;q=0.0, deflate", False),
        ("br, *;q=0", False),
        ("*;q=0.1, gzip;q=0", False),
        ("x-gzip", True),
    ],
)
def test_accept_encoding_is_read_with_its_weights(header: str, takes: bool) -> None:
    """aiohttp's own choice looked for the word (`gzip;q=0` was gzip) and took deflate
    first."""
    assert accepts_gzip(header) is takes
