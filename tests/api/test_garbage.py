"""Garbled or random requests never get a 5xx, and leave the agent ready.

Hypothesis drives a real server (aiohttp on a SqliteStore) through its test
client and through a raw socket. The error middleware's 500 branch exists for
bugs; `postflight_api_requests_total{result="5xx"}` staying unset shows that no
garbage ever reached it. Hypothesis runs synchronously, so each test owns an
event loop and runs the server on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.api.harness import AUTH, LoopApi, RecordingEvents, make_app

FIELDS = ["environment", "version", "previous_version", "commit", "window", "deployed_at", "labels"]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class LiveApi(LoopApi):
    """A running API on its own loop, for synchronous hypothesis tests."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(
            tmp_path / "garbage.db",
            lambda store, metrics: make_app(store, RecordingEvents(), metrics=metrics),
        )

    def raw(self, data: bytes, wait: float = 0.5) -> bytes:
        """Write bytes to the server's socket; the status line of its answer, if any
        (a request that is incomplete but not yet wrong gets no answer within `wait`)."""

        async def go() -> bytes:
            reader, writer = await asyncio.open_connection(self.server.host, self.server.port)
            try:
                writer.write(data)
                await writer.drain()
                try:
                    return await asyncio.wait_for(reader.readline(), wait)
                except (TimeoutError, ConnectionError):
                    return b""
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        return self.run(go())


@contextmanager
def live_api(tmp_path: Path) -> Iterator[LiveApi]:
    api = LiveApi(tmp_path)
    try:
        yield api
        # Afterwards: no 5xx was ever served, the agent is ready, and it still works.
        assert api.five_hundreds() == 0
        assert api.request("GET", "/readyz") == 200
        assert (
            api.request(
                "POST",
                "/v1/deploys",
                json={"environment": "production", "version": "ok"},
                headers=AUTH,
            )
            == 201
        )
    finally:
        api.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=20), children, max_size=8)
    ),
    max_leaves=40,
)
deploy_like = st.dictionaries(
    st.sampled_from([*FIELDS, "extra", ""]), json_values, max_size=9
) | st.fixed_dictionaries(
    {
        "environment": st.sampled_from(["production", "staging", "moon", ""]),
        "version": st.text(max_size=200),
    },
    optional={
        "window": st.one_of(st.text(max_size=12), st.integers(), st.floats(allow_nan=False)),
        "deployed_at": st.one_of(st.text(max_size=40), st.datetimes().map(str)),
        "labels": st.dictionaries(st.text(max_size=70), json_values, max_size=40),
        "previous_version": json_values,
        "commit": json_values,
    },
)


def client_accepts(path: str) -> bool:
    """aiohttp's test client refuses an absolute URL (`//0` reads as host `0`): such a
    path could never reach the server through it, so it is not generated. The raw-socket
    test sends what no client would."""
    try:
        return not URL(path).absolute
    except ValueError:
        return False


methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
paths = st.one_of(
    st.sampled_from(
        [
            "/v1/deploys",
            "/v1/deploys/",
            "/v1/openapi.json",
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1",
            "/",
            "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
        ]
    ),
    st.builds(lambda s: "/v1/deploys/" + s, st.text(max_size=60)),
    st.builds(lambda s: "/v1/deploys/" + s + "/cancel", st.text(max_size=60)),
    st.builds(lambda s: "/" + s, st.text(max_size=80)),
).filter(client_accepts)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
"""What a client can put in a header; raw control bytes go through the raw-socket test."""


def test_random_json_bodies_never_get_a_5xx(tmp_path: Path) -> None:
    with live_api(tmp_path) as api:

        @FUZZ
        @given(
            body=st.one_of(deploy_like, json_values),
            key=st.none() | header_text,
        )
        def check(body: Any, key: str | None) -> None:
            headers = {**AUTH, "Content-Type": "application/json"}
            if key is not None:
                headers["Idempotency-Key"] = key
            data = json.dumps(body, ensure_ascii=bool(len(str(body)) % 2))
            status = api.request("POST", "/v1/deploys", data=data, headers=headers)
            assert status < 500, (status, body)

        check()


def test_random_bytes_and_content_types_never_get_a_5xx(tmp_path: Path) -> None:
    with live_api(tmp_path) as api:

        @FUZZ
        @given(
            body=st.binary(max_size=2000),
            content_type=st.sampled_from(
                [
                    "application/json",
                    "text/plain",
                    "application/problem+json",
                    "",
                    "a/b;;;",
                    "application/json; charset=latin-1",
                    "multipart/form-data",
                ]
            ),
            encoding=st.sampled_from([None, "gzip", "deflate", "br", "identity", "bogus"]),
        )
        def check(body: bytes, content_type: str, encoding: str | None) -> None:
            headers = {**AUTH, "Content-Type": content_type}
            if encoding:
                headers["Content-Encoding"] = encoding
            status = api.request("POST", "/v1/deploys", data=body, headers=headers)
            assert status < 500, status

        check()


