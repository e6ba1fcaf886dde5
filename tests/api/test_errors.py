"""Every 4xx of contract §2, each as problem+json with the status the contract names."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from jsonschema import Draft202012Validator

from agent.api.middleware import StoreRefusals
from agent.api.openapi import openapi_document
from agent.appkeys import FORESIGHT
from agent.metrics import Metrics
from agent.store.base import Store
from agent.store.sqlite import SqliteStore
from tests.api.harness import AUTH, TOKEN, RecordingEvents, make_app
from tests.app_client import AppClient

VALID = {"environment": "production", "version": "v1"}


async def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:postflight:problem:")
    assert body["title"] and body["detail"]
    return body


async def post_raw(
    client: AppClient, data: bytes | str, content_type: str = "application/json", **headers: str
) -> Any:
    return await client.post(
        "/v1/deploys", data=data, headers={**AUTH, "Content-Type": content_type, **headers}
    )


# --- 401 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/deploys"),
        ("GET", "/v1/deploys"),
        ("GET", "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"),
        ("POST", "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/cancel"),
        ("GET", "/v1/no-such-route"),
    ],
)
async def test_missing_token_is_401_with_a_bearer_challenge(
    client: AppClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json=VALID)
    await problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        f"{TOKEN}",
        "Bearer ",
        "Bearer",
    ],
)
async def test_wrong_token_is_401_with_a_bearer_challenge(
    client: AppClient, store: SqliteStore, authorization: str
) -> None:
    response = await client.post(
        "/v1/deploys", json=VALID, headers={"Authorization": authorization}
    )
    await problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await store.list_windows()).items == []


@pytest.mark.parametrize("other", [f"Bearer {TOKEN}", "Bearer wrong-token", f"Basic {TOKEN}"])
async def test_two_authorization_headers_are_401_whichever_comes_first(
    client: AppClient, store: SqliteStore, other: str
) -> None:
    """Authorization is one value, not a list (RFC 9110 §11.6.2). With two, the first was
    read and the second ignored: a valid token then a wrong one was let in, the other way
    round refused, so what a proxy that adds its own did decided access (live audit)."""
    headers = [("Authorization", f"Bearer {TOKEN}"), ("Authorization", other)]
    for both in (headers, headers[::-1]):
        response = await client.post("/v1/deploys", json=VALID, headers=both)
        body = await problem(response, 401)
        assert "one Authorization header" in body["detail"], body
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await store.list_windows()).items == []


async def test_the_scheme_is_case_insensitive(client: AppClient) -> None:
    response = await client.post(
        "/v1/deploys", json=VALID, headers={"Authorization": f"bearer {TOKEN}"}
    )
    assert response.status == 201


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"])
async def test_public_routes_need_no_token(client: AppClient, path: str) -> None:
    assert (await client.get(path)).status == 200


# --- 400 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b"{'environment': 'production'}",
        b'{"environment": "production", "version": "v1",}',
        b"not json at all",
        b"",
        b"   ",
        b'{"version": NaN, "environment": "production"}',
        b'{"version": Infinity}',
        b"\xff\xfe{}",
        b'{"a": 1' + b"0" * 5000 + b"}",
        b"[" * 30000 + b"]" * 30000,
        b'{"environment": "production", "version": "\\ud800"}',
    ],
    ids=[
        "truncated",
        "single-quotes",
        "trailing-comma",
        "text",
        "empty",
        "blank",
        "nan",
        "infinity",
        "not-utf8",
        "huge-int",
        "deep-nesting",
        "lone-surrogate",
    ],
)
async def test_malformed_json_is_400(client: AppClient, data: bytes) -> None:
    await problem(await post_raw(client, data), 400)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (b'{"environment": "production", "version": "v1", "version": "v2"}', "version"),
        (b'{"environment": "production", "version": "v1", "labels": {"a": "1", "a": "2"}}', "a"),
    ],
    ids=["top-level", "in-labels"],
)
async def test_a_key_given_twice_is_400_naming_it(
    client: AppClient, store: SqliteStore, data: bytes, key: str
) -> None:
    """JSON leaves a repeated key's meaning to the reader (RFC 8259 §4): it was taken as
    the last one, silently (seen in a live audit), so a pipeline's `"version"` written
    twice registered a version it may not have meant, and `Idempotency-Key` compared the
    body as its last. Refused, naming it; nothing is stored."""
    body = await problem(await post_raw(client, data), 400)
    assert f"{key!r} is given twice" in body["detail"], body
    assert (await store.list_windows(limit=10)).items == []


# --- 404 ----------------------------------------------------------------------------


async def test_unknown_environment_is_404(client: AppClient, store: SqliteStore) -> None:
    response = await client.post(
        "/v1/deploys", json={"environment": "moon", "version": "v1"}, headers=AUTH
    )
    body = await problem(response, 404)
    assert "moon" in body["detail"] and "production" in body["detail"]
    assert (await store.list_windows()).items == []


@pytest.mark.parametrize(
    "deploy_id",
    [
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
        "dep_nope",
        "nope",
        "dep_01jd8x9q2zk3v7y0m5t4n6r8wq",
        "%00",
        "dep_" + "Z" * 300,
    ],
)
async def test_unknown_deploy_id_is_404(client: AppClient, deploy_id: str) -> None:
    await problem(await client.get(f"/v1/deploys/{deploy_id}", headers=AUTH), 404)
    await problem(await client.post(f"/v1/deploys/{deploy_id}/cancel", headers=AUTH), 404)


async def test_unknown_route_is_a_404_problem(client: AppClient) -> None:
    await problem(await client.get("/nope"), 404)


@pytest.mark.parametrize(
    ("method", "path", "meant"),
    [
        ("GET", "/v1/deploys/", "/v1/deploys"),
        ("POST", "/v1/deploys/", "/v1/deploys"),
        (
            "GET",
            "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/",
            "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
        ),
        (
            "POST",
            "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/cancel//",
            "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/cancel",
        ),
        ("GET", "/healthz/", "/healthz"),
    ],
)
async def test_a_route_with_a_trailing_slash_is_a_404_naming_the_route(
    client: AppClient, method: str, path: str, meant: str
) -> None:
    """`POST /v1/deploys/` (a pipeline's `$URL/v1/deploys/`) answered "no such route;
    see /v1/openapi.json", as a path that is nothing like a route does: the 404 says
    which route was meant, and still opens nothing (live audit)."""
    response = await client.request(method, path, headers=AUTH, json={})
    body = await problem(response, 404)
    assert f"did you mean {meant} " in body["detail"], body
    nothing = await problem(await client.get("/v1/nothing/", headers=AUTH), 404)
    assert "did you mean" not in nothing["detail"], nothing


@pytest.mark.parametrize("path", ["/v1/openapi.json/", "/v1/openapi.json//"])
async def test_the_openapi_document_with_a_trailing_slash_is_a_404_naming_it_without_a_token(
    client: AppClient, path: str
) -> None:
    """The document needs no token, so neither does its misspelling: it was a 401 asking
    for a bearer token (`WWW-Authenticate: Bearer`) the document never takes."""
    response = await client.get(path)
    body = await problem(response, 404)
    assert "did you mean /v1/openapi.json " in body["detail"], body
    assert "WWW-Authenticate" not in response.headers
    # the protected routes' misspellings still ask for the token first
    await problem(await client.get("/v1/deploys/"), 401)


async def test_wrong_method_is_a_405_problem(client: AppClient) -> None:
    response = await client.delete("/v1/deploys", headers=AUTH)
    await problem(response, 405)
    assert "POST" in response.headers["Allow"]


# --- 409 ----------------------------------------------------------------------------
# (idempotency-key reuse and cancelling an ended window: see test_deploys.py)


# --- 413 ----------------------------------------------------------------------------


async def test_body_over_64_kib_is_413(client: AppClient, store: SqliteStore) -> None:
    body = json.dumps({**VALID, "labels": {"big": "x" * (64 * 1024)}})
    await problem(await post_raw(client, body), 413)
    assert (await store.list_windows()).items == []


async def test_chunked_body_over_64_kib_is_413_without_content_length(client: AppClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"environment": "production", "version": "v1", "pad": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post(
        "/v1/deploys", data=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    await problem(response, 413)


async def test_a_body_of_exactly_64_kib_is_read(client: AppClient) -> None:
    head = json.dumps({**VALID, "labels": {"pad": ""}})[:-4]  # ends before `""}}`
    pad = 64 * 1024 - len(head) - 4
    body = head + '"' + "x" * pad + '"}}'
    assert len(body) == 64 * 1024
    response = await post_raw(client, body)
    await problem(response, 422)  # read and validated: the label value is too long


@pytest.mark.parametrize("size", [64 * 1024, 64 * 1024 + 1])
async def test_a_valid_body_of_64_kib_is_registered_and_one_byte_more_is_413(
    client: AppClient, store: SqliteStore, size: int
) -> None:
    """The bound itself, in a body that is valid whatever its size (JSON whitespace pads
    it), sent with and without a Content-Length (chunked: counted while read)."""
    document = json.dumps(VALID)
    body = document[:-1] + " " * (size - len(document)) + "}"
    assert len(body.encode()) == size

    async def chunked() -> AsyncIterator[bytes]:
        for at in range(0, size, 4096):
            yield body.encode()[at : at + 4096]

    for data in (body.encode(), chunked()):
        response = await client.post(
            "/v1/deploys", data=data, headers={**AUTH, "Content-Type": "application/json"}
        )
        if size == 64 * 1024:
            assert response.status == 201, await response.text()
        else:
            await problem(response, 413)
    assert len((await store.list_windows()).items) == (2 if size == 64 * 1024 else 0)


# --- 415 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/octet-stream",
    ],
)
async def test_non_json_content_type_is_415(client: AppClient, content_type: str) -> None:
    await problem(await post_raw(client, json.dumps(VALID), content_type), 415)


async def test_missing_content_type_is_415(client: AppClient) -> None:
    response = await client.post("/v1/deploys", data=json.dumps(VALID).encode(), headers=AUTH)
    await problem(response, 415)


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/vnd.postflight+json", "APPLICATION/JSON"],
)
async def test_json_content_types_are_accepted(client: AppClient, content_type: str) -> None:
    response = await post_raw(client, json.dumps(VALID), content_type)
    assert response.status == 201


# --- 422 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"environment": "production"}, ["version"]),
        ({"version": "v1"}, ["environment"]),
        ({**VALID, "version": ""}, ["version"]),
        ({**VALID, "version": "v" * 129}, ["version"]),
        ({**VALID, "version": "v1\n"}, ["version"]),
        ({**VALID, "version": "   "}, ["version"]),
        ({**VALID, "version": 241}, ["version"]),
        ({**VALID, "version": "v1\u202e"}, ["version"]),  # a bidirectional override
        ({**VALID, "version": "v1\x85"}, ["version"]),  # C1 control
        ({**VALID, "version": "\u3000"}, ["version"]),  # only a (wide) space
        ({**VALID, "environment": ["production"]}, ["environment"]),
        ({**VALID, "previous_version": "x" * 200}, ["previous_version"]),
        ({**VALID, "commit": ""}, ["commit"]),
        ({**VALID, "window": "ten minutes"}, ["window"]),
        ({**VALID, "window": "30s30s"}, ["window"]),  # a unit twice
        ({**VALID, "window": "1h 30"}, ["window"]),  # a part with no unit
        ({**VALID, "window": "1.h"}, ["window"]),
        ({**VALID, "window": "0s"}, ["window"]),
        ({**VALID, "window": "-5m"}, ["window"]),
        ({**VALID, "window": "8d"}, ["window"]),
        ({**VALID, "window": True}, ["window"]),
        ({**VALID, "window": "10s"}, ["window"]),  # shorter than production's 30s interval
        ({**VALID, "deployed_at": "yesterday"}, ["deployed_at"]),
        ({**VALID, "deployed_at": "2026-11-26T14:00:00"}, ["deployed_at"]),  # no offset
        ({**VALID, "deployed_at": 1795788000}, ["deployed_at"]),
        ({**VALID, "deployed_at": "2026-13-40T14:00:00Z"}, ["deployed_at"]),
        ({**VALID, "deployed_at": "9999-12-31T23:59:59Z"}, ["deployed_at"]),
        # an offset that moves the time past datetime's years 1..9999 once in UTC
        ({**VALID, "deployed_at": "0001-01-01T00:00:00+14:00"}, ["deployed_at"]),
        ({**VALID, "deployed_at": "9999-12-31T23:59:59-12:00"}, ["deployed_at"]),
        ({**VALID, "labels": {f"k{i}": "v" for i in range(33)}}, ["labels"]),
        ({**VALID, "labels": {"nested": {"a": "b"}}}, ["labels", "nested"]),
        ({**VALID, "labels": {"n": 1}}, ["labels", "n"]),
        ({**VALID, "labels": ["a=b"]}, ["labels"]),
        ({**VALID, "labels": {"": "empty key"}}, ["labels", ""]),
        ({**VALID, "enviroment": "production"}, ["enviroment"]),
        ([VALID], []),
        ("production", []),
        (None, []),
    ],
)
async def test_invalid_fields_are_422_with_their_loc(
    client: AppClient, store: SqliteStore, body: Any, loc: list[Any]
) -> None:
    response = await post_raw(client, json.dumps(body))
    problem_body = await problem(response, 422)
    assert problem_body["errors"], problem_body
    assert loc in [e["loc"] for e in problem_body["errors"]], problem_body
    assert all(isinstance(e["msg"], str) and e["msg"] for e in problem_body["errors"])
    assert (await store.list_windows()).items == []


async def test_text_with_joiners_between_letters_is_taken_and_joiners_alone_are_not(
    client: AppClient,
) -> None:
    """Zero-width joiners are how text is written: Persian puts a ZWNJ inside words,
    Indic scripts use both, and an emoji sequence (woman + ZWJ + laptop) is joined by a
    ZWJ. They were refused with zero-width spaces and bidirectional overrides as
    "invisible", so such a label or version was a 422 (live audit). A field of nothing
    but joiners and spaces stays refused, and so does every other invisible character."""
    labels = {
        "owner": "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a ZWNJ
        "team": "\U0001f469\u200d\U0001f4bb platform",
        "flag": "\U0001f3f3\ufe0f\u200d\U0001f308",
    }
    body = {**VALID, "version": "v1-\u0915\u094d\u200d\u0937", "labels": labels}
    response = await post_raw(client, json.dumps(body))
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["labels"] == labels and created["version"] == body["version"]
    components = openapi_document()["components"]
    schema = {"$ref": "#/components/schemas/DeployRequest", "components": components}
    assert Draft202012Validator(schema).is_valid(body)
    refused_ones = ("\u200d", " \u200c ", "\u200c\u200d", "a\u200bb", "a\u2060b")
    for refused in refused_ones:
        response = await post_raw(client, json.dumps({**VALID, "version": refused}))
        assert (await problem(response, 422))["errors"][0]["loc"] == ["version"], refused
        assert not Draft202012Validator(schema).is_valid({**VALID, "version": refused})


@pytest.mark.parametrize(
    "version",
    [
        "v1\u061c",  # ARABIC LETTER MARK: a bidirectional mark, as RLM (U+200F) is
        "v1\u180e",  # MONGOLIAN VOWEL SEPARATOR: a format character drawn as nothing
        "v1\ufff9x\ufffb",  # interlinear annotation marks: invisible
        "\u3164",  # HANGUL FILLER alone: a letter drawn as a blank
        "\u3164\u115f \uffa0",  # fillers and a space: nothing to read
        "\u2800",  # BRAILLE PATTERN BLANK alone
    ],
)
async def test_an_invisible_mark_or_a_blank_letter_alone_is_422(
    client: AppClient, version: str
) -> None:
    """Text fields take printable characters, no invisible or bidirectional ones and not
    only blanks (README, HTTP API): the Arabic letter mark, the Mongolian vowel separator
    and the interlinear annotation marks were taken (a version that reads 'v1' and is
    not), and so was a version of nothing but Hangul fillers, drawn blank in an alert's
    title and on the page. Beside other letters a filler stays a letter."""
    response = await post_raw(client, json.dumps({**VALID, "version": version}))
    assert (await problem(response, 422))["errors"][0]["loc"] == ["version"], version
    components = openapi_document()["components"]
    schema = {"$ref": "#/components/schemas/DeployRequest", "components": components}
    assert not Draft202012Validator(schema).is_valid({**VALID, "version": version})
    taken = {**VALID, "version": f"v1 {version}x"} if version[0] in "\u3164\u2800" else None
    if taken is not None:
        response = await post_raw(client, json.dumps(taken))
        assert response.status == 201, await response.text()


@pytest.mark.parametrize(
    "fields",
    [
        {"version": "v"},
        {"version": "v" * 128},
        {"version": "é" * 128},
        {"version": "\U0001f680" * 128},  # outside the BMP: one character each, not two
        {"version": "release 2.4.1 (canary)"},
        {"labels": {f"k{i}": "v" for i in range(32)}},
        {"labels": {}},
    ],
    ids=["1-char", "128-ascii", "128-latin", "128-astral", "spaces-inside", "32-labels", "none"],
)
async def test_the_bounds_themselves_are_registered_as_sent(
    client: AppClient, fields: dict[str, Any]
) -> None:
    """Contract §2: `version` 1–128 printable characters, `labels` at most 32 entries; a
    character is a code point, as JSON and Python count it."""
    response = await post_raw(client, json.dumps({**VALID, **fields}))
    assert response.status == 201, await response.text()
    deploy = await response.json()
    assert {key: deploy[key] for key in fields} == fields


async def test_too_many_labels_is_said_as_labels(client: AppClient) -> None:
    """33 labels read "Dictionary should have at most 32 items after validation, not
    more", pydantic's words, to the API and `register --label` alike (live audit)."""
    labels = {f"k{i}": "v" for i in range(33)}
    body = await problem(await post_raw(client, json.dumps({**VALID, "labels": labels})), 422)
    assert body["errors"] == [{"loc": ["labels"], "msg": "at most 32 labels; got 33"}], body
    assert "Dictionary" not in body["detail"]


async def test_422_lists_every_invalid_field(client: AppClient) -> None:
    response = await post_raw(client, json.dumps({"version": "", "window": "x"}))
    body = await problem(response, 422)
    assert {tuple(e["loc"]) for e in body["errors"]} == {
        ("environment",),
        ("version",),
        ("window",),
    }


async def test_422_does_not_echo_the_input(client: AppClient) -> None:
    secret = "s3cr3t-value-" + "z" * 20
    response = await post_raw(client, json.dumps({**VALID, "labels": {"token": {"x": secret}}}))
    assert secret not in await response.text()


async def test_bad_idempotency_key_is_422(client: AppClient) -> None:
    response = await post_raw(client, json.dumps(VALID), **{"Idempotency-Key": "x" * 300})
    body = await problem(response, 422)
    assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_two_idempotency_keys_are_422_and_open_nothing(
    client: AppClient, store: SqliteStore
) -> None:
    """The first of two was taken and the second ignored: a retry that sent them the
    other way round opened a second window instead of replaying the first (live audit)."""
    keys = [("Idempotency-Key", "run-1"), ("Idempotency-Key", "run-2")]
    response = await client.post("/v1/deploys", json=VALID, headers=[*AUTH.items(), *keys])
    body = await problem(response, 422)
    assert body["errors"] == [
        {"loc": ["header", "Idempotency-Key"], "msg": "give this header at most once"}
    ]
    assert (await store.list_windows()).items == []


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("limit=0", ["limit"]),
        ("limit=201", ["limit"]),
        ("limit=ten", ["limit"]),
        ("limit=1.5", ["limit"]),
        ("state=exploded", ["state"]),
        ("environment=a%20b", ["environment"]),
        ("cursor=not-a-cursor", ["cursor"]),
        ("cursor=%F0%9F%92%A5", ["cursor"]),
        ("cursor=" + "A" * 600, ["cursor"]),
        ("colour=blue", ["colour"]),
        ("limit=1&limit=2", ["limit"]),
        # read as 10, 5, 5, 5 and 5: a page size is written in digits
        ("limit=1_0", ["limit"]),
        ("limit=5.0", ["limit"]),
        ("limit=%2B5", ["limit"]),
        ("limit=%205", ["limit"]),
        ("limit=%EF%BC%95", ["limit"]),
    ],
)
async def test_bad_list_parameters_are_422_with_their_loc(
    client: AppClient, query: str, loc: list[str]
) -> None:
    response = await client.get(f"/v1/deploys?{query}", headers=AUTH)
    body = await problem(response, 422)
    assert loc in [e["loc"] for e in body["errors"]], body


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("limit=0", "limit: must be a whole number from 1 to 200, in digits"),
        ("limit=201", "limit: must be a whole number from 1 to 200, in digits"),
        ("limit=" + "9" * 5000, "limit: must be a whole number from 1 to 200, in digits"),
        (
            "colour=blue",
            "colour: unknown query parameter; expected one of: cursor, environment, limit, state",
        ),
    ],
)
async def test_bad_list_parameters_are_said_in_the_api_s_words(
    client: AppClient, query: str, detail: str
) -> None:
    """A page size out of range was said in pydantic's words ("Input should be greater
    than or equal to 1"), and an unknown query parameter called an unknown "field", a
    body's word."""
    response = await client.get(f"/v1/deploys?{query}", headers=AUTH)
    body = await problem(response, 422)
    assert body["detail"] == detail, body


