"""The shared store: PostgreSQL through an asyncpg pool, so several replicas can share windows.

Only what PostgreSQL does its own way lives here; the schema and every method are
`agent.store.sql`'s. What sharing needs on top:

- Each transaction runs on one pooled connection (READ COMMITTED).
- Replicas coordinate through rows, never through memory: `claim_windows` takes rows
  with `FOR UPDATE SKIP LOCKED`, so two replicas claiming at the same instant never
  both hold a window and never wait on each other; `create_window` and migrations take
  advisory locks (per environment; one migrator at a time).
- `$n` placeholders: the portable SQL's `?` are numbered on the way in.
- Connection failures surface as `StoreError` naming the server (host, port, database),
  never the password; a unique violation is a `Conflict`, as on SQLite; a transaction the
  server refuses for now (a deadlock, a serialization failure, a lock or statement
  timeout) is a `StoreError` too, retried as an outage, never counted as a bug (a
  `StoreBusy` but for the statement timeout: the store is up, it refused one transaction).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

import asyncpg

from agent.store.base import Conflict, StoreBusy, StoreError, StoreUnreachable
from agent.store.location import describe_url
from agent.store.session_holder import dead_here, named_holder, session_name, shown_name
from agent.store.sql import LOCK_REPLICA, SCHEMA_VERSION, Connection, SqlStore
from agent.store.ssl_ask import retrieve_ssl_ask_answers

__all__ = ["SCHEMA_VERSION", "PostgresStore", "describe_url"]

# Errors that mean "the server cannot answer" (down, unreachable, refusing us, a pool
# being closed) as opposed to a bug in a query: these become StoreError, which the
# contract reserves for "the store cannot answer", so callers treat an outage as one.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.InterfaceError,
    # a pooled connection the server dropped mid-operation (a restart) can be handed out
    # in that state: "cannot switch to state 11; another operation (2) is in progress"
    # reached GET /v1/deploys as a 500 in a live audit; the pool replaces it
    asyncpg.exceptions.InternalClientError,
    # a server that takes no writes now (a primary stepping down in a failover, reached
    # again as a standby), as SQLite's read-only file: a rollback's 2xx whose record it
    # refused was left pending as a bug's, and sent again once resumed
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)

_REFUSED_FOR_NOW: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.TransactionRollbackError,  # a serialization failure, a deadlock
    asyncpg.exceptions.LockNotAvailableError,  # a lock wait past `lock_timeout`
)
"""A server that answered but refused the transaction for now, as PostgreSQL says to
retry (its statement timeout's cancel is `OperatorInterventionError`'s, above): a
`StoreBusy`, retried as an outage is, the store still said up. As asyncpg's own they
were a bug's: a watch whose round write met a deadlock three times ended its window as
a bug of the store."""

log = logging.getLogger("postflight.store")

retrieve_ssl_ask_answers()  # a connection cut as it is made leaves asyncio no error to log

REPLICA_LOOK_S = 5.0
"""How often an agent looks that the session holding its replica id is still there."""


LOOK_S = 1.0
"""How long an operation waits on the store before the agent asks whether the server
answers at all, and again as long as it waits."""

PROBE_S = 3.0
"""How long a new connection may take to be answered, of the time the agent's loop could
wait (`LOOK_STEP_S`), before the server is taken as not answering (stopped, frozen, its
host gone): the operations waiting on it end as an outage. Its pooled connections'
sockets stay open then, so nothing else said so before the command timeout (30 s; 40 s
with asyncpg's cancel, 10 s for a new connection), where an API request's 503 and a
pipeline waited it out."""


LOOK_STEP_S = 0.1
"""The look's wait is counted in steps this long (`PostgresStore._connects`): a step the
loop ran late, stalled, counts only its own length."""


T = TypeVar("T")


async def _counted_wait(task: asyncio.Future[Any], step: float) -> float:
    """Wait up to `step` for `task`: the time it counts of the loop's wait, its own length
    at most when the loop ran it late (stalled) (`within_loop_wait`, the look's)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait({task}, timeout=step)
    return min(loop.time() - began, step)


async def within_loop_wait(awaitable: Awaitable[T], limit: float) -> T:
    """`awaitable`, given up (`TimeoutError`, it cancelled) once it has waited `limit` of
    the time the agent's loop could wait, counted as the look counts (`LOOK_STEP_S`).
    Why: on the loop's clock (`asyncio.timeout`), a loop stalled past `limit` as it
    waited (a GC pause, a blocking callback, a busy host) read the live server's answer
    too late: a readiness ping said the store down once, the replica id's session was cut."""
    task = asyncio.ensure_future(awaitable)
    waited = 0.0
    try:
        while not task.done():
            if waited >= limit:
                raise TimeoutError
            waited += await _counted_wait(task, min(LOOK_STEP_S, limit - waited))
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})


