"""What the port answers while `postflight run` waits for its store at start
(`agent.api.starting`); tests/e2e/test_store_at_start.py drives it in the real process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from agent.api.starting import starting_app
from agent.appkeys import UNAVAILABLE_PAGE
from agent.metrics import Metrics
from agent.web.pages import unavailable_page
from tests.api.harness import AUTH, make_settings
from tests.app_client import AppClient

Clients = Callable[[web.Application], Awaitable[AppClient]]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/deploys"),
        ("GET", "/v1/deploys?environment=production"),
        ("GET", "/v1/deploys/dep_01JD0000000000000000000000"),
        ("POST", "/v1/deploys/dep_01JD0000000000000000000000/cancel"),
        ("POST", "/v1/deploys/dep_01JD0000000000000000000000/rollback"),
        ("GET", "/v1/deploys/dep_01JD0000000000000000000000/events"),
        ("POST", "/v1/hooks/github"),
        ("GET", "/deploys"),
    ],
)
async def test_every_request_that_needs_the_store_is_a_503_to_retry(
    aiohttp_client: Clients, method: str, path: str
) -> None:
    """Never a 500, a 404 or a refused connection: the store-unavailable problem a store
    outage answers, with `Retry-After`, which `register --wait` and a pipeline retry. A
    GitHub gate acknowledged now would be lost (GitHub does not send it again)."""
    metrics = Metrics()
    client = await aiohttp_client(starting_app(metrics, make_settings().server))
    response = await client.request(method, path, json={}, headers=AUTH)
    body = await response.json(content_type=None)
    assert (response.status, response.content_type) == (503, "application/problem+json")
    assert body["type"] == "urn:postflight:problem:store-unavailable"
    assert "not reachable yet" in body["detail"]
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Postflight-Store"] == "unavailable"
    assert metrics.api_requests_total.labels("5xx")._value.get() == 1


async def test_healthz_metrics_and_the_openapi_document_answer_and_readyz_says_why_not(
    aiohttp_client: Clients,
) -> None:
    client = await aiohttp_client(starting_app(Metrics(), make_settings().server))
    for method in ("GET", "HEAD"):
        assert (await client.request(method, "/healthz")).status == 200
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/v1/openapi.json")).status == 200
    assert "postflight_build_info" in await (await client.get("/metrics")).text()
    ready = await client.get("/readyz")
    body = await ready.json(content_type=None)
    assert ready.status == 503 and body["type"] == "urn:postflight:problem:not-ready"
    assert body["checks"] == {"config": True, "store": False, "watching": False}


async def test_each_answer_closes_its_connection(aiohttp_client: Clients) -> None:
    """A client keeps its connection alive (aiohttp's pool, a scraper, a proxy): kept, it
    would stay with the waiting answers after the agent took the socket over."""
    client = await aiohttp_client(starting_app(Metrics(), make_settings().server))
    for path in ("/healthz", "/readyz", "/metrics", "/v1/deploys", "/v1/openapi.json"):
        response = await client.get(path, headers=AUTH)
        assert response.headers["Connection"] == "close", path


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/deploys"), ("GET", "/v1/deploys/dep_01JD0000000000000000000000")],
)
async def test_an_api_request_without_an_accepted_token_is_a_401_not_a_503(
    aiohttp_client: Clients, headers: dict[str, str], method: str, path: str
) -> None:
    """As once the store answers (contract §2): a pipeline with a wrong token is told so at
    once, where a 503 had `register --wait` retry it until its timeout."""
    client = await aiohttp_client(starting_app(Metrics(), make_settings().server))
    response = await client.request(method, path, json={}, headers=headers)
    body = await response.json(content_type=None)
    assert (response.status, response.content_type) == (401, "application/problem+json")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Retry-After" not in response.headers
    assert body["status"] == 401


@pytest.mark.parametrize(
    "path",
    ["/v1/hooks/github", "/v1/hooks/vercel", "/v1/deploys/dep_01JD0000000000000000000000/events"],
)
async def test_routes_that_take_other_credentials_wait_for_the_store_without_a_bearer_token(
    aiohttp_client: Clients, path: str
) -> None:
    """A provider's webhook is signed, not bearer-authenticated; a deploy's stream also takes a
    view token: asked for a bearer token they would be refused for good, not retried."""
    client = await aiohttp_client(starting_app(Metrics(), make_settings().server))
    method = "GET" if path.endswith("/events") else "POST"
    response = await client.request(method, path, json={})
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"


async def test_a_deploy_page_gets_a_page_saying_why_where_the_agent_mounts_one(
    aiohttp_client: Clients,
) -> None:
    """`agent.app` gives the waiting answers the agent's page for a deploy page's path
    (`UNAVAILABLE_PAGE`); without one, or off a page's path, the 503 problem as above."""
    settings = make_settings()
    app = starting_app(Metrics(), settings.server)
    app[UNAVAILABLE_PAGE] = unavailable_page(settings.server)
    client = await aiohttp_client(app)
    page = await client.get("/deploys/dep_01JD0000000000000000000000")
    assert (page.status, page.content_type) == (503, "text/html")
    assert page.headers["Retry-After"] == "1"
    assert "store does not answer" in await page.text()
    assert page.headers["Postflight-Store"] == "unavailable"
    api = await client.get("/v1/deploys", headers=AUTH)
    assert (api.status, api.content_type) == (503, "application/problem+json")
