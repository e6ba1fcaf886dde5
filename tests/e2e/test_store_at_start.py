"""`postflight run` started while its PostgreSQL store does not answer yet (started beside
it, restarting): it waits for the store, says so once, and serves once it answers, where
it exited 2 at once, the code of a configuration to fix (systemd gives up on a unit after
a few quick restarts; Kubernetes backs off for minutes). A stop while it waits is a clean
exit; a database that does not exist is still a configuration error, exit 2."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.crash import ROOT, TOKEN, _env, free_port
from tests.pg import PgCluster
from tests.store.test_postgres_store import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
WAITING = "the store does not answer"


def start(tmp_path: Path, store_url: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: {store_url}\n"
        "environments:\n  production:\n    base_url: http://127.0.0.1:9\n"
        "    checks: [{name: health, type: http, path: /health}]\n"
    )
    log = tmp_path / "agent.log"
    with log.open("ab") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            cwd=ROOT,
            env=_env(),
            stdout=out,
            stderr=out,
        )
    return agent, port, log


def shown(log: Path) -> str:
    return log.read_text(errors="replace")


async def said(log: Path, agent: subprocess.Popen[bytes], words: str) -> None:
    for _ in range(600):  # 30 s at most: a loaded machine imports slowly
        if words in shown(log):
            return
        assert agent.poll() is None, shown(log)
        await asyncio.sleep(0.05)
    raise AssertionError(f"never said {words!r}: {shown(log)}")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def killed(agent: subprocess.Popen[bytes]) -> None:
    """What a test's end leaves of an agent it started: nothing."""
    if agent.poll() is None:
        agent.kill()
        agent.wait()


async def test_run_waits_for_a_store_that_does_not_answer_yet_then_serves(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = await pg_cluster.create_database()
    port = free_port()  # nothing answers there until the proxy to the server opens
    proxy = Proxy(pg_cluster.port)
    agent, api_port, log = start(tmp_path, url.replace(f":{pg_cluster.port}/", f":{port}/"))
    try:
        await said(log, agent, WAITING)
        await asyncio.sleep(1.0)  # a few tries, each refused
        assert agent.poll() is None and not ready(api_port)
        await proxy.start(port)
        for _ in range(300):
            if await asyncio.to_thread(ready, api_port):
                break
            assert agent.poll() is None, shown(log)
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(ready, api_port), shown(log)
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 20) == 0
    finally:
        killed(agent)
        if proxy.server is not None:
            await proxy.stop()
    text = shown(log)
    assert text.count(WAITING) == 1 and "the store answers; starting" in text, text


async def test_a_stop_while_waiting_for_the_store_exits_0_and_an_unknown_database_2(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    agent, _, log = start(tmp_path / "down", f"postgresql://pf@127.0.0.1:{free_port()}/pf")
    try:
        await said(log, agent, WAITING)
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 20) == 0
    finally:
        killed(agent)
    assert "stopped while waiting for the store" in shown(log)
    agent, _, log = start(tmp_path / "unknown", pg_cluster.url("no_such_database"))
    assert await asyncio.to_thread(agent.wait, 30) == 2
    assert 'database "no_such_database" does not exist' in shown(log)