@pytest.mark.parametrize("limit", ["1", "200", "050"])
async def test_a_page_size_in_range_is_taken(client: AppClient, limit: str) -> None:
    response = await client.get(f"/v1/deploys?limit={limit}", headers=AUTH)
    assert response.status == 200, await response.text()


# --- 503: the store does not answer ------------------------------------------------


async def test_a_store_that_does_not_answer_is_a_503_to_retry_not_a_500(
    client: AppClient, store: SqliteStore
) -> None:
    """The store down (PostgreSQL restarting, a closed pool) is the agent briefly
    unavailable, as `/readyz` says: `503` with `Retry-After`, which `postflight register
    --wait` rides out, rather than a `500` that ends the pipeline's wait with exit 2."""
    created = await client.post("/v1/deploys", json=VALID, headers=AUTH)
    assert created.status == 201
    deploy_id = (await created.json())["id"]
    await store.close()
    for response in (
        await client.get(f"/v1/deploys/{deploy_id}", headers=AUTH),
        await client.get("/v1/deploys", headers=AUTH),
        await client.post("/v1/deploys", json={**VALID, "version": "v2"}, headers=AUTH),
        await client.post(f"/v1/deploys/{deploy_id}/cancel", headers=AUTH),
    ):
        body = await problem(response, 503)
        assert body["type"] == "urn:postflight:problem:store-unavailable"
        assert response.headers["Retry-After"].isdigit()
        assert TOKEN not in json.dumps(body)


