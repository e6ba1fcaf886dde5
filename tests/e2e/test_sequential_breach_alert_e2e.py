"""Contract §4 under the default policy (`sequential`): "rule breached (warning) ... a breach
that clears sends a resolve", as on-call sees it. The real `postflight run` in its own
process, an apprise `json://` channel and a rollback receiver, counted there: a spell of
5xx answers short of what fails the window pages one `breached` and, once the rule is back
within its bound, one `resolved`, and no rollback; a steady release pages no warning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.cli.test_contract_cli import running_again
from tests.cli.test_run_start import TOKEN, agent_config, free_port
from tests.e2e.conftest import SECRET, LocalTarget
from tests.receivers import JsonSink, RollbackReceiver, alert_titled, titled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PROBES = 40
"""Probes a round (the default)."""
SPELL = 4 * PROBES
"""Requests answered alternately 503 and 200: four rounds' worth at 50% errors, over four or
five rounds as they fall. At confidence 0.99999 (one rule) the window's test fails after
about six such rounds, and the warning, at two thirds of that evidence or less
(`agent.analysis.sequential.WARN_SHARE`), needs about three: at every offset of the spell
in its rounds, the evidence peaks at 0.71-0.79 of what fails."""
PREFIX = "[postflight] production v7: "


class SpellTarget(LocalTarget):
    """The service being deployed: answers 200, or 503 to every other one of the next
    `spell` requests."""

    def __init__(self) -> None:
        super().__init__()
        self.spell = 0
        self.failed = 0
        self.answered = 0

    async def health(self, request: web.Request) -> web.Response:
        self.answered += 1
        if self.spell > 0:
            self.spell -= 1
            if self.spell % 2:
                self.failed += 1
                return web.json_response({"status": "error"}, status=503)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


@pytest.fixture
async def spell_target() -> AsyncIterator[SpellTarget]:
    target = SpellTarget()
    await target.start()
    yield target
    await target.stop()


async def watched(
    tmp_path: Path, target: SpellTarget, sink: JsonSink, receiver: RollbackReceiver, spell: int
) -> dict[str, Any]:
    """One deploy of `production` watched by `postflight run` to its end, a `spell` of
    requests half of them 503 from its first round on; its deploy object once ended."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = agent_config(
        tmp_path,
        port,
        f"alerting:\n  channels:\n    - {{url: '{sink.url()}', tags: [oncall]}}\n"
        "environments:\n  production:\n"
        f"    base_url: {target.url}\n    window: 8s\n    interval: 400ms\n"
        f"    probes_per_round: {PROBES}\n    background_interval: 1h\n"
        "    checks:\n      - {name: health, type: http, path: /api/health}\n"
        "    analysis: {confidence: 0.99999}\n"  # the default policy, sequential
        "    rules:\n"
        "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.05}\n"
        f"    rollback: {{url: '{receiver.url}', secret: {SECRET}}}\n"
        "    alerts: {tags: [oncall]}\n",
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with running_again(config, tmp_path / "agent.log"), aiohttp.ClientSession() as http:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while target.answered < PROBES:  # the background run at start, all answered 200
            assert loop.time() < deadline, target.answered
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        target.spell = spell
        body = {"environment": "production", "version": "v7", "previous_version": "v6"}
        async with http.post(f"{url}/v1/deploys", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            deploy: dict[str, Any] = await r.json()
        this = f"{url}/v1/deploys/{deploy['id']}"
        deadline = loop.time() + 90
        while deploy.get("verdict") is None:
            assert loop.time() < deadline, deploy
            await asyncio.sleep(0.2)
            async with http.get(this, headers=headers) as r:
                assert r.status == 200, await r.text()
                deploy = await r.json()
        # the window's end alert has gone out: every alert of the window is in
        await alert_titled(sink, f"{PREFIX}", within=30)
        await asyncio.sleep(1.0)
    return deploy


async def test_a_breach_that_clears_pages_one_warning_and_one_resolve_and_no_rollback(
    tmp_path: Path,
    spell_target: SpellTarget,
    json_sink: JsonSink,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
) -> None:
    receiver = await rollback_receiver(SECRET)
    deploy = await watched(tmp_path, spell_target, json_sink, receiver, SPELL)
    assert spell_target.failed == SPELL // 2, spell_target.failed
    titles = [n.title for n in titled(json_sink, PREFIX)]
    breached = titled(json_sink, f"{PREFIX}probe-errors breached")
    resolved = titled(json_sink, f"{PREFIX}probe-errors resolved")
    assert len(breached) == 1 and len(resolved) == 1, titles
    assert breached[0].type == "warning" and resolved[0].type == "success", titles
    assert titles.index(breached[0].title) < titles.index(resolved[0].title), titles
    assert "probe-errors" in breached[0].message and deploy["id"] in breached[0].message
    assert deploy["verdict"] != "fail", deploy
    assert not any("rollback" in t.lower() for t in titles), titles
    assert receiver.attempts == [], receiver.attempts


async def test_a_steady_release_pages_no_warning(
    tmp_path: Path,
    spell_target: SpellTarget,
    json_sink: JsonSink,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
) -> None:
    receiver = await rollback_receiver(SECRET)
    deploy = await watched(tmp_path, spell_target, json_sink, receiver, 0)
    titles = [n.title for n in titled(json_sink, PREFIX)]
    assert not titled(json_sink, "breached") and not titled(json_sink, "resolved"), titles
    assert deploy["verdict"] != "fail" and receiver.attempts == [], (deploy, titles)
