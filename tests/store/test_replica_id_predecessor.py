"""An agent restarted at once after a kill -9 meets its replica id still held by its
dead predecessor's session (the server not yet done with it): ended and taken, or waited
for within a bound where this role may not end it; a live holder is still refused."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from agent.store import postgres
from agent.store.postgres import PostgresStore, ReplicaIdInUse
from agent.store.session_holder import Holder, _started, session_name, this_process
from agent.store.sql import LOCK_REPLICA
from tests.pg import PgCluster
from tests.pg_proxy import with_netloc
from tests.store.peek import replica_session_ended

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sleeper() -> Iterator[Holder]:
    """A live process of this host, as a holder names it."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        me = this_process()
        started = _started(proc.pid)
        assert me is not None and started is not None
        yield Holder(proc.pid, started, me.place)
    finally:
        proc.kill()
        proc.wait()


def gone() -> Holder:
    """A process of this host that has ended."""
    proc = subprocess.Popen(["sleep", "60"])
    me, started = this_process(), _started(proc.pid)
    proc.kill()
    proc.wait()
    assert me is not None and started is not None
    return Holder(proc.pid, started, me.place)


async def holding(url: str, replica_id: str, holder: Holder) -> Any:
    """A session holding `replica_id` as `holder`'s agent did (its name, its lock)."""
    conn = await asyncpg.connect(
        url, server_settings={"application_name": session_name(replica_id, holder)}
    )
    took = await conn.fetchval(
        f"SELECT pg_try_advisory_lock($1, {postgres._REPLICA_KEY})", LOCK_REPLICA, replica_id
    )
    assert took
    return conn


@pytest.mark.parametrize("who", ["gone", "pid used again", "alive", "elsewhere"])
async def test_only_this_hosts_gone_agent_s_session_is_ended_for_its_id(
    pg_url: str, sleeper: Holder, who: str
) -> None:
    """Failed before for "gone" and "pid used again": ReplicaIdInUse naming a dead pid."""
    holder = {
        "gone": gone(),
        "pid used again": dataclasses.replace(sleeper, started=sleeper.started - 1),
        "alive": sleeper,
        "elsewhere": dataclasses.replace(gone(), place="00000000"),
    }[who]
    old = await holding(pg_url, "a", holder)
    store = PostgresStore(pg_url)
    try:
        if who in ("alive", "elsewhere"):
            with pytest.raises(
                ReplicaIdInUse,
                match=rf"held by another live agent .*\(postflight a pid {holder.pid} from",
            ):
                await store.hold_replica_id("a")
            assert not old.is_closed()
        else:
            assert await store.hold_replica_id("a") == "a"
            await replica_session_ended(pg_url, old.get_server_pid())
    finally:
        await store.close()
        old.terminate()


async def test_a_role_that_may_not_end_the_gone_agent_s_session_waits_for_it_within_a_bound(
    pg_cluster: PgCluster,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A role that may not end another's session (pg_terminate_backend refused) waits
    for the server to end it, logged; past `PREDECESSOR_WAIT_S` the id is said held,
    naming what to do (exit 2 at start)."""
    admin = await asyncpg.connect(pg_cluster.url())
    await admin.execute(
        "DO $$ BEGIN CREATE ROLE plain LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    schema = pg_url.rsplit("search_path=", 1)[1]
    await admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO plain')  # its store's key
    await admin.close()
    plain = with_netloc(pg_url, f"plain@{pg_cluster.host}:{pg_cluster.port}")
    old = await holding(pg_url, "a", gone())  # the superuser's: not plain's to end
    monkeypatch.setattr(postgres, "PREDECESSOR_WAIT_S", 0.5)
    store = PostgresStore(plain)
    caplog.set_level(logging.INFO, logger="postflight")
    try:
        with pytest.raises(
            ReplicaIdInUse, match=r"has not ended that session within 0 s .*pg_terminate_backend"
        ):
            await store.hold_replica_id("a")
        monkeypatch.setattr(postgres, "PREDECESSOR_WAIT_S", 20.0)
        caplog.clear()
        taking = asyncio.create_task(store.hold_replica_id("a"))
        await asyncio.sleep(0.5)
        assert not taking.done()
        old.terminate()  # the server hears of the client's end at last
        assert await taking == "a"
        assert [
            r.levelname for r in caplog.records if "may not end that session" in r.getMessage()
        ] == ["WARNING"]
    finally:
        await store.close()
        old.terminate()
