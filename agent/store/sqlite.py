"""The embedded store: SQLite in WAL mode through aiosqlite (one connection, its own thread).

Every multi-statement change runs in one `BEGIN IMMEDIATE` transaction under an
asyncio lock, so a crash leaves either all of it or none. Schema changes are
forward migrations numbered in `MIGRATIONS`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

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
        deployed_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        created_at REAL NOT NULL,
        rounds INTEGER NOT NULL DEFAULT 0,
        verdict TEXT,
        baseline TEXT,
        ended_at REAL,
        lease_owner TEXT,
        lease_until REAL
    );
    CREATE INDEX windows_by_env_state ON windows (environment, state);
    CREATE INDEX windows_by_created ON windows (created_at DESC, id DESC);
    CREATE TABLE rounds (
        window_id TEXT NOT NULL REFERENCES windows(id),
        number INTEGER NOT NULL,
        started_at REAL NOT NULL,
        summary TEXT NOT NULL,
        PRIMARY KEY (window_id, number)
    );
    CREATE TABLE rollbacks (
        window_id TEXT PRIMARY KEY REFERENCES windows(id),
        state TEXT NOT NULL,
        body TEXT NOT NULL,
        requested_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_status INTEGER,
        last_error TEXT,
        next_attempt_at REAL,
        finished_at REAL
    );
    CREATE TABLE deliveries (
        window_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        at REAL NOT NULL,
        status INTEGER,
        error TEXT,
        duration_s REAL NOT NULL,
        PRIMARY KEY (window_id, attempt)
    );
    CREATE TABLE alerts (
        window_id TEXT NOT NULL,
        event TEXT NOT NULL,
        claimed_at REAL NOT NULL,
        result TEXT NOT NULL DEFAULT 'claimed',
        detail TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (window_id, event)
    );
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE probe_summaries (
        environment TEXT NOT NULL,
        check_name TEXT NOT NULL,
        at REAL NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE INDEX probe_summaries_by_env ON probe_summaries (environment, at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_WINDOW_COLUMNS = (
    "id, environment, version, previous_version, commit_sha, labels, state, deployed_at,"
    " ends_at, created_at, rounds, verdict, baseline, ended_at, lease_owner, lease_until"
)


def encode_cursor(created_at: float, window_id: str) -> str:
    raw = json.dumps([created_at, window_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raise ValueError on anything that is not a cursor we handed out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, window_id = json.loads(raw)
        return float(created_at), str(window_id)
    except Exception as exc:
        raise ValueError("cursor is not valid; use the `next` value of a previous page") from exc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _window(row: sqlite3.Row | tuple[Any, ...]) -> DeployWindow:
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


def _rollback(row: tuple[Any, ...]) -> RollbackIntent:
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


class SqliteStore:
    """`Store` on one SQLite file (WAL: readers never block the writer)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        return cls(url.removeprefix("sqlite:///") or "postflight.db")

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._migrate()
        except (sqlite3.Error, StoreError) as exc:
            await self.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    async def _migrate(self) -> None:
        async with self._tx() as db:
            await db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = await (
                await db.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the store's schema is version {current}, newer than this Postflight"
                    f" understands ({SCHEMA_VERSION}); upgrade Postflight"
                )
            for script in MIGRATIONS[current:]:
                for statement in script.split(";"):
                    if statement.strip():
                        await db.execute(statement)
            await db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = self.db
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            else:
                await db.execute("COMMIT")

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        async with self._lock:
            cursor = await self.db.execute(sql, tuple(params))
            return list(await cursor.fetchall())

    async def _fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def ping(self) -> bool:
        try:
            return await self._fetchone("SELECT 1") is not None
        except (sqlite3.Error, StoreError, ValueError):
            return False

    # windows ---------------------------------------------------------------

    async def create_window(
        self, window: DeployWindow, idempotency: IdempotentResponse | None = None
    ) -> WindowCreated:
        async with self._tx() as db:
            rows = await (
                await db.execute(
                    f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE environment = ? AND state = ?",
                    (window.environment, "watching"),
                )
            ).fetchall()
            superseded = [_window(r) for r in rows]
            for old in superseded:
                old.state = "superseded"
                old.ended_at = window.created_at
                await db.execute(
                    "UPDATE windows SET state = 'superseded', ended_at = ?, lease_owner = NULL"
                    " WHERE id = ?",
                    (window.created_at, old.id),
                )
            await db.execute(
                f"INSERT INTO windows ({_WINDOW_COLUMNS}) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
                ),
            )
            if idempotency is not None:
                await db.execute(
                    "INSERT INTO idempotency (key, request_hash, status, body, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        idempotency.key,
                        idempotency.request_hash,
                        idempotency.status,
                        json.dumps(idempotency.body),
                        window.created_at,
                    ),
                )
        return WindowCreated(window=window, superseded=superseded)

    async def idempotent_response(self, key: str) -> IdempotentResponse | None:
        row = await self._fetchone(
            "SELECT key, request_hash, status, body FROM idempotency WHERE key = ?", (key,)
        )
        if row is None:
            return None
        return IdempotentResponse(row[0], row[1], row[2], json.loads(row[3]))

    async def get_window(self, window_id: str) -> DeployWindow | None:
        row = await self._fetchone(
            f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE id = ?", (window_id,)
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
        if environment is not None:
            where.append("environment = ?")
            params.append(environment)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if cursor is not None:
            created_at, window_id = decode_cursor(cursor)
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params.extend([created_at, created_at, window_id])
        sql = f"SELECT {_WINDOW_COLUMNS} FROM windows"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(limit + 1)
        rows = await self._fetchall(sql, params)
        items = [_window(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit and items:
            next_cursor = encode_cursor(items[-1].created_at, items[-1].id)
        return Page(items=items, next_cursor=next_cursor)

    async def claim_windows(self, owner: str, now: float, lease_s: float) -> list[DeployWindow]:
        async with self._tx() as db:
            await db.execute(
                "UPDATE windows SET lease_owner = ?, lease_until = ?"
                " WHERE state = 'watching' AND (lease_owner IS NULL OR lease_owner = ?"
                " OR lease_until < ?)",
                (owner, now + lease_s, owner, now),
            )
            rows = await (
                await db.execute(
                    f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE state = 'watching'"
                    " AND lease_owner = ? ORDER BY created_at",
                    (owner,),
                )
            ).fetchall()
        return [_window(r) for r in rows]

    async def renew_lease(self, window_id: str, owner: str, until: float) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "UPDATE windows SET lease_until = ? WHERE id = ? AND lease_owner = ?"
                " AND state = 'watching'",
                (until, window_id, owner),
            )
            return cursor.rowcount == 1

    async def release_lease(self, window_id: str, owner: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE windows SET lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ?",
                (window_id, owner),
            )

    async def set_baseline(self, window_id: str, baseline: dict[str, Any]) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE windows SET baseline = ? WHERE id = ?", (_dumps(baseline), window_id)
            )

    async def record_round(
        self, record: RoundRecord, verdict: dict[str, Any] | None, owner: str | None = None
    ) -> bool:
        async with self._tx() as db:
            sql = "UPDATE windows SET rounds = ?, verdict = ? WHERE id = ? AND state = 'watching'"
            params: list[Any] = [record.number, _dumps(verdict), record.window_id]
            if owner is not None:
                sql += " AND lease_owner = ?"
                params.append(owner)
            cursor = await db.execute(sql, params)
            if cursor.rowcount != 1:
                return False
            await db.execute(
                "INSERT OR REPLACE INTO rounds (window_id, number, started_at, summary)"
                " VALUES (?, ?, ?, ?)",
                (record.window_id, record.number, record.started_at, json.dumps(record.summary)),
            )
            return True

    async def rounds(self, window_id: str) -> list[RoundRecord]:
        rows = await self._fetchall(
            "SELECT window_id, number, started_at, summary FROM rounds WHERE window_id = ?"
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
        async with self._tx() as db:
            cursor = await db.execute(
                "UPDATE windows SET state = ?, verdict = COALESCE(?, verdict), ended_at = ?,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ? AND state = 'watching'",
                (state, _dumps(verdict), at, window_id),
            )
            if cursor.rowcount != 1:
                return False
            if rollback is not None:
                await db.execute(
                    "INSERT OR IGNORE INTO rollbacks (window_id, state, body, requested_at,"
                    " attempts, next_attempt_at) VALUES (?, ?, ?, ?, 0, ?)",
                    (
                        rollback.window_id,
                        rollback.state,
                        rollback.body,
                        rollback.requested_at,
                        rollback.next_attempt_at,
                    ),
                )
            return True

    async def add_rollback(self, intent: RollbackIntent) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO rollbacks (window_id, state, body, requested_at,"
                " attempts, next_attempt_at) SELECT ?, ?, ?, ?, 0, NULL WHERE EXISTS"
                " (SELECT 1 FROM windows WHERE id = ? AND state IN"
                " ('passed', 'failed', 'inconclusive'))",
                (
                    intent.window_id,
                    intent.state,
                    intent.body,
                    intent.requested_at,
                    intent.window_id,
                ),
            )
            return cursor.rowcount == 1

    async def set_state(self, window_id: str, state: WindowState, expected: WindowState) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "UPDATE windows SET state = ? WHERE id = ? AND state = ?",
                (state, window_id, expected),
            )
            return cursor.rowcount == 1

    async def cancel_window(self, window_id: str, at: float) -> DeployWindow:
        async with self._tx() as db:
            row = await (
                await db.execute(
                    f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE id = ?", (window_id,)
                )
            ).fetchone()
            if row is None:
                raise KeyError(window_id)
            window = _window(row)
            if not window.active:
                raise Conflict(f"deploy {window_id} already ended in state {window.state}")
            await db.execute(
                "UPDATE windows SET state = 'cancelled', ended_at = ?, lease_owner = NULL,"
                " lease_until = NULL WHERE id = ?",
                (at, window_id),
            )
        window.state = "cancelled"
        window.ended_at = at
        window.lease_owner = None
        window.lease_until = None
        return window

    # rollback delivery -----------------------------------------------------

    _ROLLBACK_COLUMNS = (
        "window_id, state, body, requested_at, attempts, last_status, last_error,"
        " next_attempt_at, finished_at"
    )

    async def get_rollback(self, window_id: str) -> RollbackIntent | None:
        row = await self._fetchone(
            f"SELECT {self._ROLLBACK_COLUMNS} FROM rollbacks WHERE window_id = ?", (window_id,)
        )
        return _rollback(row) if row else None

    async def update_rollback(self, intent: RollbackIntent) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE rollbacks SET state = ?, attempts = ?, last_status = ?, last_error = ?,"
                " next_attempt_at = ?, finished_at = ? WHERE window_id = ?",
                (
                    intent.state,
                    intent.attempts,
                    intent.last_status,
                    intent.last_error,
                    intent.next_attempt_at,
                    intent.finished_at,
                    intent.window_id,
                ),
            )
            if intent.state == "delivered":
                # same transaction: "rolled_back" means the webhook accepted it
                await db.execute(
                    "UPDATE windows SET state = 'rolled_back' WHERE id = ? AND state = 'failed'",
                    (intent.window_id,),
                )

    async def record_delivery(self, attempt: DeliveryAttempt) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT OR REPLACE INTO deliveries (window_id, attempt, at, status, error,"
                " duration_s) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    attempt.window_id,
                    attempt.attempt,
                    attempt.at,
                    attempt.status,
                    attempt.error,
                    attempt.duration_s,
                ),
            )

    async def deliveries(self, window_id: str) -> list[DeliveryAttempt]:
        rows = await self._fetchall(
            "SELECT window_id, attempt, at, status, error, duration_s FROM deliveries"
            " WHERE window_id = ? ORDER BY attempt",
            (window_id,),
        )
        return [DeliveryAttempt(*r) for r in rows]

    async def pending_rollbacks(self) -> list[RollbackIntent]:
        rows = await self._fetchall(
            f"SELECT {self._ROLLBACK_COLUMNS} FROM rollbacks WHERE state = 'pending'"
            " ORDER BY requested_at"
        )
        return [_rollback(r) for r in rows]

    # alerts ----------------------------------------------------------------

    async def claim_alert(self, window_id: str, event: str, at: float) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO alerts (window_id, event, claimed_at) VALUES (?, ?, ?)",
                (window_id, event, at),
            )
            return cursor.rowcount == 1

    async def record_alert(self, window_id: str, event: str, result: str, detail: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE alerts SET result = ?, detail = ? WHERE window_id = ? AND event = ?",
                (result, detail[:2000], window_id, event),
            )

    async def alert_events(self, window_id: str) -> dict[str, str]:
        rows = await self._fetchall(
            "SELECT event, result FROM alerts WHERE window_id = ?", (window_id,)
        )
        return {r[0]: r[1] for r in rows}

    # background probing ----------------------------------------------------

    async def add_probe_summary(
        self, environment: str, check: str, at: float, summary: dict[str, Any]
    ) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO probe_summaries (environment, check_name, at, summary)"
                " VALUES (?, ?, ?, ?)",
                (environment, check, at, json.dumps(summary)),
            )

    async def probe_summaries(
        self, environment: str, since: float, until: float
    ) -> list[tuple[str, float, dict[str, Any]]]:
        rows = await self._fetchall(
            "SELECT check_name, at, summary FROM probe_summaries WHERE environment = ?"
            " AND at >= ? AND at < ? ORDER BY at",
            (environment, since, until),
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    async def prune_probe_summaries(self, before: float) -> int:
        async with self._tx() as db:
            cursor = await db.execute("DELETE FROM probe_summaries WHERE at < ?", (before,))
            return cursor.rowcount
