"""What the port answers while `postflight run` waits for its store at start
(`agent.api.starting`); tests/e2e/test_store_at_start.py drives it in the real process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from agent.api.starting import starting_app
from agent.metrics import Metrics
from tests.api.conftest import Client
from tests.api.harness import AUTH

Clients = Callable[[web.Application], Awaitable[Client]]


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
    client = await aiohttp_client(starting_app(metrics))
    response = await client.request(method, path, json={}, headers=AUTH)
    body = await response.json(content_type=None)
    assert (response.status, response.content_type) == (503, "application/problem+json")
    assert body["type"] == "urn:postflight:problem:store-unavailable"
    assert "not reachable yet" in body["detail"]
    assert response.headers["Retry-After"] == "1"
    assert metrics.api_requests_total.labels("5xx")._value.get() == 1


async def test_healthz_metrics_and_the_openapi_document_answer_and_readyz_says_why_not(
    aiohttp_client: Clients,
) -> None:
    client = await aiohttp_client(starting_app(Metrics()))
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
    client = await aiohttp_client(starting_app(Metrics()))
    for path in ("/healthz", "/readyz", "/metrics", "/v1/deploys", "/v1/openapi.json"):
        response = await client.get(path, headers=AUTH)
        assert response.headers["Connection"] == "close", path
