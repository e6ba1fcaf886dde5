"""A wrong method on a route is a 405 problem with `Allow`, once the route's own
authentication is met: the hooks and the OpenAPI document have no bearer token to meet,
so theirs is a 405 whatever the request carries (before, `GET /v1/hooks/github` was a
401 asking for a bearer token the hooks never take); the hooks' right method unsigned
stays a 401. The bearer routes check the token first, as for an unknown `/v1` path: a
401 without one (nothing about `/v1` shown to a caller without a token), a 405 with one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from agent.api import create_api_app
from agent.store.sqlite import SqliteStore
from tests.api.harness import open_store
from tests.api.test_errors import problem
from tests.api.test_hooks_fuzz import fuzz_settings
from tests.app_client import AppClient

TOKEN = "fuzz-token-0123456789"
CARRIED = {
    "nothing": {},
    "a wrong bearer token": {"Authorization": "Bearer not-a-token"},
    "an API token": {"Authorization": f"Bearer {TOKEN}"},
    "a wrong signature": {"X-Hub-Signature-256": "sha256=00", "x-vercel-signature": "00"},
}


@pytest.fixture
async def hooks_client(
    tmp_path: Path, aiohttp_client: Callable[[web.Application], Awaitable[AppClient]]
) -> AppClient:
    """The API with both hooks configured (their secrets set)."""
    store: SqliteStore = await open_store(tmp_path / "api.db")
    app = create_api_app(fuzz_settings(), store)

    async def close_store(app: web.Application) -> None:
        await store.close()

    app.on_cleanup.append(close_store)
    return await aiohttp_client(app)


@pytest.mark.parametrize("carried", list(CARRIED), ids=list(CARRIED))
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/v1/hooks/github", "/v1/hooks/vercel"])
async def test_a_wrong_method_on_a_hook_is_a_405_whatever_it_carries(
    hooks_client: AppClient, path: str, method: str, carried: str
) -> None:
    response = await hooks_client.request(method, path, headers=CARRIED[carried])
    body = await problem(response, 405)
    assert response.headers["Allow"] == "POST"
    assert "WWW-Authenticate" not in response.headers
    assert body["type"] == "urn:postflight:problem:method-not-allowed"


@pytest.mark.parametrize("path", ["/v1/hooks/github", "/v1/hooks/vercel"])
async def test_the_hooks_right_method_unsigned_stays_a_401(
    hooks_client: AppClient, path: str
) -> None:
    for carried in ("nothing", "a wrong signature", "an API token"):
        response = await hooks_client.post(path, data=b"{}", headers=CARRIED[carried])
        await problem(response, 401)


async def test_a_wrong_method_on_the_openapi_document_is_a_405(hooks_client: AppClient) -> None:
    response = await hooks_client.post("/v1/openapi.json")
    await problem(response, 405)
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/deploys", {"GET", "HEAD", "POST"}),
        ("PUT", "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ", {"GET", "HEAD"}),
        ("GET", "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/cancel", {"POST"}),
    ],
)
async def test_a_bearer_route_checks_the_token_before_the_method(
    hooks_client: AppClient, method: str, path: str, allow: set[str]
) -> None:
    for carried in ("nothing", "a wrong bearer token"):
        response = await hooks_client.request(method, path, headers=CARRIED[carried])
        await problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    response = await hooks_client.request(method, path, headers=CARRIED["an API token"])
    await problem(response, 405)
    assert set(response.headers["Allow"].split(",")) == allow


@pytest.mark.parametrize(
    ("path", "carried", "status"),
    [
        ("/healthz", "nothing", 200),
        ("/readyz", "nothing", 200),
        ("/metrics", "nothing", 200),
        ("/v1/openapi.json", "nothing", 200),
        ("/v1/deploys", "an API token", 200),
        ("/v1/deploys", "nothing", 401),
        ("/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ", "an API token", 404),
    ],
)
async def test_head_answers_as_get_without_a_body(
    hooks_client: AppClient, path: str, carried: str, status: int
) -> None:
    """HEAD is GET's answer without its body (RFC 9110 §9.3.2): its status, and the
    problem+json type of a refusal."""
    got = await hooks_client.get(path, headers=CARRIED[carried])
    head = await hooks_client.head(path, headers=CARRIED[carried])
    assert head.status == got.status == status
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert await head.read() == b""
    if status == 401:
        assert head.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/healthz", {"GET", "HEAD"}),
        ("/v1/deploys", {"GET", "HEAD", "POST"}),
        ("/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/cancel", {"POST"}),
    ],
)
async def test_options_is_a_405_naming_the_methods_a_route_takes(
    hooks_client: AppClient, path: str, allow: set[str]
) -> None:
    """The API serves no CORS preflight: OPTIONS is a method its routes do not take, so a
    405 with `Allow` (after the token on the bearer routes), never a 200 with nothing."""
    response = await hooks_client.options(path, headers=CARRIED["an API token"])
    body = await problem(response, 405)
    assert set(response.headers["Allow"].split(",")) == allow
    assert body["type"] == "urn:postflight:problem:method-not-allowed"
