"""`postflight run` started while its PostgreSQL store does not answer yet (started beside
it, restarting): it waits for the store, says so once, and serves once it answers, where
it exited 2 at once, the code of a configuration to fix (systemd gives up on a unit after
a few quick restarts; Kubernetes backs off for minutes). Meanwhile its port answers
/healthz (a liveness probe) and /metrics, and /readyz and the API 503; the agent then
serves on that socket without a moment it refuses connections. A stop while it waits is
a clean exit; a database that does not exist is still a configuration error, exit 2."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest

from agent.store.sql import MIGRATIONS, SCHEMA_VERSION
from tests.e2e.crash import ROOT, TOKEN, _env, free_port
from tests.pg import PgCluster
from tests.pg_proxy import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
WAITING = "the store does not answer"
WAITING_GAUGE = "\npostflight_waiting_for_store"


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


async def answers(http: aiohttp.ClientSession, url: str) -> tuple[int, object]:
    """The first answer of the next 5 s (the waiting agent listens just after it says so)."""
    for _ in range(100):
        try:
            async with http.get(url) as r:
                return r.status, await r.json(content_type=None)
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} refused connections for 5 s")


async def ready(
    http: aiohttp.ClientSession, base: str, agent: subprocess.Popen[bytes], log: Path
) -> None:
    """Wait until `/readyz` at `base` is 200: 30 s at most, the agent running meanwhile."""
    for _ in range(600):
        async with http.get(f"{base}/readyz") as r:
            if r.status == 200:
                return
        assert agent.poll() is None, shown(log)
        await asyncio.sleep(0.05)
    raise AssertionError(f"never ready: {shown(log)}")


def killed(agent: subprocess.Popen[bytes]) -> None:
    """What a test's end leaves of an agent it started: nothing."""
    if agent.poll() is None:
        agent.kill()
        agent.wait()


async def test_a_stop_while_waiting_for_the_store_exits_0_and_an_unknown_database_2(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    # both at once: neither waits for the other's start
    agent, _, log = start(tmp_path / "down", f"postgresql://pf@127.0.0.1:{free_port()}/pf")
    unknown, _, unknown_log = start(tmp_path / "unknown", pg_cluster.url("no_such_database"))
    try:
        await said(log, agent, WAITING)
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 20) == 0
        assert await asyncio.to_thread(unknown.wait, 30) == 2
    finally:
        killed(agent)
        killed(unknown)
    assert "stopped while waiting for the store" in shown(log)
    assert 'database "no_such_database" does not exist' in shown(unknown_log)


async def test_run_waits_for_a_store_that_does_not_answer_yet_then_serves_on_the_same_socket(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """It waits, then serves once the store answers. /healthz refused connections while
    `run` waited for its store: a Kubernetes liveness probe killed a process that was
    alive and waiting as it should, and /metrics could not be scraped. Now the port
    answers at once; every answer from there on is the waiting one or the agent's, never
    a refused connection, until a deploy registers."""
    url = await pg_cluster.create_database()
    port = free_port()
    proxy = Proxy(pg_cluster.port)
    agent, api_port, log = start(tmp_path, url.replace(f":{pg_cluster.port}/", f":{port}/"))
    base = f"http://127.0.0.1:{api_port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deploy = {"environment": "production", "version": "v2"}
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        await said(log, agent, WAITING)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            assert await answers(http, f"{base}/healthz") == (200, {"status": "ok"})
            async with http.get(f"{base}/readyz") as r:
                body = await r.json(content_type=None)
                assert (r.status, r.content_type) == (503, "application/problem+json"), body
                assert body["checks"]["store"] is False and body["checks"]["config"] is True
                assert "waiting for the store" in body["detail"]
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200 and WAITING_GAUGE + " 1.0" in await r.text()
            for method, path in (("POST", "/v1/deploys"), ("GET", "/v1/deploys")):
                async with http.request(method, base + path, json=deploy, headers=auth) as r:
                    body = await r.json(content_type=None)
                    assert (r.status, r.content_type) == (503, "application/problem+json")
                    assert body["type"] == "urn:postflight:problem:store-unavailable", body
                    assert "not reachable yet" in body["detail"]
                    assert r.headers["Retry-After"].isdigit()

            probes: list[int] = []  # liveness, from before the store answers to after

            async def probe_until_ready() -> None:
                while True:
                    async with http.get(f"{base}/healthz") as r:  # a refusal raises
                        probes.append(r.status)
                    async with http.get(f"{base}/readyz") as r:
                        if r.status == 200:
                            return
                        assert r.status == 503, await r.text()
                    assert agent.poll() is None, shown(log)

            probing = asyncio.create_task(probe_until_ready())
            await asyncio.sleep(1.0)  # a few tries, each refused
            await proxy.start(port)
            await asyncio.wait_for(probing, 30)
            assert set(probes) == {200} and len(probes) > 2, probes
            async with http.post(f"{base}/v1/deploys", json=deploy, headers=auth) as r:
                assert r.status == 201, await r.text()
            async with http.get(f"{base}/metrics") as r:
                assert WAITING_GAUGE + " 0.0" in await r.text()
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 20) == 0
    finally:
        killed(agent)
        if proxy.server is not None:
            await proxy.stop()
    text = shown(log)
    assert text.count(WAITING) == 1 and "the store answers; starting" in text, text
    assert text.count("listening on") == 1, text


