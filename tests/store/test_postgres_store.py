"""PostgreSQL-only: replicas sharing windows through leases, outages, and what errors say.

The shared contract runs in test_store_contract.py; here is what only a server shared by
several processes can get wrong: two replicas claiming at once, a lease lapsing, two
replicas registering deploys of one environment, replicas migrating together, and the
server going away under an open pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from agent.records import DeployWindow, RoundRecord
from agent.store import store_from_url
from agent.store.base import StoreError
from agent.store.postgres import SCHEMA_VERSION, PostgresStore, describe_url
from tests.pg import PgCluster
from tests.pg_proxy import Proxy, with_netloc
from tests.ports import free_port
from tests.store.peek import killed, replica_session_ended

asyncpg = pytest.importorskip("asyncpg")


def window(wid: str, env: str = "production", created: float = 100.0) -> DeployWindow:
    return DeployWindow(
        id=wid,
        environment=env,
        version="v1",
        previous_version="v0",
        commit=None,
        labels={},
        state="watching",
        deployed_at=created,
        ends_at=created + 60,
        created_at=created,
    )


@pytest.fixture
async def replicas(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two independent stores (two pools) on one database: two replicas of the agent."""
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await asyncio.gather(a.open(), b.open())  # they start together: migrations take turns
    yield a, b
    await asyncio.gather(a.close(), b.close())


async def test_schema_lives_where_the_url_says_and_records_its_version(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))  # concurrent first start: no error
    await asyncio.gather(*(s.close() for s in stores))
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT value FROM meta WHERE key = 'schema_version'") == str(
            SCHEMA_VERSION
        )
        public = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert public == 0
    finally:
        await conn.close()