class ReplicaIdInUse(StoreError):
    """Another live agent holds this agent's replica id on the shared store."""


class _PredecessorEnding(StoreError):
    """The session holding this agent's replica id is its own dead predecessor's (this
    host's agent under that id, killed): ended if this role may, else waited for."""

    def __init__(self, message: str, refused: str | None) -> None:
        super().__init__(message)
        self.refused = refused
        """Why the server would not end it (this role may not), None when it did."""


PREDECESSOR_WAIT_S = 30.0
"""How long a start waits for its dead predecessor's session to end before saying the id
is held (exit 2): past the 25 s the server's keepalives take to end a session whose client
went silent, as this agent asks of them; a role that may end it need not wait."""


class _OwnSessionEnding(StoreError):
    """The session holding this agent's replica id is the one this agent cut, which the
    server has not ended yet: taken again once it has, not another agent's."""


_REPLICA_KEY = (
    "hashtext(CASE WHEN COALESCE(current_schema(), 'public') = 'public' THEN $2"
    " ELSE current_schema() || '/' || $2 END)"
)
"""A replica id's lock key: the id within its store. Advisory locks are the database's,
and a store is a schema of it (the URL's `search_path`): two agents of two stores in one
database (staging's and production's, each `POSTFLIGHT_REPLICA_ID=web-1`) refused each
other's id, as a test suite's agents on one server did (`ReplicaIdInUse` from a test
before's agent). The default schema keeps the bare id: the key every earlier version
takes, so a rolling upgrade still meets an older agent under the same id."""

_HOLDER = f"""
SELECT a.pid, a.application_name, a.client_addr, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid = $1::bigint AND l.objid = {_REPLICA_KEY}::bigint & 4294967295
LIMIT 1
"""
"""Who holds a replica id's lock (`pg_locks` gives a two-key lock's keys as oids)."""


_NO_ANSWER: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
"""Of those, the server not answering at all: not a refused login or an unknown database."""

_WAIT_FOR: tuple[type[BaseException], ...] = (
    *_NO_ANSWER,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)
"""What is worth waiting for at start (`StoreUnreachable`): no answer, or a server that
takes no writes now (the old primary in a failover, now a standby), which the schema
check at open needs. An agent restarted then exited 2, a configuration to fix, and
stayed down (`tests/store/test_open_read_only.py`)."""