def test_random_paths_methods_and_headers_never_get_a_5xx(tmp_path: Path) -> None:
    with live_api(tmp_path) as api:

        @FUZZ
        @given(
            method=methods,
            path=paths,
            authorization=st.none() | st.just(AUTH["Authorization"]) | header_text,
            idempotency_key=st.none() | header_text,
            query=st.dictionaries(
                st.sampled_from(["limit", "cursor", "state", "environment", "x"]),
                st.text(max_size=40),
                max_size=4,
            ),
        )
        def check(
            method: str,
            path: str,
            authorization: str | None,
            idempotency_key: str | None,
            query: dict[str, str],
        ) -> None:
            headers = {}
            if authorization is not None:
                headers["Authorization"] = authorization
            if idempotency_key is not None:
                headers["Idempotency-Key"] = idempotency_key
            status = api.request(method, path, headers=headers, params=query)
            assert status < 500, (status, method, path)

        check()


def test_random_list_queries_never_get_a_5xx(tmp_path: Path) -> None:
    with live_api(tmp_path) as api:
        for version in ("a", "b", "c"):
            api.request(
                "POST",
                "/v1/deploys",
                headers=AUTH,
                json={"environment": "production", "version": version},
            )

        @FUZZ
        @given(
            query=st.lists(
                st.tuples(
                    st.sampled_from(["limit", "cursor", "state", "environment"]),
                    st.text(max_size=80) | st.integers().map(str),
                ),
                max_size=5,
            )
        )
        def check(query: list[tuple[str, str]]) -> None:
            status = api.request("GET", "/v1/deploys", headers=AUTH, params=query)
            assert status < 500, (status, query)

        check()


def test_raw_garbage_on_the_socket_never_gets_a_5xx(tmp_path: Path) -> None:
    with live_api(tmp_path) as api:
        auth = AUTH["Authorization"].encode()
        known_paths = [
            b"/v1/deploys",
            b"/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/cancel",
            b"/healthz",
            b"/readyz",
            b"/metrics",
            b"/v1/openapi.json",
        ]
        header_names = [
            b"Content-Length",
            b"Transfer-Encoding",
            b"Content-Type",
            b"Content-Encoding",
            b"Idempotency-Key",
            b"Authorization",
            b"Expect",
            b"Connection",
            b"Host",
        ]
        printable_bytes = st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60
        ).map(str.encode)
        header_values = [
            b"chunked",
            b"application/json",
            b"gzip",
            b"100-continue",
            b"-1",
            b"99999999999999999999",
            b"close",
            b"Bearer \x00",
        ]

        @FUZZ
        @given(
            request_line=st.one_of(
                st.binary(max_size=200),
                st.just(b"POST /v1/deploys HTTP/1.1"),
                st.builds(
                    lambda m, p, v: m + b" " + p + b" " + v,
                    st.sampled_from([b"GET", b"POST", b"BREW", b"", b"G\x00T"]),
                    st.sampled_from(known_paths) | st.binary(max_size=120),
                    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9", b"", b"HTTP/1.1x"]),
                ),
            ),
            headers=st.lists(
                st.one_of(
                    st.builds(
                        lambda n, v: n + b": " + v,
                        st.sampled_from(header_names),
                        st.sampled_from(header_values),
                    ),
                    st.builds(
                        lambda n, v: n + b": " + v, st.sampled_from(header_names), printable_bytes
                    ),
                    st.builds(lambda n, v: n + b": " + v, printable_bytes, printable_bytes),
                    st.binary(max_size=100),
                ),
                max_size=4,
            ),
            body=st.binary(max_size=500),
            with_auth=st.booleans(),
        )
        def check(request_line: bytes, headers: list[bytes], body: bytes, with_auth: bool) -> None:
            lines = [request_line, b"Host: localhost"]
            if with_auth:
                lines.append(b"Authorization: " + auth)
            lines.extend(headers)
            data = b"\r\n".join(lines) + b"\r\n\r\n" + body
            status_line = api.raw(data)
            if status_line.startswith(b"HTTP/"):
                parts = status_line.split()
                assert len(parts) >= 2 and not parts[1].startswith(b"5"), status_line

        check()


def test_a_well_formed_request_with_a_lying_content_length_is_not_a_5xx(tmp_path: Path) -> None:
    with live_api(tmp_path) as api:
        body = b'{"environment": "production", "version": "v1"}'
        for length in (0, 5, len(body) - 1, len(body) + 10, 10**9):
            data = (
                b"POST /v1/deploys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + b"Authorization: "
                + AUTH["Authorization"].encode()
                + b"\r\n"
                + f"Content-Length: {length}\r\n\r\n".encode()
                + body
            )
            status_line = api.raw(data)
            if status_line:
                assert status_line.split()[1][:1] in (b"2", b"4"), status_line