async def test_a_database_found_unknown_once_the_server_answers_is_still_exit_2(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """A configuration to fix is exit 2 after a wait too, the waiting answers' socket
    closed with it, not a process that answers /healthz for ever."""
    port = free_port()
    proxy = Proxy(pg_cluster.port)
    url = pg_cluster.url("no_such_db").replace(f":{pg_cluster.port}/", f":{port}/")
    agent, api_port, log = start(tmp_path, url)
    try:
        await said(log, agent, WAITING)
        async with aiohttp.ClientSession() as http:
            assert await answers(http, f"http://127.0.0.1:{api_port}/healthz") == (
                200,
                {"status": "ok"},
            )
        await proxy.start(port)
        assert await asyncio.to_thread(agent.wait, 30) == 2
    finally:
        killed(agent)
        if proxy.server is not None:
            await proxy.stop()
    assert 'database "no_such_db" does not exist' in shown(log)


async def test_a_sqlite_store_that_cannot_be_opened_is_exit_2_without_a_traceback(
    tmp_path: Path,
) -> None:
    """A directory as the store printed aiosqlite's thread traceback (`Event loop is
    closed`: it stops its thread after a failed connect without waiting) before the
    store error, one run in two (deterministically: tests/store/test_sqlite_store.py)."""
    path = tmp_path / "store"
    path.mkdir()
    agent, _, log = start(tmp_path / "agent", f"sqlite:///{path}")
    try:
        assert await asyncio.to_thread(agent.wait, 30) == 2
    finally:
        killed(agent)
    assert f"postflight run: error: store error: cannot open SQLite store {path}" in shown(log)
    assert "Traceback" not in shown(log), shown(log)


def held_sqlite(path: Path) -> sqlite3.Connection:
    """A connection holding the SQLite file at `path` (`BEGIN EXCLUSIVE`, in WAL mode), as
    an operator's `sqlite3` session does: the holder, to commit and close."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


async def test_run_waits_for_a_sqlite_file_another_process_holds_then_serves_or_stops(
    tmp_path: Path,
) -> None:
    """A SQLite file held by another process as `run` starts (an operator's `sqlite3`
    session in `BEGIN EXCLUSIVE`, a `VACUUM`) ended it at once, `store error: SQLite:
    database is locked`, exit 2: the code of a configuration to fix (contract §1), for a
    store that answers once the other process lets go, as a PostgreSQL still starting
    does, which `run` waits for. It waits for this one the same way: /healthz 200,
    /readyz 503, then serves once the file is free, and stops cleanly, exit 0.

    `postflight_windows_active` (contract §5) was missing from /metrics until the store
    answered: a dashboard saw each environment's series vanish across a restart that
    waited. It is 0 per configured environment meanwhile: nothing is watched yet. A stop
    while it waits is a clean exit too.

    Two agents at once, each on a file of its own (`served`, let go; `stopped`, stopped
    while it waits): each first open waits out SQLite's busy timeout (5 s) before it says
    it waits, where a test each waited it out one after the other."""
    holders = {
        name: held_sqlite(tmp_path / name / "postflight.db") for name in ("served", "stopped")
    }
    started = {
        name: start(tmp_path / name / "agent", f"sqlite:///{tmp_path / name / 'postflight.db'}")
        for name in holders
    }
    (agent, api_port, log), (stopped, stopped_port, stopped_log) = started.values()
    base = f"http://127.0.0.1:{api_port}"
    try:
        await asyncio.gather(said(log, agent, WAITING), said(stopped_log, stopped, WAITING))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            assert (await answers(http, f"http://127.0.0.1:{stopped_port}/healthz"))[0] == 200
            async with http.get(f"http://127.0.0.1:{stopped_port}/metrics") as r:
                text = await r.text()
            assert WAITING_GAUGE + " 1.0" in text, text
            assert '\npostflight_windows_active{environment="production"} 0.0\n' in text, text
            stopped.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(stopped.wait, 20) == 0

            assert await answers(http, f"{base}/healthz") == (200, {"status": "ok"})
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503, await r.text()
            holders["served"].execute("COMMIT")
            holders["served"].close()
            await ready(http, base, agent, log)  # at the next try of the open
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 20) == 0
    finally:
        killed(agent)
        killed(stopped)
        for holder in holders.values():
            holder.close()
    text = shown(log)
    assert "locked" in text and "the store answers; starting" in text, text
    assert "stopped while waiting for the store" in shown(stopped_log), shown(stopped_log)


def test_a_postgresql_store_without_its_driver_says_the_extra_to_install(tmp_path: Path) -> None:
    """The README: "Install `postflight-agent[postgres]` for the driver". An install without
    it (asyncpg not importable) configured for PostgreSQL says that extra, exit 2, and
    never the URL's password."""
    hidden = tmp_path / "no-asyncpg" / "asyncpg"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named asyncpg')\n")
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server:\n  listen: 127.0.0.1:{free_port()}\n  api_tokens: [{TOKEN}]\n"
        "store:\n  url: postgresql://pf:hunter2-secret@127.0.0.1:9/postflight\n"
        "environments:\n  production:\n    base_url: http://127.0.0.1:9\n"
    )
    env = _env()
    env["PYTHONPATH"] = f"{hidden.parent}:{env['PYTHONPATH']}"
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert "store error: the PostgreSQL store needs asyncpg: pip install" in said, said
    assert "'postflight-agent[postgres]'" in said and "hunter2" not in said, said
    assert "Traceback" not in said, said
    # the extra it names is this package's, holding the driver
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "postflight-agent"
    assert any(d.startswith("asyncpg") for d in project["optional-dependencies"]["postgres"])


