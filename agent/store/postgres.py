"""The shared store: PostgreSQL through an asyncpg pool, so several replicas can share windows.

Semantics are those of `agent.store.sqlite` (the reference), with what sharing needs on top:

- Every multi-statement change runs in one transaction on one pooled connection, so a
  crash (of the process or of the server) leaves either all of it or none.
- Replicas coordinate through rows, never through memory: `claim_windows` takes only
  rows whose lease lapsed (or that are free or already ours) with `FOR UPDATE SKIP
  LOCKED`, so two replicas claiming at the same instant never both hold a window and
  never wait on each other; `create_window` takes a per-environment advisory lock so
  two replicas registering deploys of one environment cannot leave two windows
  watching it.
- JSON is stored as TEXT, not jsonb: jsonb rejects the NaN and Infinity that
  `json.dumps` writes (a statistic can be NaN) and reorders object keys; TEXT keeps
  exactly the bytes SQLite keeps, so both stores answer identically.
- Times are `double precision` UNIX seconds, like SQLite's REAL.
- Schema changes are forward migrations numbered in `MIGRATIONS`, applied under an
  advisory lock (replicas may start together); a schema newer than this code is refused.
- Connection failures surface as `StoreError` naming the server (host, port, database),
  never the password.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg  # type: ignore[import-untyped]

from agent.records import (
    DeliveryAttempt,
    DeployWindow,
    IdempotentResponse,
    Page,
    RollbackIntent,
    RoundRecord,
    WindowCreated,
    WindowState,
)
from agent.store.base import Conflict, StoreError
from agent.store.sqlite import decode_cursor, encode_cursor

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE windows (
        id TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        version TEXT NOT NULL,
        previous_version TEXT,
        commit_sha TEXT,
        labels TEXT NOT NULL,
        state TEXT NOT NULL,
        deployed_at DOUBLE PRECISION NOT NULL,
        ends_at DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        rounds INTEGER NOT NULL DEFAULT 0,
        verdict TEXT,
        baseline TEXT,
        ended_at DOUBLE PRECISION,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION
    );
    CREATE INDEX windows_by_env_state ON windows (environment, state);
    CREATE INDEX windows_by_created ON windows (created_at DESC, id DESC);
    CREATE INDEX windows_watching ON windows (created_at, id) WHERE state = 'watching';
    CREATE TABLE rounds (
        window_id TEXT NOT NULL REFERENCES windows(id),
        number INTEGER NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        summary TEXT NOT NULL,
        PRIMARY KEY (window_id, number)
    );
    CREATE TABLE rollbacks (
        window_id TEXT PRIMARY KEY REFERENCES windows(id),
        state TEXT NOT NULL,
        body TEXT NOT NULL,
        requested_at DOUBLE PRECISION NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_status INTEGER,
        last_error TEXT,
        next_attempt_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION
    );
    CREATE TABLE deliveries (
        window_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        status INTEGER,
        error TEXT,
        duration_s DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (window_id, attempt)
    );
    CREATE TABLE alerts (
        window_id TEXT NOT NULL,
        event TEXT NOT NULL,
        claimed_at DOUBLE PRECISION NOT NULL,
        result TEXT NOT NULL DEFAULT 'claimed',
        detail TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (window_id, event)
    );
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE probe_summaries (
        environment TEXT NOT NULL,
        check_name TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE INDEX probe_summaries_by_env ON probe_summaries (environment, at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# Advisory-lock namespaces (the first key of pg_advisory_xact_lock(int, int)), so our
# locks cannot collide with another application's on a shared server.
_LOCK_MIGRATE = 0x5046_0001  # "PF" 1: one replica migrates at a time
_LOCK_ENVIRONMENT = 0x5046_0002  # "PF" 2: create_window per environment (hashtext)

_WINDOW_COLUMNS = (
    "id, environment, version, previous_version, commit_sha, labels, state, deployed_at,"
    " ends_at, created_at, rounds, verdict, baseline, ended_at, lease_owner, lease_until"
)
_ROLLBACK_COLUMNS = (
    "window_id, state, body, requested_at, attempts, last_status, last_error,"
    " next_attempt_at, finished_at"
)

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
)


def describe_url(url: str) -> str:
    """`host:port/database` of a PostgreSQL URL, for messages: never the user's password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable PostgreSQL URL)"
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        query = parse_qs(parts.query)
        hosts = (query.get("host") or ["localhost"])[0]
        ports = query.get("port")
        if ports:
            hosts += f":{ports[0]}"
    database = unquote(parts.path.lstrip("/")) or "(default database)"
    return f"{hosts}/{database}"


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


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _text(value: str | None) -> str | None:
    """PostgreSQL TEXT cannot hold NUL; diagnostics (errors, details) may, from a body."""
    return None if value is None else value.replace("\x00", "\ufffd")


