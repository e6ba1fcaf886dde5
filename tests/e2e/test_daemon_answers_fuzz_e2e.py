"""Contract §2's error answers from `postflight run` under hypothesis: random methods,
API paths, query strings, headers (a token or not, a content type, a content encoding,
an Idempotency-Key) and bodies (JSON or bytes). Never a 5xx; every 4xx an
`application/problem+json` whose `status` is the answer's and whose `detail` says
something, a 401 with `WWW-Authenticate: Bearer` on the bearer routes, a 422 listing
its fields (`errors`: `loc` and `msg`). The JSON bodies of the routes that read one are
tests/e2e/test_daemon_fuzz_e2e.py's; the same shapes on the API app alone are
tests/api/test_garbage.py's (there: no 5xx). Derandomised with the `ci` profile."""

from __future__ import annotations

import http.client
import json
import textwrap
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.test_garbage import FUZZ, deploy_like, json_values
from tests.e2e.conftest import TOKEN, environment
from tests.e2e.crash import free_port
from tests.e2e.test_replicas import Daemon, running

pytestmark = pytest.mark.e2e

EXAMPLES = 120
SIGNED_ROUTES = ("/v1/hooks/",)
"""Their 401 is a signature's (contract §7), not a bearer token's."""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("answers")
    target = f"http://127.0.0.1:{free_port()}"  # nothing listens: never probed healthy
    config = (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{tmp / 'postflight.db'}\n"
        "environments:\n"
        + textwrap.indent(
            environment(
                "production", target, window="1h", interval="10s", background_interval="1h"
            ),
            "  ",
        )
    )
    with running(tmp, "answers", config) as started:
        yield started


def ask(
    daemon: Daemon, method: str, path: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


segment = st.sampled_from(
    ["dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ", "dep_", "x", "%00", "%ff", "..", "%2F", "%C3%A9", ""]
) | st.text(max_size=12).map(lambda s: urllib.parse.quote(s, safe=""))
paths = st.one_of(
    st.just("/v1/deploys"),
    st.sampled_from(["/v1/deploys/", "/v1/hooks/github", "/v1/hooks/vercel"]),
    segment.map(lambda s: f"/v1/deploys/{s}"),
    st.tuples(segment, st.sampled_from(["cancel", "rollback", "x", ""])).map(
        lambda p: f"/v1/deploys/{p[0]}/{p[1]}"
    ),
    segment.map(lambda s: f"/v1/{s}"),
)
AIMED = [
    ("POST", "/v1/deploys"),
    ("POST", "/v1/deploys"),
    ("POST", "/v1/deploys"),
    ("GET", "/v1/deploys"),
    ("POST", "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/cancel"),
    ("POST", "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/rollback"),
]
queries = st.lists(
    st.tuples(
        st.sampled_from(["limit", "cursor", "state", "environment", "", "x"]),
        st.text(max_size=30) | st.integers().map(str),
    ),
    max_size=3,
).map(lambda pairs: urllib.parse.urlencode(pairs))
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
json_bodies = st.one_of(deploy_like, json_values).map(lambda v: json.dumps(v).encode())
registrations = st.fixed_dictionaries(
    {"environment": st.just("production"), "version": st.sampled_from(["v1", "v2"])},
    optional={"window": st.sampled_from(["1h", 3600, "10s", "2h"]), "labels": json_values},
).map(lambda v: json.dumps(v).encode())
"""Registered (201), replayed (200) or refused (409) under a used key, or 422."""
bodies = st.one_of(
    registrations, json_bodies, st.none(), st.binary(max_size=200), registrations, json_bodies
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes | None]:
    aimed = draw(st.integers(0, 2)) < 2  # at the routes, with the token: past auth and routing
    if aimed:
        method, path = draw(st.sampled_from(AIMED))
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
        path = draw(paths)
    query = draw(queries)
    headers: dict[str, str] = {}
    authorization = (
        draw(st.sampled_from([f"Bearer {TOKEN}", "Bearer nope", "Basic x", None]))
        if not aimed
        else f"Bearer {TOKEN}"
    )
    if authorization is not None:
        headers["Authorization"] = authorization
    if draw(st.integers(0, 3)) < 3:
        headers["Content-Type"] = draw(
            st.sampled_from(["application/json", "application/json; charset=utf-8"])
        )
    else:
        content_type = draw(st.sampled_from(["text/plain", "", None]) | header_values)
        if content_type is not None:
            headers["Content-Type"] = content_type
    if draw(st.integers(0, 9)) == 9:
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "deflate", "br", "x"]))
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(st.sampled_from(["used", "used", ""]) | header_values)
    return method, f"{path}?{query}" if query else path, headers, draw(bodies)


def test_every_refusal_is_a_problem_that_says_what_to_fix(daemon: Daemon) -> None:
    @settings(FUZZ, max_examples=EXAMPLES)
    @given(request=requests())
    def check(request: tuple[str, str, dict[str, str], bytes | None]) -> None:
        method, path, headers, body = request
        status, answered, raw = ask(daemon, method, path, headers, body)
        assert status < 500, (status, request, raw[:300])
        if status < 400:
            return
        assert answered.get_content_type() == "application/problem+json", (request, raw[:300])
        problem: dict[str, Any] = json.loads(raw)
        assert problem["status"] == status, (request, problem)
        assert isinstance(problem["detail"], str) and len(problem["detail"]) > 10, problem
        if status == 401 and not path.startswith(SIGNED_ROUTES):
            assert answered.get("WWW-Authenticate") == "Bearer", (request, problem)
        if status == 422:
            assert problem["errors"], problem
            for error in problem["errors"]:
                assert isinstance(error["loc"], list) and error["msg"], problem

    check()
