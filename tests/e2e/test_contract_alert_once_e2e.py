"""Contract §4, "One notification per deploy and event (no repeats per round); a breach
that clears sends a resolve", as on-call sees it across a flapping release: the real
`postflight run` in its own process on SQLite and on PostgreSQL, an apprise `json://`
channel, and the rounds read from the deploy object (§2). A rule breaches, clears,
breaches again for three rounds and clears again: the channel hears one breach and one
resolve, nothing per round and nothing for the second breach; and the same across a stop
and restart mid-breach: the restarted daemon pages neither the breach again nor anything
else until the rule clears, then its one resolve."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from tests.cli.test_contract_cli import running_again
from tests.cli.test_run_start import TOKEN, agent_config, free_port
from tests.e2e.conftest import FlipTarget
from tests.receivers import JsonSink, alert_titled, titled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """The agent's store: its SQLite file (`agent_config`'s, None here), or PostgreSQL."""
    return request.getfixturevalue("pg_url") if request.param == "postgres" else None


async def rounds_more(
    http: aiohttp.ClientSession, deploy: str, headers: dict[str, str], more: int
) -> None:
    """Until the deploy object at `deploy` says `more` rounds beyond those it says now
    were judged (its `rounds`, contract §2)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    start = now = -1
    while now < start + more:
        assert loop.time() < deadline, (start, now)
        async with http.get(deploy, headers=headers) as r:
            assert r.status == 200, await r.text()
            now = (await r.json())["rounds"]
        start = now if start < 0 else start
        await asyncio.sleep(0.1)


INTERVAL = "400ms"
"""A round's length: what the tests assert (one page per breach and per resolve, across
rounds and a restart) counts rounds, not seconds; 1 s rounds made each test 10 rounds of
waiting (15-23 s a test at load 18-22). A probe of the local target that a loaded machine
answers too late is one failed round at most, which pages nothing new: a second breach
of the deploy pages nothing, and a late failure before the resolve only delays it."""


def flapping_config(
    tmp_path: Path, port: int, json_sink: JsonSink, flip_target: FlipTarget, store_url: str | None
) -> Path:
    """`production` probing `flip_target` in rounds of `INTERVAL` for a minute, its
    error-rate rule never failing the window (each breach short of `failure_limit`), alerts
    to `json_sink`, on `store_url` (PostgreSQL) or SQLite (None)."""
    config = agent_config(
        tmp_path,
        port,
        f"alerting:\n  channels:\n    - {{url: '{json_sink.url()}', tags: [oncall]}}\n"
        "environments:\n  production:\n"
        f"    base_url: {flip_target.url}\n    window: 1m\n    interval: {INTERVAL}\n"
        "    checks:\n      - {name: health, type: http, path: /api/health}\n"
        # never fails the window: each breach stays short of failure_limit
        "    analysis: {policy: threshold, failure_limit: 100}\n"
        "    rules:\n"
        "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.05}\n"
        "    alerts: {tags: [oncall]}\n",
    )
    if store_url is not None:
        text, n = re.subn(r"(?m)^store: .*$", f"store: {{url: '{store_url}'}}", config.read_text())
        assert n == 1, text
        config.write_text(text)
    return config


HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def registered(http: aiohttp.ClientSession, url: str, version: str) -> str:
    """`version` registered in production through the API: its deploy object's URL."""
    body = {"environment": "production", "version": version, "previous_version": "v6"}
    async with http.post(f"{url}/v1/deploys", json=body, headers=HEADERS) as r:
        assert r.status == 201, await r.text()
        return f"{url}/v1/deploys/{(await r.json())['id']}"


async def test_a_rule_that_breaches_clears_and_breaches_again_pages_one_breach_and_one_resolve(
    tmp_path: Path, json_sink: JsonSink, flip_target: FlipTarget, store_url: str | None
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = flapping_config(tmp_path, port, json_sink, flip_target, store_url)
    prefix = "[postflight] production v7: "
    # stopped (SIGTERM) once the window is cancelled: the stop finishes the alerts in flight
    async with running_again(config, tmp_path / "agent.log"), aiohttp.ClientSession() as http:
        flip_target.bad = True
        this = await registered(http, url, "v7")
        breach = await alert_titled(json_sink, f"{prefix}probe-errors breached", within=60)
        assert breach.type == "warning", breach.payload
        flip_target.bad = False
        resolved = await alert_titled(json_sink, f"{prefix}probe-errors resolved", within=60)
        assert resolved.type == "success", resolved.payload
        flip_target.bad = True  # breaching again, for three rounds
        await rounds_more(http, this, HEADERS, 3)
        flip_target.bad = False  # and clear again, for three rounds
        await rounds_more(http, this, HEADERS, 3)
        async with http.post(f"{this}/cancel", headers=HEADERS) as r:
            assert r.status == 200, await r.text()
    titles = [n.title for n in titled(json_sink, prefix)]
    assert titles == [f"{prefix}probe-errors breached", f"{prefix}probe-errors resolved"], titles
    deploy_id = this.rsplit("/", 1)[1]
    assert all(deploy_id in n.message for n in json_sink.notifications), titles


async def test_a_breach_alerted_before_a_stop_is_not_paged_again_by_the_restart(
    tmp_path: Path, json_sink: JsonSink, flip_target: FlipTarget, store_url: str | None
) -> None:
    """§4's "one notification per deploy and event" across §1's stop with state kept: the
    breach is paged, the daemon stopped (SIGTERM) and started again on its store while the
    rule still breaches; three more breaching rounds page nothing, and the clear pages
    one resolve."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = flapping_config(tmp_path, port, json_sink, flip_target, store_url)
    prefix = "[postflight] production v8: "
    flip_target.bad = True
    async with running_again(config, tmp_path / "agent.log"), aiohttp.ClientSession() as http:
        this = await registered(http, url, "v8")
        await alert_titled(json_sink, f"{prefix}probe-errors breached", within=60)
    paged = [n.title for n in titled(json_sink, prefix)]
    assert paged == [f"{prefix}probe-errors breached"], paged
    async with running_again(config, tmp_path / "again.log"), aiohttp.ClientSession() as http:
        await rounds_more(http, this, HEADERS, 3)  # still breaching, judged by the restart
        async with http.get(this, headers=HEADERS) as r:
            deploy = await r.json()
        assert deploy["state"] == "watching", deploy
        assert [n.title for n in titled(json_sink, prefix)] == paged
        flip_target.bad = False
        await alert_titled(json_sink, f"{prefix}probe-errors resolved", within=60)
        await rounds_more(http, this, HEADERS, 2)
        async with http.post(f"{this}/cancel", headers=HEADERS) as r:
            assert r.status == 200, await r.text()
    titles = [n.title for n in titled(json_sink, prefix)]
    assert titles == [f"{prefix}probe-errors breached", f"{prefix}probe-errors resolved"], titles
