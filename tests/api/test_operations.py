"""/healthz, /readyz, /metrics and /v1/openapi.json."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from agent.api.models import DeployRequest
from agent.api.openapi import openapi_document
from agent.api.problems import PROBLEM_CONTENT_TYPE
from agent.api.runner import HEAD_TIMEOUT_S, MAX_FIELD_BYTES, MAX_HEADERS, MAX_LINE_BYTES
from agent.store.sqlite import SqliteStore
from agent.web.routes import PAGE_PATHS
from tests.api.harness import RecordingEvents, make_app
from tests.app_client import AppClient


async def test_healthz_is_200_ok(client: AppClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_200_when_config_is_loaded_and_the_store_answers(client: AppClient) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "checks": {"config": True, "store": True}}


async def test_readyz_is_503_when_the_store_is_closed(
    client: AppClient, store: SqliteStore
) -> None:
    await store.close()
    response = await client.get("/readyz")
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["checks"] == {"config": True, "store": False}
    assert (await client.get("/healthz")).status == 200  # alive, just not ready


async def test_readyz_is_503_when_the_store_hangs(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]],
    store: SqliteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from agent.api import routes

    async def hang() -> bool:
        await asyncio.sleep(3600)
        return True

    monkeypatch.setattr(routes, "READY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(store, "ping", hang)
    client = await aiohttp_client(make_app(store, RecordingEvents()))
    assert (await client.get("/readyz")).status == 503


async def test_readyz_is_503_without_configuration(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]], store: SqliteStore
) -> None:
    from agent.api import add_routes
    from agent.appkeys import STORE

    app = web.Application()
    app[STORE] = store
    add_routes(app)
    client = await aiohttp_client(app)
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["config"] is False


async def test_metrics_exposes_prometheus_text_without_auth(client: AppClient) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type.startswith("text/plain")
    text = await response.text()
    assert "postflight_build_info{" in text
    assert "postflight_api_requests_total" in text


async def test_add_routes_twice_is_harmless(store: SqliteStore) -> None:
    from agent.api import add_routes

    app = make_app(store, RecordingEvents())
    add_routes(app)
    assert len(app.middlewares) == 2


# --- OpenAPI -------------------------------------------------------------------------


async def test_openapi_is_served_without_auth(client: AppClient) -> None:
    response = await client.get("/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")


def test_openapi_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip(
        "openapi_spec_validator",
        reason="openapi-spec-validator is not installed (pip install openapi-spec-validator)",
    )
    validator.validate(openapi_document())


def test_openapi_documents_every_route_and_error(app: web.Application) -> None:
    document = openapi_document()
    served = {
        # a hook URL with a trailing slash is the same hook, documented once
        (route.method.lower(), route.resource.canonical.removesuffix("/"))
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.resource.canonical not in PAGE_PATHS  # HTML pages, not API v1
    }
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert served == documented
    post = document["paths"]["/v1/deploys"]["post"]["responses"]
    for status in ("200", "201", "400", "401", "404", "409", "413", "415", "422"):
        assert status in post, status
    cancel = document["paths"]["/v1/deploys/{id}/cancel"]["post"]["responses"]
    assert {"200", "401", "404", "409"} <= set(cancel)
    for path, ops in document["paths"].items():
        for op in ops.values():
            needs_auth = (
                path.startswith("/v1/")
                and path != "/v1/openapi.json"
                and not path.startswith("/v1/hooks/")  # signed by the provider (§7)
            )
            assert bool(op["security"]) == needs_auth, path
            if needs_auth:
                assert "401" in op["responses"]


async def test_the_document_declares_the_401_challenge_and_the_503_retry_after(
    client: AppClient,
) -> None:
    """Contract §2: a 401 carries `WWW-Authenticate: Bearer`, and a store that does not
    answer is a 503 with `Retry-After`. The document said so in words only, so a client
    generated from it, or schemathesis' header check, could not see them: each bearer
    operation declares both headers, and the served 401 matches the declaration."""
    document = openapi_document()
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            if not op["security"]:
                continue
            challenge = op["responses"]["401"].get("headers", {}).get("WWW-Authenticate")
            assert challenge is not None and challenge["required"], (method, path)
            retry = op["responses"]["503"].get("headers", {}).get("Retry-After")
            assert retry is not None and retry["required"], (method, path)
            served = await client.request(method.upper(), path.replace("{id}", "dep_x"))
            assert served.status == 401, (method, path)
            assert re.fullmatch(challenge["schema"]["pattern"], served.headers["WWW-Authenticate"])


def test_every_operation_documents_what_the_http_server_answers_before_any_route() -> None:
    """The parser's and the router's answers (tests/api/test_edges.py) can come back
    from any path: each operation lists them, problem+json, as shared responses."""
    document = openapi_document()
    shared = document["components"]["responses"]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for status in ("400", "408", "414", "417", "431"):
                response = op["responses"][status]
                if "$ref" in response:
                    response = shared[response["$ref"].rpartition("/")[2]]
                assert PROBLEM_CONTENT_TYPE in response["content"], (method, path, status)
    descriptions = {
        status: shared[op["$ref"].rpartition("/")[2]]["description"]
        for status, op in document["paths"]["/healthz"]["get"]["responses"].items()
        if "$ref" in op
    }
    assert f"within {HEAD_TIMEOUT_S:g} s" in descriptions["408"]
    assert f"over {MAX_LINE_BYTES} bytes" in descriptions["414"]
    assert f"over {MAX_FIELD_BYTES // 1024} KiB" in descriptions["431"]
    assert f"more than {MAX_HEADERS} headers" in descriptions["431"]


def test_openapi_request_schema_is_the_model_the_handler_validates_with() -> None:
    document = openapi_document()
    schemas: dict[str, Any] = document["components"]["schemas"]
    generated = schemas["DeployRequest"]
    own = DeployRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    assert generated["properties"] == own["properties"]
    assert generated["required"] == ["environment", "version"]
    assert generated["additionalProperties"] is False
    assert generated["properties"]["labels"]["maxProperties"] == 32
    assert generated["properties"]["version"]["maxLength"] == 128
    deploy = schemas["Deploy"]
    assert {
        "id",
        "environment",
        "version",
        "previous_version",
        "commit",
        "labels",
        "state",
        "deployed_at",
        "ends_at",
        "rounds",
        "verdict",
        "rollback",
        "links",
    } <= set(deploy["required"])
