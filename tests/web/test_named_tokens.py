"""A named token (`server.named_tokens`: more bearer tokens, each with a name) opens the
deploy pages, their event stream and the login form as `api_tokens` do: the `/v1` API
took it, and the stream under `/v1` and the pages refused it with a 401. The app is the
daemon's: the `/v1` API (its auth middleware) with the pages mounted on it."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from agent.api import create_api_app
from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.web import routes
from tests.api.harness import RecordingEvents
from tests.config.test_validate_config import MINIMAL
from tests.rollback.support import make_window

WINDOW = "dep_01JDNAMEDT0KEN000000000000"
CI_TOKEN = "ci-token-0123456789abcdef"


async def test_a_named_token_opens_the_pages_the_stream_and_the_login(tmp_path: Path) -> None:
    text = MINIMAL.replace("  api_tokens:", f"  named_tokens: {{ci: {CI_TOKEN}}}\n  api_tokens:")
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        await store.create_window(make_window(WINDOW, state="passed"))
        app = create_api_app(load_settings_text(text), store, Metrics(), RecordingEvents())
        routes.mount(app)
        bearer = {"Authorization": f"Bearer {CI_TOKEN}"}
        async with TestClient(TestServer(app)) as client:
            pages = ("/deploys", f"/deploys/{WINDOW}", f"/v1/deploys/{WINDOW}/events")
            for path in ("/v1/deploys", f"/v1/deploys/{WINDOW}", *pages):
                async with client.get(path, headers=bearer) as response:
                    assert response.status == 200, path
            form = {"token": CI_TOKEN, "next": "/deploys"}
            async with client.post("/login", data=form, allow_redirects=False) as response:
                assert response.status == 303
            async with client.get("/deploys") as response:
                assert response.status == 200  # the session cookie the login set
            bearer["Authorization"] += "x"
            async with client.get("/deploys", headers=bearer) as response:
                assert response.status == 401
    finally:
        await store.close()