def test_an_upgrade_migrates_the_store_and_an_older_postflight_refuses_it(
    tmp_path: Path,
) -> None:
    """The README's upgrade: the store is migrated at start, by adding only (a column a
    running agent of the version before does not write is nullable or has a default),
    and an older Postflight refuses a store a newer one migrated, exit 2, saying so."""
    for script in MIGRATIONS[1:]:
        for statement in filter(str.strip, script.split(";")):
            words = " ".join(statement.split())
            assert words.startswith(("CREATE ", "ALTER TABLE ")), words
            if words.startswith("ALTER TABLE "):
                assert " ADD COLUMN " in words, words
                assert "NOT NULL" not in words or " DEFAULT " in words, words
    db = tmp_path / "postflight.db"
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server:\n  listen: 127.0.0.1:{free_port()}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{db}\n"
        "environments:\n  production:\n    base_url: http://127.0.0.1:9\n"
    )
    with sqlite3.connect(db) as made:  # a store of a Postflight one schema version ahead
        made.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        made.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION + 1),))
    made.close()
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    refused = (
        "postflight run: error: store error: the store's schema is version {}, newer"
        " than this Postflight understands ({}); upgrade Postflight"
    )
    assert refused.format(SCHEMA_VERSION + 1, SCHEMA_VERSION) in said, said
    # the README's example: this version's store, met by the Postflight of the version
    # before it (going back a version), in the words this one printed
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert refused.format(SCHEMA_VERSION, SCHEMA_VERSION - 1) in readme


async def test_run_waits_for_a_postgresql_out_of_connections_then_serves(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """The README's "out of connections": a role at its `CONNECTION LIMIT` (PostgreSQL's
    53300, `too many connections`, as a server at `max_connections`) is a store that does
    not answer yet, waited for and said once, not a configuration to fix (exit 2); the
    agent serves once a connection is free. Only a server refusing or cut was tried."""
    import asyncpg

    url = await pg_cluster.create_database()
    schema = url.rsplit("search_path=", 1)[1]
    role = f"pf_{schema}"
    admin = await asyncpg.connect(pg_cluster.url(), timeout=10)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
        await admin.execute(f'GRANT ALL ON SCHEMA "{schema}" TO "{role}"')
        agent, api_port, log = start(tmp_path, url.replace(f"//{pg_cluster.user}@", f"//{role}@"))
        try:
            await said(log, agent, WAITING)
            assert "too many connections" in shown(log), shown(log)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.get(f"http://127.0.0.1:{api_port}/readyz") as r:
                    assert r.status == 503, await r.text()
                await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
                await said(log, agent, "the store answers; starting")
                await ready(http, f"http://127.0.0.1:{api_port}", agent, log)
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, 20) == 0
        finally:
            killed(agent)
        assert shown(log).count(WAITING) == 1, shown(log)
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_a_refused_login_is_exit_2_at_once_saying_why(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """The README's "a refused login … is a configuration to fix: `postflight run: error:
    store error: … (exit 2)`, at once": a role that does not exist, and one that may not
    log in, on a real PostgreSQL; never the wait for a store that does not answer. Both
    agents at once: neither waits for the other's start (each took 4-5 s at load 15)."""
    import asyncpg

    nologin = f"pf_nologin_{free_port()}"
    admin = await asyncpg.connect(pg_cluster.url(), timeout=10)
    try:
        await admin.execute(f'CREATE ROLE "{nologin}" NOLOGIN')
        refused = ((f"pf_nobody_{free_port()}", "does not exist"), (nologin, "log in"))
        started = [
            start(tmp_path / role, pg_cluster.url().replace(f"//{pg_cluster.user}@", f"//{role}@"))
            for role, _ in refused
        ]
        try:
            codes = await asyncio.gather(
                *(asyncio.to_thread(agent.wait, 40) for agent, _, _ in started)
            )
        finally:
            for agent, _, _ in started:
                killed(agent)
        for (role, why), (_, _, log), code in zip(refused, started, codes, strict=True):
            assert code == 2, shown(log)
            text = shown(log)
            assert WAITING not in text and "Traceback" not in text, text
            (line,) = [x for x in text.splitlines() if x.startswith("postflight run: error:")]
            assert line.startswith("postflight run: error: store error: "), text
            assert f'"{role}"' in line and why in line and line.endswith(" (exit 2)"), text
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{nologin}"')
        await admin.close()