def _cut(exc: BaseException) -> bool:
    """True when `exc` arose from the server giving no answer: a server that cut the
    connection mid-transaction (a failover, a restart) fails the transaction's exit with
    asyncpg's InterfaceError ("the underlying connection is closed"), which hides the
    cut in its context (the cut itself, or asyncpg's "cannot switch to state 11", a
    pooled connection the server dropped); still an outage to wait out at open, not a
    configuration to fix."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not loop
        if seen is None:
            return False
        if isinstance(seen, (*_NO_ANSWER, asyncpg.exceptions.InternalClientError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _gone(conn: Any) -> bool:
    """True when the server closed `conn` (a pooled connection still checked out) under
    its user: asyncpg has detached it from the pool, and a query on it raised a bare
    InterfaceError ("cannot call Connection.fetch(): connection has been released back
    to the pool"), the cut itself (a failover's, as `open()` ran) not in its chain."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _rowcount(status: str) -> int:
    """Rows an INSERT/UPDATE/DELETE touched, from asyncpg's command tag ("UPDATE 3")."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """`?` → `$1, $2, …` (our SQL never has a `?` inside a literal)."""
    counter = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


@dataclass
class _Connection:
    """`agent.store.sql.Connection` on an asyncpg connection."""

    conn: Any  # asyncpg.Connection (asyncpg ships no type information)

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self.conn.execute(numbered(sql), *args)
        return _rowcount(status)

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        return list(await self.conn.fetch(numbered(sql), *args))


class PostgresStore(SqlStore):
    """`Store` on a PostgreSQL database shared by every replica (see the module docstring)."""

    ROW_LOCK = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.where = describe_url(url)
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: Any = None  # asyncpg.Pool (asyncpg ships no type information)
        self._replica: Any = None  # asyncpg.Connection holding our replica id's lock
        self._replica_keeper: asyncio.Task[None] | None = None
        self._replica_id = ""
        """The replica id held (`hold_replica_id`)."""
        self._probe: asyncio.Task[bool] | None = None
        """The look in flight at whether the server answers (`_answers`), shared."""
        self._looked_at = 0.0
        """When the last look ended (the loop's clock)."""

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        return cls(url)

    # connection handling -------------------------------------------------------

    def _unavailable(
        self, exc: BaseException, doing: str, *, lost: bool = False, busy: bool = False
    ) -> NoReturn:
        """Raise StoreError for `exc`, naming the server and scrubbing the password;
        `StoreUnreachable` (worth waiting for) when the server gave no answer or cut the
        connection in use (`lost`); `StoreBusy` when it refused one transaction (`busy`)."""
        message = str(exc) or type(exc).__name__
        password = _password(self.url)
        leaked = False
        # asyncpg does not echo passwords today; this holds even if a driver update did
        for secret in {password, unquote(password)} if password else set():
            if secret in message:
                message = message.replace(secret, "***")
                leaked = True
        kind: type[StoreError] = StoreError
        if busy:
            kind = StoreBusy
        elif lost or isinstance(exc, _WAIT_FOR):
            kind = StoreUnreachable
        error = kind(f"{doing} PostgreSQL store at {self.where}: {message}")
        if leaked:
            raise error from None
        raise error from exc

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
            )
            await self._migrate()
        except StoreError:
            await self.close()
            raise
        except (*_UNAVAILABLE, ValueError, asyncpg.PostgresError) as exc:
            await self.close()
            self._unavailable(exc, "cannot open")

    async def hold_replica_id(self, *replica_ids: str) -> str:
        """Hold the first of `replica_ids` no live agent holds, for this process's life
        (until `close`), and return it; raise `ReplicaIdInUse` naming the live agent that
        holds the first when every one is held: two agents under one id (two on a host,
        both named by the hostname) each took the other's leases as its own, and both
        watched a window or sent its rollback. A session advisory lock on a connection of
        its own: it ends with the holder's session, at once when its process dies; the
        server's keepalives end the session of a holder whose host went down within about
        25 s. A session the store cut (a restart, a failover) is taken again once the
        store answers; an agent that finds its id taken meanwhile says so (it cannot be
        refused any more)."""
        if self._replica_keeper is not None:
            return self._replica_id
        refused: ReplicaIdInUse | None = None
        for replica_id in replica_ids:
            try:
                await self._take_from_predecessor(replica_id)
            except ReplicaIdInUse as exc:
                refused = refused or exc
                continue
            self._replica_id = replica_id
            self._held_as(replica_id)
            self._replica_keeper = asyncio.create_task(
                self._keep_replica_id(replica_id), name="replica-id"
            )
            return replica_id
        if refused is None:
            raise ValueError("no replica id to hold")
        if len(replica_ids) > 1:
            raise ReplicaIdInUse(f"{refused} (so is every id up to {replica_ids[-1]!r})")
        raise refused

    async def _take_from_predecessor(self, replica_id: str) -> None:
        """Take `replica_id` at start; a session of this host's agent that held it and is
        gone (a kill -9 and a restart at once, the server not yet done with the old
        session) is ended and waited for, up to `PREDECESSOR_WAIT_S`, logged, where the
        start exited 2 naming a dead pid as another live agent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PREDECESSOR_WAIT_S
        step, said = LOOK_STEP_S, False
        while True:
            try:
                await self._take_replica_id(replica_id)
            except _PredecessorEnding as exc:
                if loop.time() >= deadline:
                    raise ReplicaIdInUse(
                        f"{exc}, and the server has not ended that session within"
                        f" {PREDECESSOR_WAIT_S:.0f} s ({exc.refused or 'it was asked to'}):"
                        " end it with pg_terminate_backend as a role that may"
                    ) from None
                if not said and exc.refused:
                    log.warning(
                        "%s; this role may not end that session (%s): waiting up to %.0f s"
                        " for the server to",
                        exc,
                        exc.refused,
                        PREDECESSOR_WAIT_S,
                    )
                elif not said:
                    log.info("%s: ending it and taking the id again", exc)
                said = True
                await asyncio.sleep(step)
                step = min(2 * step, 1.0)
                continue
            return

    async def _take_replica_id(self, replica_id: str, cut: int | None = None) -> None:
        """Take `replica_id`'s lock on a connection of its own; `cut`: the server pid of
        the session this agent held it on and cut, which may hold it still (the server
        ends a session whose client closed it as it gets round to it, a stuck or
        unreachable one only at its keepalives' end): ended, and `_OwnSessionEnding`."""
        try:
            conn = await asyncpg.connect(
                self.url,
                timeout=self.connect_timeout,
                server_settings={
                    "application_name": session_name(replica_id),
                    "tcp_keepalives_idle": "10",
                    "tcp_keepalives_interval": "5",
                    "tcp_keepalives_count": "3",
                },
            )
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            self._unavailable(exc, "cannot reach")
        try:
            held = await conn.fetchval(
                f"SELECT pg_try_advisory_lock($1, {_REPLICA_KEY})", LOCK_REPLICA, replica_id
            )
            holder = None if held else await conn.fetchrow(_HOLDER, LOCK_REPLICA, replica_id)
            backend: int | None = None if holder is None else holder["pid"]
            own = backend is not None and backend == cut
            gone = None if holder is None else named_holder(holder["application_name"] or "")
            gone = gone if gone is not None and dead_here(gone) else None
            refused: str | None = None
            if own or gone is not None:
                try:
                    await conn.fetchval("SELECT pg_terminate_backend($1)", backend)
                except asyncpg.PostgresError as exc:  # not ours to end: waited
                    refused = str(exc) or type(exc).__name__
        except BaseException as exc:
            conn.terminate()
            if isinstance(exc, (*_UNAVAILABLE, asyncpg.PostgresError)):
                self._unavailable(exc, "cannot reach", lost=True)
            raise
        if held:
            self._replica = conn
            return
        await conn.close()
        if own:
            raise _OwnSessionEnding(f"replica id {replica_id!r}: the session cut still holds it")
        if gone is not None:
            raise _PredecessorEnding(
                f"replica id {replica_id!r} was held by this host's agent pid {gone.pid},"
                f" which is gone, its session (server pid {backend}) not yet ended",
                refused,
            )
        by = ""
        if holder is not None:
            by = f" ({shown_name(holder['application_name'] or '') or 'a session'}"
            by += f" from {holder['client_addr']}" if holder["client_addr"] else ""
            by += f", since {holder['backend_start']:%Y-%m-%d %H:%M:%S %Z})"
        raise ReplicaIdInUse(
            f"replica id {replica_id!r} is held by another live agent on the PostgreSQL"
            f" store at {self.where}{by}: give each agent on one host a name of its own"
            " with POSTFLIGHT_REPLICA_ID"
        )

    async def _keep_replica_id(self, replica_id: str) -> None:
        """Looks at the held session every `REPLICA_LOOK_S`; takes the id again once the
        store cut it, or this agent did (its look unanswered: a stuck or unreachable
        server): that session, still the server's, is ended and waited for, not reported
        as another agent holding the id (it was, naming this agent's own pid)."""
        taken_by_another = False
        cut: int | None = None
        """The server pid of the session this agent cut, until the id is held again."""
        wait = REPLICA_LOOK_S
        ending = LOOK_STEP_S
        while True:
            await asyncio.sleep(wait)
            wait = REPLICA_LOOK_S
            conn = self._replica
            if conn is not None:
                try:
                    await within_loop_wait(conn.fetchval("SELECT 1"), self.connect_timeout)
                    continue
                except (*_UNAVAILABLE, asyncpg.PostgresError):
                    cut = conn.get_server_pid()
                    conn.terminate()
                    self._replica = None
            try:
                await self._take_replica_id(replica_id, cut)
            except _OwnSessionEnding:
                # ended just now, taken again soon; a stuck one ends at its keepalives'
                wait, ending = ending, min(2 * ending, REPLICA_LOOK_S)
            except ReplicaIdInUse as exc:
                if not taken_by_another:
                    taken_by_another = True
                    log.error(
                        "%s; it was taken while the store had cut this agent's session:"
                        " both now take each other's leases as their own, stop one of them",
                        exc,
                    )
            except StoreError:
                continue  # the store is away: looked at again
            else:
                taken_by_another = False
                cut, ending = None, LOOK_STEP_S

    async def close(self) -> None:
        if self._pool is not None and self._replica is not None:
            await self._let_claims_lapse()  # while the replica id is still held
        keeper, self._replica_keeper = self._replica_keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        replica, self._replica = self._replica, None
        if replica is not None:
            replica.terminate()  # the lock ends with the session
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(5.0):
                await pool.close()
        except (TimeoutError, *_UNAVAILABLE, asyncpg.PostgresError):
            # the server is gone or a connection is stuck: drop the sockets
            pool.terminate()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; outages become StoreError, everything else propagates."""
        pool = self._pool
        if pool is None:
            raise StoreError("the store is not open")
        lost = False
        held: list[Any] = []
        try:
            async with asyncio.timeout(None) as deadline:
                watch = asyncio.create_task(self._watch(deadline, held))
                try:
                    # no timeout of its own: a wait behind the pool's busy connections
                    # on a server that answers is no outage (`_watch` ends it when the
                    # server does not); connecting a new one has `connect_timeout`
                    async with pool.acquire() as conn:
                        held.append(conn)
                        try:
                            yield conn
                        except _UNAVAILABLE:
                            lost = _gone(conn)
                            raise
                finally:
                    watch.cancel()
        except asyncpg.UniqueViolationError as exc:
            # SQLite raises IntegrityError here (e.g. two requests racing on one
            # idempotency key); Conflict is a StoreError the API already understands.
            raise Conflict(f"{exc.constraint_name or 'unique constraint'}: {exc}") from exc
        except ValueError:
            # asyncpg's client-side DataError (an argument of the wrong type) is an
            # InterfaceError too, but it is a bug, not an outage: let it show as one
            raise
        except _UNAVAILABLE as exc:
            self._unavailable(exc, "cannot reach", lost=lost or _cut(exc))
        except _REFUSED_FOR_NOW as exc:
            self._unavailable(exc, "transaction refused for now by the", busy=True)

    async def _watch(self, deadline: asyncio.Timeout, held: list[Any]) -> None:
        """Ends the operation as an outage once it has waited `LOOK_S` and the server
        does not answer a new connection (`_answers`): the connection it holds cut (its
        query raises), or its wait for one timed out. A query merely slow (a loaded
        server) waits on: the server answers the look."""
        while True:
            await asyncio.sleep(LOOK_S)
            if await self._answers():
                continue
            if held:
                held[0].terminate()
            else:
                deadline.reschedule(asyncio.get_running_loop().time())
            return

    async def _answers(self) -> bool:
        """Whether the server answers a new connection within `PROBE_S`, even to refuse
        it (too many clients): one look at a time, shared by every operation waiting, and
        its answer for `LOOK_S` after (many slow queries on a loaded server are not a
        connection each a second)."""
        probe = self._probe
        now = asyncio.get_running_loop().time()
        if probe is None or (probe.done() and now - self._looked_at >= LOOK_S):
            probe = self._probe = asyncio.create_task(self._look(), name="store-look")
        return await asyncio.shield(probe)

    async def _look(self) -> bool:
        try:
            return await self._connects()
        finally:
            self._looked_at = asyncio.get_running_loop().time()

    async def _connects(self) -> bool:
        """Whether a new connection is answered within `PROBE_S` of the time the agent's
        loop could wait: counted a `LOOK_STEP_S` at a time, a step the loop ran late
        counting only its own length. Why: counted on the loop's clock, a loop stalled
        past `PROBE_S` as the look waited (a GC pause, a blocking callback, a busy host)
        read the live server's answer too late, and the look called the server away: the
        operation's connection cut, a 503 from a server that answered all along. A
        connection attempt that timed out by its own clock (asyncpg's, `connect_timeout`,
        after a longer stall) is made again while the look has time left."""
        waited = 0.0
        attempt: asyncio.Future[Any] | None = None
        try:
            while waited < PROBE_S:
                if attempt is None:
                    attempt = asyncio.ensure_future(
                        asyncpg.connect(self.url, timeout=self.connect_timeout)
                    )
                waited += await _counted_wait(attempt, min(LOOK_STEP_S, PROBE_S - waited))
                if not attempt.done():
                    continue
                done, attempt = attempt, None
                try:
                    done.result().terminate()
                except TimeoutError:
                    continue  # asyncpg's own clock, stalled past it: looked at again
                except OSError:
                    return False  # refused, unreachable: nothing answers
                except Exception:  # an answer all the same: a refusal, a bad login
                    return True
                return True
            return False
        finally:
            if attempt is not None:
                attempt.cancel()
                await asyncio.wait({attempt})
                if not attempt.cancelled() and attempt.exception() is None:
                    attempt.result().terminate()  # made as it was cut: not left open

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        async with self._connection() as conn:
            yield _Connection(conn)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Connection]:
        async with self._connection() as conn, conn.transaction():
            yield _Connection(conn)

    async def _lock(self, db: Connection, namespace: int, key: str) -> None:
        # the lock is the server's, so it holds across replicas; it ends with the transaction
        await db.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", namespace, key)

    async def store_time(self) -> float | None:
        # the server's clock now, not the transaction's start (`now()`)
        row = await self._fetchone("SELECT extract(epoch FROM clock_timestamp())")
        return None if row is None else float(row[0])

    async def ping(self) -> bool:
        """True when a query round-trips within `connect_timeout` of the time the loop
        could wait; False (never an exception) otherwise."""
        try:
            return (
                await within_loop_wait(self._fetchone("SELECT 1"), self.connect_timeout) is not None
            )
        except Exception:
            return False