def _window(row: Sequence[Any]) -> DeployWindow:
    return DeployWindow(
        id=row[0],
        environment=row[1],
        version=row[2],
        previous_version=row[3],
        commit=row[4],
        labels=json.loads(row[5]),
        state=row[6],
        deployed_at=row[7],
        ends_at=row[8],
        created_at=row[9],
        rounds=row[10],
        verdict=_loads(row[11]),
        baseline=_loads(row[12]),
        ended_at=row[13],
        lease_owner=row[14],
        lease_until=row[15],
    )


def _rollback(row: Sequence[Any]) -> RollbackIntent:
    return RollbackIntent(
        window_id=row[0],
        state=row[1],
        body=row[2],
        requested_at=row[3],
        attempts=row[4],
        last_status=row[5],
        last_error=row[6],
        next_attempt_at=row[7],
        finished_at=row[8],
    )


class PostgresStore:
    """`Store` on a PostgreSQL database shared by every replica (see the module docstring)."""

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

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        return cls(url)

    # connection handling -------------------------------------------------------

    def _unavailable(self, exc: BaseException, doing: str) -> NoReturn:
        """Raise StoreError for `exc`, naming the server and scrubbing the password."""
        message = str(exc) or type(exc).__name__
        password = _password(self.url)
        leaked = False
        # asyncpg does not echo passwords today; this holds even if a driver update did
        for secret in {password, unquote(password)} if password else set():
            if secret in message:
                message = message.replace(secret, "***")
                leaked = True
        error = StoreError(f"{doing} PostgreSQL store at {self.where}: {message}")
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

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=5.0)
        except (TimeoutError, *_UNAVAILABLE, asyncpg.PostgresError):
            # the server is gone or a connection is stuck: drop the sockets
            pool.terminate()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; outages become StoreError, everything else propagates."""
        pool = self._pool
        if pool is None:
            raise StoreError("the store is not open")
        try:
            async with pool.acquire(timeout=self.connect_timeout) as conn:
                yield conn
        except asyncpg.UniqueViolationError as exc:
            # SQLite raises IntegrityError here (e.g. two requests racing on one
            # idempotency key); Conflict is a StoreError the API already understands.
            raise Conflict(f"{exc.constraint_name or 'unique constraint'}: {exc}") from exc
        except ValueError:
            # asyncpg's client-side DataError (an argument of the wrong type) is an
            # InterfaceError too, but it is a bug, not an outage: let it show as one
            raise
        except _UNAVAILABLE as exc:
            self._unavailable(exc, "cannot reach")

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Any]:
        """One transaction (READ COMMITTED) on one connection: all of it or none."""
        async with self._connection() as conn, conn.transaction():
            yield conn

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        async with self._connection() as conn:
            return list(await conn.fetch(sql, *params))

    async def _fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        async with self._connection() as conn:
            return await conn.fetchrow(sql, *params)

    async def _migrate(self) -> None:
        async with self._tx() as conn:
            # Replicas starting together take turns; the lock ends with the transaction.
            await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", _LOCK_MIGRATE)
            await conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            value = await conn.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
            current = int(value) if value is not None else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the store's schema is version {current}, newer than this Postflight"
                    f" understands ({SCHEMA_VERSION}); upgrade Postflight"
                )
            for script in MIGRATIONS[current:]:
                await conn.execute(script)  # no arguments: several statements at once
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', $1)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                str(SCHEMA_VERSION),
            )

    async def ping(self) -> bool:
        """True when a query round-trips; False (never an exception) otherwise."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await self._fetchone("SELECT 1") is not None
        except Exception:
            return False

    # windows -------------------------------------------------------------------

    async def create_window(
        self, window: DeployWindow, idempotency: IdempotentResponse | None = None
    ) -> WindowCreated:
        async with self._tx() as conn:
            # Without this lock two replicas registering deploys of one environment would
            # each supersede the old window and both new ones would stay watching.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                _LOCK_ENVIRONMENT,
                window.environment,
            )
            rows = await conn.fetch(
                f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE environment = $1 AND state = $2"
                " ORDER BY created_at, id FOR UPDATE",
                window.environment,
                "watching",
            )
            superseded = [_window(r) for r in rows]
            for old in superseded:
                old.state = "superseded"
                old.ended_at = window.created_at
                await conn.execute(
                    "UPDATE windows SET state = 'superseded', ended_at = $1, lease_owner = NULL"
                    " WHERE id = $2",
                    window.created_at,
                    old.id,
                )
            await conn.execute(
                f"INSERT INTO windows ({_WINDOW_COLUMNS}) VALUES"
                " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                window.id,
                window.environment,
                window.version,
                window.previous_version,
                window.commit,
                json.dumps(window.labels),
                window.state,
                window.deployed_at,
                window.ends_at,
                window.created_at,
                window.rounds,
                _dumps(window.verdict),
                _dumps(window.baseline),
                window.ended_at,
                window.lease_owner,
                window.lease_until,
            )
            if idempotency is not None:
                await conn.execute(
                    "INSERT INTO idempotency (key, request_hash, status, body, created_at)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    idempotency.key,
                    idempotency.request_hash,
                    idempotency.status,
                    json.dumps(idempotency.body),
                    window.created_at,
                )
        return WindowCreated(window=window, superseded=superseded)

    async def idempotent_response(self, key: str) -> IdempotentResponse | None:
        row = await self._fetchone(
            "SELECT key, request_hash, status, body FROM idempotency WHERE key = $1", (key,)
        )
        if row is None:
            return None
        return IdempotentResponse(row[0], row[1], row[2], json.loads(row[3]))

    async def get_window(self, window_id: str) -> DeployWindow | None:
        row = await self._fetchone(
            f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE id = $1", (window_id,)
        )
        return _window(row) if row else None

    async def list_windows(
        self,
        *,
        environment: str | None = None,
        state: WindowState | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        where: list[str] = []
        params: list[Any] = []

        def arg(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if environment is not None:
            where.append(f"environment = {arg(environment)}")
        if state is not None:
            where.append(f"state = {arg(state)}")
        if cursor is not None:
            created_at, window_id = decode_cursor(cursor)
            at = arg(created_at)
            where.append(f"(created_at < {at} OR (created_at = {at} AND id < {arg(window_id)}))")
        sql = f"SELECT {_WINDOW_COLUMNS} FROM windows"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY created_at DESC, id DESC LIMIT {arg(limit + 1)}"
        rows = await self._fetchall(sql, params)
        items = [_window(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit and items:
            next_cursor = encode_cursor(items[-1].created_at, items[-1].id)
        return Page(items=items, next_cursor=next_cursor)

    async def claim_windows(self, owner: str, now: float, lease_s: float) -> list[DeployWindow]:
        async with self._tx() as conn:
            # SKIP LOCKED: a row another replica is claiming (or renewing, or finishing)
            # right now is left to it instead of waited for; the WHERE is re-checked on
            # the latest committed row, so a lease taken a moment ago is never stolen.
            await conn.execute(
                "WITH claimable AS ("
                " SELECT id FROM windows WHERE state = 'watching'"
                " AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $2)"
                " ORDER BY created_at, id FOR UPDATE SKIP LOCKED)"
                " UPDATE windows AS w SET lease_owner = $1, lease_until = $3"
                " FROM claimable WHERE w.id = claimable.id",
                owner,
                now,
                now + lease_s,
            )
            # What we hold: also rows skipped above only because our own round was writing
            # them at that instant, as long as our lease on them is still valid. A lapsed
            # lease of ours that was skipped is being taken over by another replica right
            # now: reporting it would have two replicas watching one window.
            rows = await conn.fetch(
                f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE state = 'watching'"
                " AND lease_owner = $1 AND lease_until >= $2 ORDER BY created_at",
                owner,
                now,
            )
        return [_window(r) for r in rows]

    async def renew_lease(self, window_id: str, owner: str, until: float) -> bool:
        async with self._tx() as conn:
            status = await conn.execute(
                "UPDATE windows SET lease_until = $1 WHERE id = $2 AND lease_owner = $3"
                " AND state = 'watching'",
                until,
                window_id,
                owner,
            )
        return _rowcount(status) == 1

    async def release_lease(self, window_id: str, owner: str) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE windows SET lease_owner = NULL, lease_until = NULL"
                " WHERE id = $1 AND lease_owner = $2",
                window_id,
                owner,
            )

    async def set_baseline(self, window_id: str, baseline: dict[str, Any]) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE windows SET baseline = $1 WHERE id = $2", _dumps(baseline), window_id
            )

    async def record_round(
        self, record: RoundRecord, verdict: dict[str, Any] | None, owner: str | None = None
    ) -> bool:
        async with self._tx() as conn:
            sql = (
                "UPDATE windows SET rounds = $1, verdict = $2 WHERE id = $3 AND state = 'watching'"
            )
            params: list[Any] = [record.number, _dumps(verdict), record.window_id]
            if owner is not None:
                sql += " AND lease_owner = $4"
                params.append(owner)
            if _rowcount(await conn.execute(sql, *params)) != 1:
                return False
            await conn.execute(
                "INSERT INTO rounds (window_id, number, started_at, summary)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (window_id, number) DO UPDATE"
                " SET started_at = excluded.started_at, summary = excluded.summary",
                record.window_id,
                record.number,
                record.started_at,
                json.dumps(record.summary),
            )
            return True

    async def rounds(self, window_id: str) -> list[RoundRecord]:
        rows = await self._fetchall(
            "SELECT window_id, number, started_at, summary FROM rounds WHERE window_id = $1"
            " ORDER BY number",
            (window_id,),
        )
        return [RoundRecord(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def finish_window(
        self,
        window_id: str,
        state: WindowState,
        verdict: dict[str, Any] | None,
        at: float,
        rollback: RollbackIntent | None = None,
    ) -> bool:
        async with self._tx() as conn:
            status = await conn.execute(
                "UPDATE windows SET state = $1, verdict = COALESCE($2, verdict), ended_at = $3,"
                " lease_owner = NULL, lease_until = NULL WHERE id = $4 AND state = 'watching'",
                state,
                _dumps(verdict),
                at,
                window_id,
            )
            if _rowcount(status) != 1:
                return False
            if rollback is not None:
                await conn.execute(
                    "INSERT INTO rollbacks (window_id, state, body, requested_at,"
                    " attempts, next_attempt_at) VALUES ($1, $2, $3, $4, 0, $5)"
                    " ON CONFLICT (window_id) DO NOTHING",
                    rollback.window_id,
                    rollback.state,
                    rollback.body,
                    rollback.requested_at,
                    rollback.next_attempt_at,
                )
            return True

    async def add_rollback(self, intent: RollbackIntent) -> bool:
        async with self._tx() as conn:
            status = await conn.execute(
                "INSERT INTO rollbacks (window_id, state, body, requested_at, attempts,"
                " next_attempt_at) SELECT $1, $2, $3, $4, 0, NULL WHERE EXISTS"
                " (SELECT 1 FROM windows WHERE id = $1 AND state IN"
                " ('passed', 'failed', 'inconclusive'))"
                " ON CONFLICT (window_id) DO NOTHING",
                intent.window_id,
                intent.state,
                intent.body,
                intent.requested_at,
            )
        return _rowcount(status) == 1

    async def set_state(self, window_id: str, state: WindowState, expected: WindowState) -> bool:
        async with self._tx() as conn:
            status = await conn.execute(
                "UPDATE windows SET state = $1 WHERE id = $2 AND state = $3",
                state,
                window_id,
                expected,
            )
        return _rowcount(status) == 1

    async def cancel_window(self, window_id: str, at: float) -> DeployWindow:
        async with self._tx() as conn:
            row = await conn.fetchrow(
                f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE id = $1 FOR UPDATE", window_id
            )
            if row is None:
                raise KeyError(window_id)
            window = _window(row)
            if not window.active:
                raise Conflict(f"deploy {window_id} already ended in state {window.state}")
            await conn.execute(
                "UPDATE windows SET state = 'cancelled', ended_at = $1, lease_owner = NULL,"
                " lease_until = NULL WHERE id = $2",
                at,
                window_id,
            )
        window.state = "cancelled"
        window.ended_at = at
        window.lease_owner = None
        window.lease_until = None
        return window

    # rollback delivery ---------------------------------------------------------

    async def get_rollback(self, window_id: str) -> RollbackIntent | None:
        row = await self._fetchone(
            f"SELECT {_ROLLBACK_COLUMNS} FROM rollbacks WHERE window_id = $1", (window_id,)
        )
        return _rollback(row) if row else None

    async def update_rollback(self, intent: RollbackIntent) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE rollbacks SET state = $1, attempts = $2, last_status = $3,"
                " last_error = $4, next_attempt_at = $5, finished_at = $6 WHERE window_id = $7",
                intent.state,
                intent.attempts,
                intent.last_status,
                _text(intent.last_error),
                intent.next_attempt_at,
                intent.finished_at,
                intent.window_id,
            )
            if intent.state == "delivered":
                # same transaction: "rolled_back" means the webhook accepted it
                await conn.execute(
                    "UPDATE windows SET state = 'rolled_back' WHERE id = $1 AND state = 'failed'",
                    intent.window_id,
                )

    async def record_delivery(self, attempt: DeliveryAttempt) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO deliveries (window_id, attempt, at, status, error, duration_s)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (window_id, attempt) DO UPDATE"
                " SET at = excluded.at, status = excluded.status, error = excluded.error,"
                " duration_s = excluded.duration_s",
                attempt.window_id,
                attempt.attempt,
                attempt.at,
                attempt.status,
                _text(attempt.error),
                attempt.duration_s,
            )

    async def deliveries(self, window_id: str) -> list[DeliveryAttempt]:
        rows = await self._fetchall(
            "SELECT window_id, attempt, at, status, error, duration_s FROM deliveries"
            " WHERE window_id = $1 ORDER BY attempt",
            (window_id,),
        )
        return [DeliveryAttempt(*r) for r in rows]

    async def pending_rollbacks(self) -> list[RollbackIntent]:
        rows = await self._fetchall(
            f"SELECT {_ROLLBACK_COLUMNS} FROM rollbacks WHERE state = 'pending'"
            " ORDER BY requested_at"
        )
        return [_rollback(r) for r in rows]

    # alerts --------------------------------------------------------------------

    async def claim_alert(self, window_id: str, event: str, at: float) -> bool:
        async with self._tx() as conn:
            status = await conn.execute(
                "INSERT INTO alerts (window_id, event, claimed_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (window_id, event) DO NOTHING",
                window_id,
                event,
                at,
            )
        return _rowcount(status) == 1

    async def record_alert(self, window_id: str, event: str, result: str, detail: str) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE alerts SET result = $1, detail = $2 WHERE window_id = $3 AND event = $4",
                result,
                _text(detail[:2000]),
                window_id,
                event,
            )

    async def alert_events(self, window_id: str) -> dict[str, str]:
        rows = await self._fetchall(
            "SELECT event, result FROM alerts WHERE window_id = $1", (window_id,)
        )
        return {r[0]: r[1] for r in rows}

    # background probing --------------------------------------------------------

    async def add_probe_summary(
        self, environment: str, check: str, at: float, summary: dict[str, Any]
    ) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO probe_summaries (environment, check_name, at, summary)"
                " VALUES ($1, $2, $3, $4)",
                environment,
                check,
                at,
                json.dumps(summary),
            )

    async def probe_summaries(
        self, environment: str, since: float, until: float
    ) -> list[tuple[str, float, dict[str, Any]]]:
        rows = await self._fetchall(
            "SELECT check_name, at, summary FROM probe_summaries WHERE environment = $1"
            " AND at >= $2 AND at < $3 ORDER BY at",
            (environment, since, until),
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    async def prune_probe_summaries(self, before: float) -> int:
        async with self._tx() as conn:
            status = await conn.execute("DELETE FROM probe_summaries WHERE at < $1", before)
        return _rowcount(status)
