"""README "HTTP API (v1)", as the daemon runs it: a store that does not answer (PostgreSQL
restarting, say) is a `503` (`store-unavailable`, `Retry-After: 1`), as `/readyz` says, not
a `500`; clients retry it, and `register --wait` rides it out. The log says so in one
WARNING and its end in one INFO line.

`postflight run` on a real PostgreSQL stopped under it mid-window, with `postflight
register --wait` watching the window: each API route answers the 503 problem while it is
down (a request without a token still its 401), and the wait ends `passed`, exit 0, once
it is back. Before, only an in-process app on a closed SQLite store had this tested."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cli_process import cli_env
from tests.e2e.conftest import FlipTarget, environment
from tests.e2e.crash import ROOT, TOKEN, _env, free_port
from tests.e2e.test_store_at_start import killed, said, shown
from tests.pg import PgCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNAVAILABLE = "urn:postflight:problem:store-unavailable"
CLI_MET_IT = "the store does not answer"
"""What `register --wait` prints when a poll is answered 503 (`! … (HTTP 503); retrying`)."""


async def _collect(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(4096):
        into.extend(chunk)


async def _until(seen: Any, what: str, within: float = 30.0) -> None:
    for _ in range(int(within * 20)):
        if seen():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {what}")


def _configured(tmp_path: Path, store_url: str, target: str, window: str) -> tuple[str, Path]:
    """The agent's config on `store_url`, production watching `target` for `window` in
    rounds of 500 ms: the agent's URL, and the config's path."""
    port = free_port()
    config = tmp_path / "postflight.yaml"
    production = environment("production", target, window=window, interval="500ms")
    config.write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: {store_url}\nenvironments:\n{textwrap.indent(production, '  ')}"
    )
    return f"http://127.0.0.1:{port}", config


async def _register_wait(base: str) -> asyncio.subprocess.Process:
    """`postflight register --wait` of v2 in production (90 s at the most), its output
    and errors piped to its stdout."""
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent", "register", "--url", base, "--token", TOKEN),
        *("--env", "production", "--version", "v2", "--wait", "--timeout", "90s"),
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def _run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`postflight run --config CONFIG`, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            cwd=ROOT,
            env=_env(),
            stdout=out,
            stderr=out,
        )


async def _answer(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, auth: bool = True
) -> tuple[int, dict[str, str], dict[str, Any]]:
    async with http.request(method, url, json=body, headers=AUTH if auth else {}) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


async def test_postgresql_stopped_mid_window_is_a_503_on_each_route_and_register_wait_rides_it_out(
    tmp_path: Path, own_pg_cluster: PgCluster, flip_target: FlipTarget
) -> None:
    store_url = await own_pg_cluster.create_database()
    base, config = _configured(tmp_path, store_url, flip_target.url, window="10s")
    log = tmp_path / "agent.log"
    agent = _run(config, log)
    wait: asyncio.subprocess.Process | None = None
    printed = bytearray()
    try:
        await said(log, agent, "listening on")
        wait = await _register_wait(base)
        assert wait.stdout is not None
        reader = asyncio.create_task(_collect(wait.stdout, printed))
        await _until(lambda: b"round" in printed, f"a round in: {printed.decode()}")
        found = re.search(r"dep_[0-9A-Z]{26}", printed.decode())
        assert found, printed.decode()
        deploy = f"{base}/v1/deploys/{found.group()}"

        await asyncio.to_thread(own_pg_cluster.stop)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            for method, url, body in [
                ("POST", f"{base}/v1/deploys", {"environment": "production", "version": "v3"}),
                ("GET", f"{base}/v1/deploys", None),
                ("GET", deploy, None),
                ("POST", f"{deploy}/cancel", None),
                ("POST", f"{deploy}/rollback", {"reason": "checkout broken"}),
            ]:
                status, headers, problem = await _answer(http, method, url, body)
                assert status == 503, (method, url, status, problem)
                assert headers["Retry-After"] == "1", (method, url, headers)
                assert headers["Content-Type"].startswith("application/problem+json")
                assert problem["type"] == UNAVAILABLE and problem["status"] == 503, problem
            status, headers, _ = await _answer(http, "GET", f"{base}/v1/deploys", auth=False)
            assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
            assert (await _answer(http, "GET", f"{base}/healthz", auth=False))[0] == 200
            status, _, ready = await _answer(http, "GET", f"{base}/readyz", auth=False)
            assert status == 503 and ready["checks"]["store"] is False, ready
        await _until(lambda: CLI_MET_IT.encode() in printed, f"the CLI met it: {printed.decode()}")
        await asyncio.to_thread(own_pg_cluster.start)

        code = await asyncio.wait_for(wait.wait(), 90)
        await reader
        text = printed.decode()
        assert code == 0, text
        assert "agent reachable again" in text, text
        assert "passed" in text, text
    finally:
        if wait is not None and wait.returncode is None:
            wait.kill()
            await wait.wait()
        killed(agent)
    said_log = shown(log)
    assert said_log.count("WARNING postflight.api: store unavailable serving") == 1, said_log
    assert said_log.count("the store answers API requests again") == 1, said_log


async def test_register_wait_started_while_postgresql_restarts_rides_it_out_to_its_verdict(
    tmp_path: Path, own_pg_cluster: PgCluster, flip_target: FlipTarget
) -> None:
    """`register --wait` rides the outage out from its first request too: the
    registration (same Idempotency-Key each try) is tried again until `--timeout`, as the
    wait's polls are. It tried three times in 1.5 s, then exited 2 (`postflight register:
    the store does not answer; retry shortly (HTTP 503)`) while PostgreSQL restarted:
    the pipeline's step failed with nothing registered."""
    store_url = await own_pg_cluster.create_database()
    base, config = _configured(tmp_path, store_url, flip_target.url, window="5s")
    log = tmp_path / "agent.log"
    agent = _run(config, log)
    wait: asyncio.subprocess.Process | None = None
    printed = bytearray()
    try:
        await said(log, agent, "listening on")
        await asyncio.to_thread(own_pg_cluster.stop)
        wait = await _register_wait(base)
        assert wait.stdout is not None
        reader = asyncio.create_task(_collect(wait.stdout, printed))
        await _until(
            lambda: CLI_MET_IT.encode() in printed or reader.done(),
            f"the CLI met the outage: {printed.decode()}",
        )
        await asyncio.sleep(3.0)  # past the three quick tries of one request
        assert wait.returncode is None, printed.decode()
        await asyncio.to_thread(own_pg_cluster.start)
        code = await asyncio.wait_for(wait.wait(), 90)
        await reader
        text = printed.decode()
        assert code == 0, text
        assert f"{CLI_MET_IT}; retry shortly (HTTP 503); retrying until the timeout" in text, text
        assert "registered v2 in production: dep_" in text, text
        assert "passed" in text, text
    finally:
        if wait is not None and wait.returncode is None:
            wait.kill()
            await wait.wait()
        killed(agent)


async def test_postgresql_frozen_is_a_503_within_seconds_on_each_route_and_the_page(
    tmp_path: Path, own_pg_cluster: PgCluster, flip_target: FlipTarget
) -> None:
    """A PostgreSQL that stops answering with its sockets open (SIGSTOP: a frozen VM or
    container) is the same 503 within seconds: the API's GETs answered it after 40 s, a
    POST after 10 s, and a pipeline and the deploy page hung that long. Once it goes on
    (SIGCONT), the routes answer again."""
    from tests.store.test_postgres_frozen import frozen

    store_url = await own_pg_cluster.create_database()
    base, config = _configured(tmp_path, store_url, flip_target.url, window="60s")
    log = tmp_path / "agent.log"
    agent = _run(config, log)
    try:
        await said(log, agent, "listening on")
        # under the pool's command timeout (30 s) and connect timeout (10 s)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=9)) as http:
            status, _, created = await _answer(
                http, "POST", f"{base}/v1/deploys", {"environment": "production", "version": "v2"}
            )
            assert status == 201, created
            deploy = f"{base}/v1/deploys/{created['id']}"
            assert (await _answer(http, "GET", deploy))[0] == 200

            async def unavailable(method: str, url: str, body: Any = None) -> None:
                status, headers, problem = await _answer(http, method, url, body)
                assert status == 503, (method, url, status, problem)
                assert headers["Retry-After"] == "1", (method, url, headers)
                assert problem["type"] == UNAVAILABLE, problem

            async def page_unavailable() -> None:
                async with http.get(f"{base}/deploys/{created['id']}", headers=AUTH) as page:
                    assert page.status == 503 and "store does not answer" in await page.text()

            with frozen(own_pg_cluster):
                # the first alone, on the pool as it was; then the others at once, each
                # within its own 9 s (one after another, each took its look's 4 s)
                await unavailable("GET", f"{base}/v1/deploys")
                await asyncio.gather(
                    unavailable("GET", deploy),
                    unavailable(
                        "POST", f"{base}/v1/deploys", {"environment": "production", "version": "v3"}
                    ),
                    page_unavailable(),
                )
            status, _, shown_again = await _answer(http, "GET", deploy)
            assert status == 200 and shown_again["id"] == created["id"], shown_again
    finally:
        killed(agent)