async def test_two_replicas_never_hold_the_same_window(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    ids = [f"dep_{i:02d}" for i in range(24)]
    held: dict[str, set[str]] = {"a": set(), "b": set()}
    now = 1000.0

    async def register() -> None:
        for i, wid in enumerate(ids):
            await (a, b)[i % 2].create_window(window(wid, env=f"env{i}", created=100 + i))
            await asyncio.sleep(0)

    async def replica(store: PostgresStore, owner: str) -> None:
        for _ in range(30):
            got = await store.claim_windows(owner, now, lease_s=30)
            assert all(w.lease_owner == owner and w.lease_until == now + 30 for w in got)
            held[owner].update(w.id for w in got)
            await asyncio.sleep(0)

    await asyncio.gather(register(), *(replica(s, o) for s, o in ((a, "a"), (b, "b")) * 3))
    for store, owner in ((a, "a"), (b, "b")):
        held[owner].update(w.id for w in await store.claim_windows(owner, now, lease_s=30))

    assert held["a"].isdisjoint(held["b"]), held["a"] & held["b"]
    assert held["a"] | held["b"] == set(ids)
    for wid in ids:
        stored = await a.get_window(wid)
        assert stored is not None and wid in held[stored.lease_owner or "?"]


async def test_a_lapsed_lease_is_taken_over(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    for i in range(3):
        await a.create_window(window(f"dep_{i}", env=f"env{i}", created=100 + i))
    held = {w.id: w.fence for w in await a.claim_windows("a", now=1000, lease_s=30)}
    assert len(held) == 3
    assert await b.claim_windows("b", now=1010, lease_s=30) == []
    assert await a.renew_lease("dep_0", held["dep_0"], until=1060)  # only dep_0 is renewed
    # replica a stops renewing the others (it hangs or died): b takes them once lapsed
    taken = await b.claim_windows("b", now=1031, lease_s=30)
    assert [w.id for w in taken] == ["dep_1", "dep_2"]
    assert not await a.renew_lease("dep_1", held["dep_1"], until=1100)
    assert not await a.record_round(RoundRecord("dep_1", 1, 1031.0, {}), None, held["dep_1"])
    assert await b.record_round(RoundRecord("dep_1", 1, 1031.0, {}), None, taken[0].fence)
    assert [w.id for w in await a.claim_windows("a", now=1032, lease_s=30)] == ["dep_0"]


async def test_replicas_racing_for_lapsed_leases_split_them(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    ids = [f"dep_{i:02d}" for i in range(16)]
    for i, wid in enumerate(ids):
        await a.create_window(window(wid, env=f"env{i}", created=100 + i))
    await a.claim_windows("crashed", now=1000, lease_s=30)
    results = await asyncio.gather(
        *(s.claim_windows(o, now=1031, lease_s=30) for s, o in ((a, "a"), (b, "b")) * 4)
    )
    held: dict[str, set[str]] = {"a": set(), "b": set()}
    for owner, got in zip(("a", "b") * 4, results, strict=True):
        held[owner].update(w.id for w in got)
    assert held["a"].isdisjoint(held["b"])
    assert held["a"] | held["b"] == set(ids)


async def test_claiming_skips_a_row_locked_elsewhere_instead_of_waiting(
    replicas: tuple[PostgresStore, PostgresStore], pg_url: str
) -> None:
    a, _ = replicas
    await a.create_window(window("dep_1", env="e1", created=101))
    await a.create_window(window("dep_2", env="e2", created=102))
    conn = await asyncpg.connect(pg_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1 FROM windows WHERE id = 'dep_1' FOR UPDATE")
        got = await asyncio.wait_for(a.claim_windows("a", now=1000, lease_s=30), timeout=5)
        assert [w.id for w in got] == ["dep_2"]
        await tx.rollback()
    finally:
        await conn.close()
    assert [w.id for w in await a.claim_windows("a", 1001, 30)] == ["dep_1", "dep_2"]


async def test_a_lapsed_lease_being_taken_over_is_not_reported_as_held(
    replicas: tuple[PostgresStore, PostgresStore], pg_url: str
) -> None:
    """Replica a's lease lapsed and b is mid-claim (row locked): a must not see it as its."""
    a, _ = replicas
    await a.create_window(window("dep_1"))
    [mine] = await a.claim_windows("a", now=1000, lease_s=30)
    conn = await asyncpg.connect(pg_url)
    try:
        async with conn.transaction():  # "b", between locking the row and committing
            await conn.execute("SELECT 1 FROM windows WHERE id = 'dep_1' FOR UPDATE")
            assert await a.claim_windows("a", now=1031, lease_s=30) == []
            await conn.execute(
                "UPDATE windows SET lease_owner = 'b', lease_until = 1061 WHERE id = 'dep_1'"
            )
    finally:
        await conn.close()
    assert not await a.renew_lease("dep_1", mine.fence, until=1100)


async def test_concurrent_deploys_of_one_environment_leave_one_watching(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    results = await asyncio.gather(
        *((a, b)[i % 2].create_window(window(f"dep_{i:02d}", created=100 + i)) for i in range(12))
    )
    watching = await a.list_windows(environment="production", state="watching")
    assert len(watching.items) == 1
    superseded = [old.id for r in results for old in r.superseded]
    assert len(superseded) == len(set(superseded)) == 11
    assert watching.items[0].id not in superseded


async def test_an_outage_is_a_store_error_and_ping_says_false(
    pg_cluster: PgCluster, pg_url: str
) -> None:
    proxy = Proxy(pg_cluster.port)
    await proxy.start()
    url = with_netloc(pg_url, f"{pg_cluster.user}:s3cret@127.0.0.1:{proxy.port}")
    store = PostgresStore(url, connect_timeout=2, command_timeout=5)
    await store.open()
    try:
        await store.create_window(window("dep_1"))
        assert await store.ping()

        await proxy.stop()
        assert await store.ping() is False
        with pytest.raises(StoreError) as caught:
            await store.get_window("dep_1")
        assert f"127.0.0.1:{proxy.port}" in str(caught.value)
        assert "s3cret" not in str(caught.value)

        await proxy.start(proxy.port)  # the server is back: the pool reconnects
        assert await store.ping()
        assert await store.get_window("dep_1") is not None
    finally:
        await store.close()
        await proxy.stop()


class LeftMidOperation:
    """A pool handing out a connection the server dropped mid-operation (a restart)."""

    @contextlib.asynccontextmanager
    async def acquire(self, **_: object) -> AsyncIterator[object]:
        yield self

    def is_closed(self) -> bool:
        return False  # asyncpg has not seen the drop: it says so only by this error

    async def fetch(self, *args: object) -> list[object]:
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 11; another operation (2) is in progress"
        )


async def test_a_connection_left_mid_operation_by_a_restart_is_an_outage_not_a_bug() -> None:
    """Seen as a 500 of GET /v1/deploys as PostgreSQL stopped under a polling client."""
    store = PostgresStore("postgresql://pf@127.0.0.1:5432/pf")
    store._pool = LeftMidOperation()
    try:
        with pytest.raises(StoreError, match=r"cannot reach PostgreSQL store at 127\.0\.0\.1:5432"):
            await store.get_window("dep_1")
    finally:
        store._pool = None


@pytest.mark.parametrize("where", ["closed port", "missing database"])
async def test_open_names_the_server_never_the_password(pg_cluster: PgCluster, where: str) -> None:
    if where == "closed port":
        netloc, database = f"127.0.0.1:{free_port()}", "pf"
    else:
        netloc, database = f"127.0.0.1:{pg_cluster.port}", "no_such_db"
    url = f"postgresql://{pg_cluster.user}:s3cret@{netloc}/{database}"
    store = PostgresStore(url, connect_timeout=2)
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert f"{netloc}/{database}" in str(caught.value)
    chain: list[BaseException] = []
    exc: BaseException | None = caught.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert not any("s3cret" in str(e) for e in chain)
    assert await store.ping() is False  # never raises


def test_describe_url_never_shows_a_password() -> None:
    assert describe_url("postgresql://u:pw@db.example:6543/postflight") == (
        "db.example:6543/postflight"
    )
    assert describe_url("postgres://u:pw@h1:5432,h2:5433/pf?sslmode=require") == (
        "h1:5432,h2:5433/pf"
    )
    assert describe_url("postgresql:///pf?host=/run/postgresql&port=5433&password=pw") == (
        "/run/postgresql:5433/pf"
    )
    assert describe_url("postgresql://") == "localhost/(default database)"


def test_store_from_url_builds_a_postgres_store() -> None:
    store = store_from_url("postgresql://u:pw@db.example/pf")
    assert isinstance(store, PostgresStore)
    assert store.where == "db.example/pf"


async def test_another_replicas_claim_waits_its_lease_live_or_dead(pg_url: str) -> None:
    """Two live replicas never both send: a claim made under another replica id is taken
    only once its lease lapsed, `orphaned` or not, while that replica lives and after it
    died (nothing this replica holds proves another id's process gone); only the
    replica id's own next process takes it at once."""
    stores = [PostgresStore(pg_url) for _ in range(3)]
    try:
        for store in stores:
            await store.open()
        web1, web2, web1_again = stores
        await web1.hold_replica_id("web-1")
        await web2.hold_replica_id("web-2")
        await web1.create_window(window("dep_1"))
        assert await web1.claim_alert("dep_1", "failed", 100.0, payload="{}")
        for alive in (True, False):
            if not alive:
                await killed(web1)
            assert await web2.unsettled_alerts(claimed_before=100.0, orphaned=True) == []
            assert await web2.take_alert("dep_1", "failed", 101.0, 100.0, orphaned=True) is None
        await web1_again.hold_replica_id("web-1")
        assert await web1_again.take_alert("dep_1", "failed", 101.0, 100.0, orphaned=True)
    finally:
        for store in stores:
            await store.close()


async def test_a_replica_id_is_the_first_of_those_given_that_no_live_agent_holds(
    pg_url: str,
) -> None:
    """An agent not named by POSTFLIGHT_REPLICA_ID is given the hostname and its spares:
    it holds the first free one; every one held refuses it, naming the first's holder."""
    from agent.store.postgres import ReplicaIdInUse

    stores = [PostgresStore(pg_url) for _ in range(3)]
    try:
        assert await stores[0].hold_replica_id("web-1", "web-1-2") == "web-1"
        assert await stores[1].hold_replica_id("web-1", "web-1-2") == "web-1-2"
        assert await stores[1].hold_replica_id("web-1", "web-1-2") == "web-1-2"  # kept
        with pytest.raises(ReplicaIdInUse) as refused:
            await stores[2].hold_replica_id("web-1", "web-1-2")
        said = str(refused.value)
        assert "replica id 'web-1' is held by another live agent" in said
        assert said.endswith("(so is every id up to 'web-1-2')"), said
        held_by = stores[0]._replica.get_server_pid()
        await stores[0].close()
        await replica_session_ended(pg_url, held_by)
        assert await stores[2].hold_replica_id("web-1", "web-1-2") == "web-1"
    finally:
        for store in stores:
            await store.close()


async def test_a_replica_id_is_held_within_its_store_not_across_a_databases_schemas(
    pg_cluster: PgCluster,
) -> None:
    """Two stores in one database (a schema each, the URL's `search_path`: staging's and
    production's agents) each hold `web-1`: advisory locks are the database's, and the
    second was refused as if a live agent held its id. Within one store it is still
    refused, naming the holder."""
    from agent.store.postgres import ReplicaIdInUse

    staging, production = [await pg_cluster.create_database() for _ in range(2)]
    stores = [PostgresStore(url) for url in (staging, production, production)]
    try:
        assert await stores[0].hold_replica_id("web-1") == "web-1"
        assert await stores[1].hold_replica_id("web-1") == "web-1"  # was ReplicaIdInUse
        with pytest.raises(ReplicaIdInUse, match=r"'web-1' is held .* \(postflight web-1 pid"):
            await stores[2].hold_replica_id("web-1")
    finally:
        for store in stores:
            await store.close()


async def test_on_the_default_schema_a_replica_id_meets_an_older_agent_under_it(
    pg_cluster: PgCluster,
) -> None:
    """A store on the database's default schema (no `search_path`) keeps the bare id's key,
    the one every earlier version holds: in a rolling upgrade the new agent is refused an id
    an older live one holds, naming it, as before."""
    import asyncpg

    from agent.store.postgres import ReplicaIdInUse
    from agent.store.sql import LOCK_REPLICA

    older = await asyncpg.connect(
        pg_cluster.url(), server_settings={"application_name": "postflight older"}
    )
    store = PostgresStore(pg_cluster.url())
    try:
        assert await older.fetchval(
            "SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_REPLICA, "web-9"
        )
        with pytest.raises(ReplicaIdInUse, match=r"'web-9' is held .* \(postflight older"):
            await store.hold_replica_id("web-9")
        await older.close()
        assert await store.hold_replica_id("web-9") == "web-9"
    finally:
        await store.close()
        await older.close()
