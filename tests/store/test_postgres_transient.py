"""PostgreSQL's server-side errors that are not a bug in a query but the server refusing a
statement for now (a statement timeout's cancel, a lock wait given up, a serialization
failure, a deadlock), made on a real server: each is a `StoreError`, so every caller
retries it as it retries the store's outage (`store_outage`), and all but the statement
timeout is `StoreBusy`: said busy, never down. Before, all but the
statement timeout came out as asyncpg's own exception: a watch whose round write met
one counted it toward ending its window as a bug of the store."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.app import build_app
from agent.metrics import Metrics
from agent.records import DeployWindow, RoundRecord
from agent.settings_file import load_settings_text
from agent.store.base import StoreError
from agent.store.outages import store_busy, store_outage
from agent.store.postgres import PostgresStore
from agent.store.sql import LOCK_MIGRATE
from agent.windows.supervisor import Watcher
from checks.sessions import TargetSessions
from tests.store.test_open_read_only import opening_once_it_waits
from tests.test_round_bug_watcher import watcher_of
from tests.test_watcher_claims import CONFIG

asyncpg = pytest.importorskip("asyncpg")

WINDOW = DeployWindow(
    id="dep_transient",
    environment="production",
    version="v1",
    previous_version="v0",
    commit=None,
    labels={},
    state="watching",
    deployed_at=100.0,
    ends_at=160.0,
    created_at=100.0,
)
ROUND = RoundRecord(WINDOW.id, 1, 101.0, {"decision": "continue"})


async def opened(pg_url: str, **settings: str) -> PostgresStore:
    """A store whose sessions run with `settings` (server settings in its URL, as a DBA's
    `ALTER ROLE … SET` would give them; the test's database is the cluster's, shared),
    holding `WINDOW`."""
    store = PostgresStore(pg_url + "".join(f"&{key}={value}" for key, value in settings.items()))
    await store.open()
    await store.create_window(WINDOW)
    return store


@pytest.fixture
async def other(pg_url: str) -> AsyncIterator[object]:
    """Another session on the store's database (an operator's, another replica's)."""
    conn = await asyncpg.connect(pg_url)
    yield conn
    await conn.close()


def store_up_values(watcher: Watcher) -> list[float]:
    """Every value the watcher sets `postflight_store_up` to, in order (the gauge still set)."""
    values: list[float] = []
    gauge = watcher.metrics.store_up
    set_up = gauge.set

    def recorded(value: float) -> None:
        values.append(value)
        set_up(value)

    gauge.set = recorded  # type: ignore[method-assign]  # a spy on the real gauge
    return values


def said_as_transient(exc: BaseException, busy: bool = True) -> None:
    """Retried as an outage; `busy` (`StoreBusy`: the store up, one transaction refused)
    unless the server gave up on the statement itself."""
    assert isinstance(exc, StoreError), repr(exc)
    assert store_outage(exc), repr(exc)
    assert store_busy(exc) == busy, repr(exc)


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("statement_timeout", "300ms", "statement timeout"),
        ("lock_timeout", "200ms", "lock timeout"),
    ],
)
async def test_a_statement_the_server_gave_up_waiting_on_is_retried_as_an_outage(
    pg_url: str, other: object, setting: str, value: str, said: str
) -> None:
    """The window's row locked by another session past the server's timeout."""
    store = await opened(pg_url, **{setting: value})
    conn: object = other
    try:
        async with conn.transaction():  # type: ignore[attr-defined]
            await conn.execute(  # type: ignore[attr-defined]
                "SELECT id FROM windows WHERE id = $1 FOR UPDATE", WINDOW.id
            )
            with pytest.raises(Exception) as raised:
                await store.record_round(ROUND, None)
        said_as_transient(raised.value, busy=setting == "lock_timeout")
        assert said in str(raised.value), raised.value
        assert await store.record_round(ROUND, None)  # the lock gone: goes through
    finally:
        await store.close()


async def test_a_serialization_failure_is_retried_as_an_outage(pg_url: str, other: object) -> None:
    """Sessions at REPEATABLE READ (a DBA's default): another session's update of the
    window committed while the round's waited on it."""
    store = await opened(pg_url, default_transaction_isolation="repeatable%20read")
    conn: object = other
    try:
        tx = conn.transaction()  # type: ignore[attr-defined]
        await tx.start()
        await conn.execute(  # type: ignore[attr-defined]
            "UPDATE windows SET labels = labels WHERE id = $1", WINDOW.id
        )
        writing = asyncio.ensure_future(store.record_round(ROUND, None))
        await asyncio.sleep(0.3)  # its UPDATE waits on the row
        await tx.commit()
        with pytest.raises(Exception) as raised:
            await writing
        said_as_transient(raised.value)
        assert "could not serialize" in str(raised.value), raised.value
    finally:
        await store.close()