@pytest.mark.parametrize("path", ["/deploys", "/deploys/dep_01JD0000000000000000000000"])
async def test_a_deploy_page_while_the_store_does_not_answer_is_a_page_that_reloads(
    client: AppClient, store: SqliteStore, path: str
) -> None:
    """The on-call engineer opening an alert's link during a database restart reads why
    in the tab, and it loads again by itself, where it showed the API's JSON."""
    await store.close()
    response = await client.get(path, headers=AUTH)
    text = await response.text()
    assert (response.status, response.content_type) == (503, "text/html")
    assert response.headers["Retry-After"].isdigit()
    assert "store does not answer" in text
    assert '<meta http-equiv="refresh" content="5">' in text
    api = await client.get("/v1/deploys", headers=AUTH)  # the API keeps its problem+json
    assert (api.status, api.content_type) == (503, "application/problem+json")


async def test_requests_answered_503_while_the_store_is_down_are_one_log_line(
    client: AppClient, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Each 503 logged a WARNING of its own: a 3 s PostgreSQL restart under one polling
    client and a `register --wait` made 25 lines (a live audit), where each background
    loop says the outage once. One line, then at most one a minute counting the rest."""
    await store.close()
    with caplog.at_level(logging.INFO, logger="postflight.api"):
        answers = [(await client.get("/v1/deploys", headers=AUTH)).status for _ in range(6)] + [
            (await client.post("/v1/deploys", json=VALID, headers=AUTH)).status
        ]
    assert answers == [503] * 7
    said = [r.getMessage() for r in caplog.records if "store unavailable" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("store unavailable serving GET /v1/deploys: ")


def test_a_refusal_a_minute_after_the_last_line_is_said_with_the_count_in_between(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    refusals = StoreRefusals(clock=lambda: now[0])
    request = make_mocked_request("GET", "/v1/deploys")
    with caplog.at_level(logging.INFO, logger="postflight.api"):
        for at in (0.0, 1.0, 30.0, 59.0, 61.0, 62.0):
            now[0] = at
            refusals.refused(request, "cannot reach PostgreSQL store at db:5432/pf: refused")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert said[1].endswith("(3 more requests answered 503 since the last such line)")


async def test_an_outage_after_the_store_answered_again_is_said_again(
    client: AppClient, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The once-a-minute limit made a second outage within a minute of the first's line
    silent in the log, as if the store had stayed down in between. A request the store
    answered ends the outage (one INFO line, with the 503s it left unsaid), the next
    refusal is said at once; an answer without the store (/healthz, the OpenAPI document)
    ends nothing."""
    with caplog.at_level(logging.INFO, logger="postflight.api"):
        await store.close()
        first = [(await client.get("/v1/deploys", headers=AUTH)).status for _ in range(2)]
        for path in ("/healthz", "/v1/openapi.json"):
            assert (await client.get(path, headers=AUTH)).status == 200
        first.append((await client.get("/v1/deploys", headers=AUTH)).status)
        await store.open()
        back = (await client.get("/v1/deploys", headers=AUTH)).status
        await store.close()
        second = await client.get("/v1/deploys/dep_01JD0000000000000000000000", headers=AUTH)
    assert (first, back, second.status) == ([503] * 3, 200, 503)
    said = [r.getMessage().partition(":")[0] for r in caplog.records]
    assert said == [
        "store unavailable serving GET /v1/deploys",
        "the store answers API requests again"
        " (2 more requests answered 503 since the last such line)",
        "store unavailable serving GET /v1/deploys/dep_01JD0000000000000000000000",
    ], said


def test_an_outage_ends_once_and_the_next_refusal_says_it_begins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = StoreRefusals(clock=lambda: 0.0)  # all within the minute
    request = make_mocked_request("GET", "/v1/deploys")
    with caplog.at_level(logging.INFO, logger="postflight.api"):
        refusals.refused(request, "refused")
        refusals.refused(request, "refused")  # counted, not said
        refusals.answered()
        refusals.answered()  # once over, it is over: said once
        refusals.refused(request, "refused")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 3 and said[1].startswith("the store answers API requests again (1 more")
    assert said[2].endswith("; answering 503 until it does (said at most once a minute)")


async def test_a_registration_the_store_cannot_take_is_a_503_without_a_traceback(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]],
    store: SqliteStore,
    events: RecordingEvents,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the daemon's registration warnings on (they read the environment's recent
    windows first), each registration during a PostgreSQL restart logged an ERROR with a
    20-line traceback, 'registration warnings not worked out; the deploy is registered
    without them', and was then refused with the 503 all the same: a live audit's log had
    one per `register` retry, besides the one WARNING line each 503 has."""

    async def reads_recent_windows(
        store: Store, env: Any, environment: str, *_: Any, **__: Any
    ) -> list[str]:
        """What the daemon's `registration_warnings` reads first."""
        await store.list_windows(environment=environment, limit=10)
        return []

    app = make_app(store, events, metrics=metrics)
    app[FORESIGHT] = reads_recent_windows
    client = await aiohttp_client(app)
    await store.close()
    with caplog.at_level(logging.INFO):
        response = await client.post("/v1/deploys", json=VALID, headers=AUTH)
    body = await problem(response, 503)
    assert body["type"] == "urn:postflight:problem:store-unavailable"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


