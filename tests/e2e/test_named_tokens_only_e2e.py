"""`postflight run` whose tokens are all named (`server.named_tokens`, no `api_tokens`): a
team whose every manual rollback must say who asked. It was refused at start
("server.api_tokens: required, but missing"), though the README calls them tokens
accepted wherever an API token is. Driven as a pipeline and a person would: register,
a manual rollback naming who asked, the deploy page's link, and the log's words."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import SECRET, FlipTarget, environment
from tests.e2e.test_replicas import Daemon
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

ALICE = "alice-token-0123456789abcdef"
CI = "ci-token-0123456789abcdef01"


@pytest.mark.timeout(90)
async def test_a_daemon_with_named_tokens_only_serves_and_names_who_rolled_back(
    tmp_path: Path, flip_target: FlipTarget
) -> None:
    receiver = RollbackReceiver(SECRET)
    await receiver.start()
    rollback = f"rollback: {{url: '{receiver.url}', secret: {SECRET}}}"
    config = (
        "server:\n  listen: 127.0.0.1:{port}\n"
        f"  named_tokens: {{alice: {ALICE}, ci: {CI}}}\n"
        f"store:\n  url: sqlite:///{tmp_path / 'postflight.db'}\n"
        "environments:\n"
        + textwrap.indent(
            environment("production", flip_target.url, window="60s", extra=rollback), "  "
        )
    )
    daemon = Daemon(tmp_path, "named", config, None)
    try:
        async with aiohttp.ClientSession() as http:
            await daemon.ready(http)
            ci = {"Authorization": f"Bearer {CI}"}
            body = {"environment": "production", "version": "v2"}
            async with http.post(f"{daemon.url}/v1/deploys", json=body, headers=ci) as r:
                deploy = await r.json()
                assert r.status == 201, deploy
            async with http.get(deploy["links"]["page"]) as r:  # signed with a named token
                assert r.status == 200, await r.text()
            alice = {"Authorization": f"Bearer {ALICE}"}
            url = f"{daemon.url}/v1/deploys/{deploy['id']}/rollback"
            async with http.post(url, json={"reason": "checkout broken"}, headers=alice) as r:
                assert r.status == 202, await r.text()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while deploy["state"] != "rolled_back":
                assert loop.time() < deadline, deploy
                await asyncio.sleep(0.1)
                async with http.get(f"{daemon.url}/v1/deploys/{deploy['id']}", headers=ci) as r:
                    deploy = await r.json()
            async with http.get(f"{daemon.url}/v1/deploys") as r:
                assert r.status == 401
                assert "server.named_tokens" in (await r.json())["detail"]
        assert list(receiver.delivered) == [deploy["id"]]
        said = daemon.said()
        assert "manual rollback by alice: checkout broken" in said, said
    finally:
        daemon.kill()
        await receiver.stop()