@pytest.mark.parametrize(
    "errcode", ["deadlock_detected", "serialization_failure", "lock_not_available"]
)
async def test_a_transaction_the_server_rolled_back_is_retried_as_an_outage(
    pg_url: str, other: object, errcode: str
) -> None:
    """A deadlock, told by the server as it tells one (its SQLSTATE, from a trigger: two
    sessions locking in turn cannot be timed from here)."""
    store = await opened(pg_url)
    conn: object = other
    await conn.execute(  # type: ignore[attr-defined]
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" RAISE EXCEPTION 'refused as a test' USING ERRCODE = '{errcode}'; END $$;"
        " CREATE TRIGGER refuse BEFORE INSERT ON rounds FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    try:
        with pytest.raises(Exception) as raised:
            await store.record_round(ROUND, None)
        said_as_transient(raised.value)
        assert "refused as a test" in str(raised.value), raised.value
        stored = await store.get_window(WINDOW.id)
        assert stored is not None and stored.rounds == 0  # rolled back whole
    finally:
        await store.close()


async def test_a_watch_whose_round_writes_meet_deadlocks_goes_on_once_they_pass(
    pg_url: str, other: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Four deadlocks in a row, each the same exception from the same line: the watcher
    ended the window `inconclusive` as a bug of the store at the third. The store is up
    all along (it refused four transactions): its log says busy, retried, never that it
    does not answer, and `postflight_store_up` never goes to 0 (the shipped
    PostflightStoreDown rule pages on it)."""
    store = await opened(pg_url)
    conn: object = other
    await conn.execute(  # type: ignore[attr-defined]
        "CREATE SEQUENCE refusals; CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN IF nextval('refusals') <= 4 THEN RAISE EXCEPTION 'deadlock as a test'"
        " USING ERRCODE = 'deadlock_detected'; END IF; RETURN NEW; END $$;"
        " CREATE TRIGGER refuse BEFORE INSERT ON rounds FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    await store.cancel_window(WINDOW.id, 101.0)  # `opened`'s, of another time: not watched
    sessions = TargetSessions()
    # watcher_of is annotated for the SQLite store its own module uses: it takes any Store
    watcher = watcher_of(store, sessions)  # type: ignore[arg-type]
    store_up = store_up_values(watcher)
    caplog.set_level(logging.INFO)
    now = time.time()
    made = dataclasses.replace(
        WINDOW, id="dep_deadlocked", deployed_at=now, ends_at=now + 60, created_at=now
    )
    await store.create_window(made)
    task = asyncio.create_task(watcher.run())
    try:
        for _ in range(600):
            stored = await store.get_window(made.id)
            assert stored is not None
            if stored.state != "watching" or stored.rounds >= 1:
                break
            assert not task.done()
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"no round stored: {stored}")
        refused = await conn.fetchval("SELECT last_value FROM refusals")  # type: ignore[attr-defined]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sessions.aclose()
        await store.close()
    assert stored.state == "watching", stored.verdict
    assert stored.rounds >= 1 and refused > 4
    said = [r.getMessage() for r in caplog.records if r.name.startswith("postflight")]
    assert not [line for line in said if "does not answer" in line], said
    busy = [line for line in said if "busy, retried" in line]
    assert busy and "deadlock as a test" in busy[0], said
    assert store_up and 0 not in store_up, store_up


async def test_an_api_write_the_server_refused_is_a_503_with_the_store_still_up(
    pg_url: str, other: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A registration whose insert met a deadlock: the client is told to retry (503 with
    `Retry-After`, as for an outage), the log says the store is busy, and
    `postflight_store_up` stays 1: the store answered."""
    metrics = Metrics()
    app = build_app(
        load_settings_text(CONFIG),
        store=PostgresStore(pg_url),
        metrics=metrics,
        poll_interval=3600,
        background_probing=False,
    )
    caplog.set_level(logging.INFO)
    conn: object = other
    async with TestClient(TestServer(app)) as client:
        await conn.execute(  # type: ignore[attr-defined]
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE"
            " EXCEPTION 'deadlock as a test' USING ERRCODE = 'deadlock_detected'; END $$;"
            " CREATE TRIGGER refuse BEFORE INSERT ON windows FOR EACH ROW"
            " EXECUTE FUNCTION refuse()"
        )
        assert metrics.registry.get_sample_value("postflight_store_up") == 1
        async with client.post(
            "/v1/deploys",
            json={"environment": "production", "version": "v2"},
            headers={"Authorization": "Bearer tok-1234567890abcdef"},  # CONFIG's
        ) as r:
            assert r.status == 503, await r.text()
            assert r.headers["Retry-After"].isdigit()
            assert "busy" in (await r.json())["detail"]
        assert metrics.registry.get_sample_value("postflight_store_up") == 1
    said = [r.getMessage() for r in caplog.records if r.name.startswith("postflight")]
    busy = [line for line in said if "busy" in line and "POST /v1/deploys" in line]
    assert busy and "deadlock as a test" in busy[0], said
    assert not [line for line in said if "does not answer" in line or "unavailable" in line]


async def test_a_start_whose_schema_lock_waits_past_lock_timeout_waits_and_opens(
    pg_url: str, other: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Another replica holding the migration's lock (a long migration) past the role's
    `lock_timeout` as this one starts: `run` exited 2, the code of a configuration to
    fix; it waits, saying the store is busy, and opens once the lock is let go."""
    conn: object = other
    await conn.execute(  # type: ignore[attr-defined]
        "SELECT pg_advisory_lock($1, hashtext(''))", LOCK_MIGRATE
    )
    store = PostgresStore(pg_url + "&lock_timeout=200ms")
    stopping = asyncio.Event()
    caplog.set_level(logging.INFO)
    opening = await opening_once_it_waits(store, stopping)
    try:
        await conn.execute(  # type: ignore[attr-defined]
            "SELECT pg_advisory_unlock($1, hashtext(''))", LOCK_MIGRATE
        )
        await asyncio.wait_for(opening, 20)
        assert await store.ping()
    finally:
        stopping.set()
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)
        await store.close()
    said = [r.getMessage() for r in caplog.records if r.name.startswith("postflight")]
    assert [line for line in said if line.startswith("the store is busy (")], said
    assert not [line for line in said if "does not answer" in line], said


async def test_a_claim_pass_the_server_refused_says_busy_and_keeps_the_store_up(
    pg_url: str, other: object, caplog: pytest.LogCaptureFixture
) -> None:
    """The watcher's claim (its write every turn) meeting deadlocks: said once, 'claiming
    windows: the store is busy, retried', `postflight_store_up` never 0, and the window
    claimed once they pass."""
    store = await opened(pg_url)
    conn: object = other
    await conn.execute(  # type: ignore[attr-defined]
        "CREATE SEQUENCE refusals; CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN IF nextval('refusals') <= 3 THEN RAISE EXCEPTION 'deadlock as a test'"
        " USING ERRCODE = 'deadlock_detected'; END IF; RETURN NEW; END $$;"
        " CREATE TRIGGER refuse BEFORE UPDATE ON windows FOR EACH ROW"
        " WHEN (NEW.lease_owner IS NOT NULL) EXECUTE FUNCTION refuse()"
    )
    await store.cancel_window(WINDOW.id, 101.0)  # `opened`'s, of another time: not watched
    now = time.time()
    made = dataclasses.replace(
        WINDOW, id="dep_claimed", deployed_at=now, ends_at=now + 60, created_at=now
    )
    await store.create_window(made)
    sessions = TargetSessions()
    # watcher_of is annotated for the SQLite store its own module uses: it takes any Store
    watcher = watcher_of(store, sessions)  # type: ignore[arg-type]
    store_up = store_up_values(watcher)
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(watcher.run())
    try:
        for _ in range(600):
            refused = await conn.fetchval(  # type: ignore[attr-defined]
                "SELECT last_value FROM refusals"
            )
            if refused > 3 and store_up:
                break
            assert not task.done()
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"refused {refused} times, store_up set to {store_up}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sessions.aclose()
        await store.close()
    said = [r.getMessage() for r in caplog.records if r.name.startswith("postflight")]
    busy = [line for line in said if line.startswith("claiming windows: the store is busy")]
    assert len(busy) == 1 and "deadlock as a test" in busy[0], said
    assert not [line for line in said if "does not answer" in line], said
    assert store_up and 0 not in store_up, store_up