async def test_a_sqlite_file_another_process_holds_is_a_503_to_retry_not_a_500(
    client: AppClient, store: SqliteStore
) -> None:
    """Another process holding the file's write lock past `busy_timeout` (an operator's
    `sqlite3 postflight.db` left in a transaction, a backup, a second agent started on the
    same file) made SQLite raise `database is locked`, which reached the route as a bare
    sqlite3 error: a `500`, found in a live audit. It is the store not answering: a `503`
    the pipeline's `register --wait` rides out, and a read still answers (WAL)."""
    assert store._db is not None
    await store._db.execute("PRAGMA busy_timeout=100")  # the agent's 5 s, shortened
    holder = sqlite3.connect(store.path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        response = await client.post("/v1/deploys", json=VALID, headers=AUTH)
        body = await problem(response, 503)
        assert body["type"] == "urn:postflight:problem:store-unavailable"
        assert response.headers["Retry-After"].isdigit()
        assert (await client.get("/v1/deploys", headers=AUTH)).status == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    created = await client.post("/v1/deploys", json=VALID, headers=AUTH)
    assert created.status == 201, await created.text()


@pytest.mark.parametrize("query", ["=", "=x", "limit=2&=x"])
async def test_a_list_parameter_with_no_name_is_said_to_have_none(
    client: AppClient, query: str
) -> None:
    """`?=x` (a script's `?${NAME}=${VALUE}` with NAME unset) was said to be the body's
    ('body: unknown field; …'), and `?=` 'body: must not be empty': a GET has no body."""
    body = await problem(await client.get(f"/v1/deploys?{query}", headers=AUTH), 422)
    assert body["errors"] == [
        {"loc": [""], "msg": "a query parameter with no name; give name=value"}
    ]
    assert body["detail"].startswith("query: a query parameter with no name"), body


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("environment=a%20b", "environment: not an environment name: a name takes only letters"),
        ("cursor=not-a-cursor", "cursor: not a cursor of this list: pass the previous page's"),
    ],
)
async def test_a_list_parameter_of_the_wrong_shape_says_what_it_takes(
    client: AppClient, query: str, says: str
) -> None:
    """They answered with the regular expression ("String should match pattern
    '^[0-9]{1,12}(\\.[0-9]{1,20})?_dep_…'"), where `POST /v1/deploys` said what an
    environment name is; the OpenAPI document still has each pattern."""
    body = await problem(await client.get(f"/v1/deploys?{query}", headers=AUTH), 422)
    assert body["detail"].startswith(says) and "pattern" not in body["detail"], body
    document = await (await client.get("/v1/openapi.json")).json()
    parameters = document["paths"]["/v1/deploys"]["get"]["parameters"]
    name = query.partition("=")[0]
    (schema,) = [p["schema"] for p in parameters if p["name"] == name]
    assert "pattern" in json.dumps(schema), schema


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        (
            "labels",
            {"build": 1234},
            "labels.build: must be a JSON string, not a number: write it in quotes",
        ),
        ("labels", {"ok": True}, "labels.ok: must be a JSON string, not true or false: write it"),
        ("labels", {"k": None}, "labels.k: must be a JSON string, not null"),
        ("labels", ["pipeline"], "labels: must be a JSON object, not a list"),
        ("version", ["v1"], "version: must be a JSON string, not a list"),
        ("version", "", "version: must not be empty"),
        ("commit", 9, "commit: must be a JSON string, not a number: write it in quotes"),
    ],
)
async def test_a_field_of_the_wrong_json_type_says_what_to_write(
    client: AppClient, field: str, value: Any, says: str
) -> None:
    """They were pydantic's words ("Input should be a valid string", "Input should be a
    valid dictionary", "String should have at least 1 character"): what was wrong, not
    what to write. The value itself is not said back."""
    response = await client.post("/v1/deploys", json={**VALID, field: value}, headers=AUTH)
    body = await problem(response, 422)
    assert body["detail"].startswith(says), body
    assert "1234" not in body["detail"]


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        ({"": "v"}, "labels.: must not be empty (the key)"),
        ({"k" * 70: "v"}, "String should have at most 64 characters (the key)"),
        ({"k": "v" * 300}, "labels.k: String should have at most 256 characters"),
    ],
)
async def test_a_label_key_that_is_refused_is_said_to_be_the_key(
    client: AppClient, labels: dict[str, str], says: str
) -> None:
    """A key too long read `labels.kkk…: String should have at most 64 characters`, as if
    the value were too long (pydantic's `[key]` in the loc was dropped, and its meaning)."""
    response = await client.post("/v1/deploys", json={**VALID, "labels": labels}, headers=AUTH)
    body = await problem(response, 422)
    assert says in body["detail"] and body["detail"].endswith(")") == says.endswith(")"), body


@pytest.mark.parametrize(
    ("send", "field"),
    [
        (lambda c, name: c.get(f"/v1/deploys?environment={name}", headers=AUTH), "environment"),
        (
            lambda c, name: c.post(
                "/v1/deploys", json={"environment": name, "version": "v1"}, headers=AUTH
            ),
            "environment",
        ),
    ],
)
async def test_a_name_refused_for_a_letter_not_ascii_says_which_letters(
    client: AppClient, send: Callable[[AppClient, str], Awaitable[Any]], field: str
) -> None:
    """`producción` was told 'not an environment name (letters, digits and _ . : -)',
    which ó is: the configuration says which letters, and names the character refused."""
    body = await problem(await send(client, "producci\u00f3n"), 422)
    assert body["detail"] == (
        f"{field}: not an environment name: a name takes only the letters A-Z and a-z,"
        " digits and _ . : - (not '\u00f3')"
    ), body
    spaced = await problem(await send(client, "a b"), 422)
    assert "(no spaces)" in spaced["detail"], spaced
