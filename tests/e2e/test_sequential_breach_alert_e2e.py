"""Contract §4 under the default policy (`sequential`): "rule breached (warning) ... a breach
that clears sends a resolve", as on-call sees it. The real `postflight run` in its own
process, an apprise `json://` channel and a rollback receiver, counted there: a spell of
5xx answers short of what fails the window pages one `breached` and, once the rule is back
within its bound, one `resolved`, and no rollback; a steady release pages no warning."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
from aiohttp import web

from tests.cli.test_contract_cli import running_again
from tests.cli.test_run_start import TOKEN, agent_config, free_port
from tests.cli_process import awaited_cli
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
AUTH = {"Authorization": f"Bearer {TOKEN}"}


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


class Deployed(NamedTuple):
    http: aiohttp.ClientSession
    url: str
    deploy: dict[str, Any]


@asynccontextmanager
async def deployed(
    tmp_path: Path,
    target: SpellTarget,
    sink: JsonSink,
    receiver: RollbackReceiver,
    spell: int,
    timing: str = "window: 8s\n    interval: 400ms",
) -> AsyncIterator[Deployed]:
    """`postflight run` watching a deploy of `production` (its `timing`), a `spell` of
    requests half of them 503 from its first round on; the deploy as registered."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = agent_config(
        tmp_path,
        port,
        f"alerting:\n  channels:\n    - {{url: '{sink.url()}', tags: [oncall]}}\n"
        "environments:\n  production:\n"
        f"    base_url: {target.url}\n    {timing}\n"
        f"    probes_per_round: {PROBES}\n    background_interval: 1h\n"
        "    checks:\n      - {name: health, type: http, path: /api/health}\n"
        "    analysis: {confidence: 0.99999}\n"  # the default policy, sequential
        "    rules:\n"
        "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.05}\n"
        f"    rollback: {{url: '{receiver.url}', secret: {SECRET}}}\n"
        "    alerts: {tags: [oncall]}\n",
    )
    async with (
        running_again(config, tmp_path / "agent.log"),
        aiohttp.ClientSession() as http,
    ):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while target.answered < PROBES:  # the background run at start, all answered 200
            assert loop.time() < deadline, target.answered
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        target.spell = spell
        body = {"environment": "production", "version": "v7", "previous_version": "v6"}
        async with http.post(f"{url}/v1/deploys", json=body, headers=AUTH) as r:
            assert r.status == 201, await r.text()
            yield Deployed(http, url, await r.json())


async def watched(
    tmp_path: Path, target: SpellTarget, sink: JsonSink, receiver: RollbackReceiver, spell: int
) -> dict[str, Any]:
    """`deployed`, watched to its end; its deploy object once ended."""
    async with deployed(tmp_path, target, sink, receiver, spell) as (http, url, deploy):
        this = f"{url}/v1/deploys/{deploy['id']}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while deploy.get("verdict") is None:
            assert loop.time() < deadline, deploy
            await asyncio.sleep(0.2)
            async with http.get(this, headers=AUTH) as r:
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


async def test_status_and_the_page_show_the_breach_on_call_was_paged_for(
    tmp_path: Path,
    spell_target: SpellTarget,
    json_sink: JsonSink,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
) -> None:
    """Half the answers 503 from the deploy on: warned (`rule breached`) rounds before the
    window fails. Meanwhile `postflight status` and the deploy page, fetched over HTTP,
    said `? inconclusive` where on-call had been paged `breached`; both say `! breach`,
    from the same read-out, with its evidence against what fails it (`max 5%, 7,115 to 1 of
    250,000`)."""
    receiver = await rollback_receiver(SECRET)
    timing = "window: 1m\n    interval: 3s"
    spell = 10**6  # every other answer a 503 to the window's end
    async with deployed(tmp_path, spell_target, json_sink, receiver, spell, timing) as (
        http,
        url,
        deploy,
    ):
        this = f"{url}/v1/deploys/{deploy['id']}"
        deadline = asyncio.get_running_loop().time() + 60
        while not any(
            "breaching" in (rule.get("evidence") or {})
            for rule in (deploy.get("progress") or {}).get("rules") or []
        ):
            assert deploy.get("verdict") is None, deploy
            assert asyncio.get_running_loop().time() < deadline, deploy
            await asyncio.sleep(0.1)
            async with http.get(this, headers=AUTH) as r:
                deploy = await r.json()
        status, page = await asyncio.gather(
            awaited_cli("status", deploy["id"], "--url", url, "--token", TOKEN),
            http.get(deploy["links"]["page"]),  # its `?view=` link alone
        )
        async with page:
            assert page.status == 200, await page.text()
            html = await page.text()
        await alert_titled(json_sink, f"{PREFIX}probe-errors breached", within=30)
    _, said = status
    assert "probe-errors  ! breach" in said and "inconclusive" not in said, said
    assert re.search(r"max 5%, [\d,.]+ to 1 of [\d,.]+ +", said), said
    assert "! breach</span>" in html and "? inconclusive" not in html, html
    assert re.search(r"max 5%, past it on the evidence: [\d,.]+ to 1 of [\d,.]+<", html), html
