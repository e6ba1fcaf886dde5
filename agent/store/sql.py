"""One SQL store: the schema, its migrations, the row mappers and every `Store` method, once.

What it must not do: know a driver. A backend (`sqlite.py`, `postgres.py`) supplies
connections that take `?` placeholders and report how many rows a change touched, and
the few clauses that truly differ (row locks, `SKIP LOCKED`, advisory locks). So both
backends answer every call identically, and a fix lands in both at once.

- Every multi-statement change runs in one transaction, so a crash leaves all of it
  or none.
- JSON is stored as TEXT, not jsonb: jsonb rejects the NaN and Infinity `json.dumps`
  writes (a statistic can be NaN) and reorders keys; TEXT keeps exactly the bytes.
- Times are UNIX seconds in `DOUBLE PRECISION` (SQLite reads it as REAL).
- Diagnostics (errors, alert details) may carry a NUL from a response body; PostgreSQL
  TEXT cannot hold one, so both backends store U+FFFD instead.
- Schema changes are forward migrations numbered in `MIGRATIONS`; a schema newer than
  this code is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Protocol

import orjson

from agent.records import (
    DeliveryAttempt,
    DeployWindow,
    Fence,
    GateAsk,
    GateState,
    IdempotentResponse,
    Page,
    PendingGate,
    Remembered,
    RollbackIntent,
    RoundRecord,
    WindowCreated,
    WindowState,
)
from agent.store.base import (
    IN_FLIGHT,
    JOINED_LABELS,
    AlertClaim,
    AlertRetry,
    Conflict,
    Lease,
    OwedRetry,
    ProbeRun,
    SameDeployment,
    StoredProbes,
    StoreError,
    Taken,
    UnsettledAlert,
    same_deploy,
    sha_and_abbreviations,
)
from agent.store.cursor import decode_cursor, encode_cursor

log = logging.getLogger("postflight.store")

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
    CREATE INDEX probe_summaries_by_env ON probe_summaries (environment, at)
    """,
    # claiming scans only the watching windows (PostgreSQL stores had it from version 1)
    "CREATE INDEX IF NOT EXISTS windows_watching ON windows (created_at, id)"
    " WHERE state = 'watching'",
    # fencing: a window's and a rollback's lease carry the epoch of the claim that took them
    """
    ALTER TABLE windows ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollbacks ADD COLUMN lease_owner TEXT;
    ALTER TABLE rollbacks ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollbacks ADD COLUMN lease_until DOUBLE PRECISION
    """,
    # GitHub deployment protection rules waiting for their answer survive a restart
    """
    CREATE TABLE gates (
        callback_url TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        sha TEXT NOT NULL,
        github_environment TEXT NOT NULL,
        deadline DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        claimed_until DOUBLE PRECISION,
        answer TEXT,
        result TEXT,
        answered_at DOUBLE PRECISION
    );
    CREATE INDEX gates_pending ON gates (created_at) WHERE answered_at IS NULL
    """,
    # an alert cut off by a crash is sent again: what to send, and the channels that took it
    """
    ALTER TABLE alerts ADD COLUMN payload TEXT;
    ALTER TABLE alerts ADD COLUMN sent_to TEXT NOT NULL DEFAULT '';
    CREATE INDEX alerts_unsettled ON alerts (claimed_at) WHERE result = 'claimed'
    """,
    # what each background run probed (`agent.windows.fingerprint.probe_fingerprint`): a
    # baseline pools only runs of the checks as configured now; older rows stay NULL
    "ALTER TABLE probe_summaries ADD COLUMN fingerprint TEXT",
    # a gate finds its staging window by commit however many windows came since
    """
    CREATE INDEX windows_by_env_version ON windows (environment, version);
    CREATE INDEX windows_by_env_commit ON windows (environment, commit_sha)
    """,
    # a channel that failed an alert is retried (`agent.windows.alert_once`): when the
    # next retry is due (or its taker's lease ends), and how many were taken
    """
    ALTER TABLE alerts ADD COLUMN retry_at DOUBLE PRECISION;
    ALTER TABLE alerts ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX alerts_retry_due ON alerts (retry_at) WHERE retry_at IS NOT NULL
    """,
    # one replica probes each environment between windows (`take_background`)
    """
    CREATE TABLE background_leases (
        environment TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        lease_until DOUBLE PRECISION NOT NULL
    )
    """,
    # retention finds the rounds to delete through the windows that ended (`prune_rounds`),
    # where each pass read the key of every round stored
    "CREATE INDEX IF NOT EXISTS windows_ended ON windows (ended_at) WHERE ended_at IS NOT NULL",
    # the survivor's sweep reads the unfinished rollbacks only (`PENDING_ROLLBACKS`), where
    # each, about once a second, read every rollback ever stored
    "CREATE INDEX IF NOT EXISTS rollbacks_pending ON rollbacks (requested_at)"
    " WHERE state = 'pending'",
    # a `rollback.then` follow-up handed back keeps the attempts its sender made
    # (`release_alert`): the next sender continues the count and the budget
    "ALTER TABLE alerts ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    # every protection rule's request a gate took (`add_gate`), kept past retention: one
    # replayed once its delivery was forgotten opened its answered gate again
    """
    CREATE TABLE gate_requests (
        request TEXT PRIMARY KEY,
        callback_url TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )
    """,
    # a gate is one a run's callback URL and GitHub environment: a run into two gated
    # environments asks on one URL, and the second, keyed by the URL alone, was dropped.
    # A new table, `gates` kept as it is: an agent of the version before, still running
    # in a rolling upgrade, writes there, and its gates are taken over (`_take_over_gates`)
    """
    CREATE TABLE gates_by_environment (
        callback_url TEXT NOT NULL,
        github_environment TEXT NOT NULL,
        environment TEXT NOT NULL,
        sha TEXT NOT NULL,
        deadline DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        claimed_until DOUBLE PRECISION,
        answer TEXT,
        result TEXT,
        answered_at DOUBLE PRECISION,
        PRIMARY KEY (callback_url, github_environment)
    );
    CREATE INDEX gates_by_environment_pending ON gates_by_environment (created_at)
        WHERE answered_at IS NULL
    """,
    # retention's sweep (`PRUNE_GATE_REQUESTS`, `PRUNE_ANSWERED_GATES`, `PRUNE_IDEMPOTENCY`,
    # once a minute in a write transaction) reads what it deletes, where each pass read
    # every request and answered gate kept (90 days) and every key (one per hook delivery)
    """
    CREATE INDEX IF NOT EXISTS gate_requests_by_created ON gate_requests (created_at);
    CREATE INDEX IF NOT EXISTS gates_by_environment_answered ON gates_by_environment
        (answered_at) WHERE answered_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS idempotency_by_created ON idempotency (created_at)
    """,
    # who holds an alert's claim: the replica id and its process's run (`SqlStore._holder`),
    # so that a restart takes over at once a claim its own dead run left (`orphaned`),
    # where it waited out the claim's lease as if a live replica held it
    """
    ALTER TABLE alerts ADD COLUMN claimed_by TEXT;
    ALTER TABLE alerts ADD COLUMN claimed_run TEXT
    """,
    # who holds a gate's claim, as an alert's (`claim_gate`): a restart answers at once a
    # gate its own dead run was answering, where it waited out `GATE_CLAIM_S` (300 s)
    """
    ALTER TABLE gates_by_environment ADD COLUMN claimed_by TEXT;
    ALTER TABLE gates_by_environment ADD COLUMN claimed_run TEXT
    """,
    # a rollback's asks of which Vercel deployment to roll back to, counted before each
    # (`count_look_up`): a restart continues the count, where each process began at zero
    "ALTER TABLE rollbacks ADD COLUMN look_ups INTEGER NOT NULL DEFAULT 0",
    # a rollback waiting to retry looks for a newer deploy of its environment every second
    # (`NEWER_DEPLOY`, `begin_attempt`'s guard): it reads the windows deployed since its
    # own, where each look read every window the environment ever had
    "CREATE INDEX IF NOT EXISTS windows_by_env_deployed ON windows (environment, deployed_at)",
    # "registered after the rollback was requested" (`_NEWER_THAN`) by the store's order of
    # the environment's registrations, not by two replicas' clocks: a fix registered on a
    # replica whose clock was a minute behind the one that requested the rollback read as
    # registered before it, and the rollback went out after the fix, undoing it
    """
    ALTER TABLE windows ADD COLUMN registered BIGINT;
    ALTER TABLE rollbacks ADD COLUMN requested_after BIGINT;
    CREATE INDEX IF NOT EXISTS windows_by_env_registered ON windows (environment, registered)
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_CLAIM_GATE = (
    "UPDATE {table} SET claimed_until = ?{claimer} WHERE callback_url = ?"
    " AND github_environment = ? AND answered_at IS NULL"
    " AND (claimed_until IS NULL OR claimed_until < ?)"
)
"""A pending gate's claim, one statement for `gates_by_environment` (with its `claimer`,
migration 17) and for `gates`, where an agent of the version before migration 14 claims
it (`_claim_older_gate`)."""
KEYS_FORGOTTEN = "idempotency_forgotten_before"
"""`meta` key: the latest cutoff below which retention deleted idempotency keys."""

# Keys of `SqlStore._lock` (advisory locks on PostgreSQL), so our locks cannot collide
# with another application's on a shared server.
LOCK_MIGRATE = 0x5046_0001  # "PF" 1: one replica migrates at a time
LOCK_ENVIRONMENT = 0x5046_0002  # "PF" 2: create_window per environment
LOCK_REPLICA = 0x5046_0003  # "PF" 3: a replica id, held by one live agent at a time

CLOSE_WRITE_S = 2.0
"""The longest a close waits to leave its run's unsent alert claims to their lease."""

RELEASED_AT = 0.0
"""A claim handed back (`release_alert`) reads as taken at the epoch: lapsed under any
lease, so the next `take_alert` takes it at once."""

WINDOWS_PER_QUERY = 500
"""Ids bound in one `get_windows` query (SQLite allows 32,766 variables, PostgreSQL 65,535)."""

_WINDOW_COLUMNS = (
    "id, environment, version, previous_version, commit_sha, labels, state, deployed_at,"
    " ends_at, created_at, rounds, verdict, baseline, ended_at, lease_owner, lease_until,"
    " lease_epoch"
)
_HELD = "state = 'watching' AND lease_owner = ? AND lease_until >= ? ORDER BY created_at"
"""What a claim holds: also rows its UPDATE skipped only because our own round was
writing them at that instant, as long as our lease on them is still valid. A lapsed
lease of ours that was skipped is being taken over by another replica right now:
reporting it would have two replicas watching one window."""
_NEWER_THAN = (
    "newer.environment = {environment} AND newer.id <> {id}"
    " AND COALESCE(newer.registered > {requested_after}, newer.created_at > {requested_at})"
    " AND newer.deployed_at > {deployed_at} AND newer.deployed_at <= ?"
    " AND ({previous} IS NULL OR newer.version <> {previous})"
    " AND (newer.ended_at IS NULL OR newer.ended_at >= newer.deployed_at)"
)
"""What counts as a newer deploy (`newer`, took effect by `?`) of the rollback of the
deploy whose fields the slots name: one definition for the look (`NEWER_DEPLOY`, values
bound), `begin_attempt`'s guard and the take-over (`_NEWER_DEPLOY`, joined)."""
_NEWER_DEPLOY = "windows ours, windows newer WHERE ours.id = rollbacks.window_id AND " + (
    _NEWER_THAN.format(
        environment="ours.environment",
        id="ours.id",
        requested_at="rollbacks.requested_at",
        requested_after="rollbacks.requested_after",
        deployed_at="ours.deployed_at",
        previous="ours.previous_version",
    )
)
"""`_NEWER_THAN` for the rollback row `rollbacks`, after FROM: the windows compared,
`ours` (the rollback's) and `newer`."""
ROLLED_BACK_DEPLOY = (
    "SELECT ours.environment, ours.id, rollbacks.requested_after, rollbacks.requested_at,"
    " ours.deployed_at, ours.previous_version FROM rollbacks"
    " JOIN windows ours ON ours.id = rollbacks.window_id WHERE rollbacks.window_id = ?"
)
"""The fields of a rollback's deploy `NEWER_DEPLOY` is bound with, in its slots' order."""
NEWER_DEPLOY = (
    f"SELECT {', '.join(f'newer.{c.strip()}' for c in _WINDOW_COLUMNS.split(','))}"
    " FROM windows newer WHERE "
    + _NEWER_THAN.format(
        environment="?",
        id="?",
        requested_after="CAST(? AS BIGINT)",
        requested_at="?",
        deployed_at="?",
        previous="CAST(? AS TEXT)",
    )
    + " ORDER BY newer.created_at DESC, newer.id DESC LIMIT 1"
)
"""`Store.newer_deploy`'s query, bound with `ROLLED_BACK_DEPLOY`'s row, `now`, and the previous
version again: the environment's windows deployed between the rollback's deploy and now,
read through `windows_by_env_deployed`. Bound, not joined: PostgreSQL's planner, not
knowing the joined deploy's time, guessed a third of the environment's windows newer and
read them all (a hash join; for the `LIMIT 1`, `windows_by_created` in its order)."""
NEXT_REGISTERED = (
    "SELECT COALESCE(MAX(registered), 0) + 1 FROM windows WHERE environment = CAST(? AS TEXT)"
)
"""A new window's place among its environment's registrations (`windows.registered`),
bound with the environment: taken under `create_window`'s lock on the environment, so two
replicas never give one place twice, in the order the registrations commit."""
LAST_REGISTERED = (
    "SELECT MAX(last.registered) FROM windows ours JOIN windows last"
    " ON last.environment = ours.environment WHERE ours.id = CAST(? AS TEXT)"
)
"""The place of the last registration of a window's environment (bound with its id) as a
rollback of it is requested (`rollbacks.requested_after`): a deploy placed after it was
registered after the request, whatever the clocks of the replicas that stamped them (a
window registered before migration 20 has none: their clocks are compared)."""


def newer_deploy_values(
    ours: Sequence[Any], now: float, *, counting_previous: bool = False
) -> tuple[Any, ...]:
    """`NEWER_DEPLOY`'s values: `ROLLED_BACK_DEPLOY`'s row `ours` and `now`;
    `counting_previous`: a deploy of the rollback's `previous_version` counts too."""
    environment, id_, requested_after, requested_at, deployed_at, previous = ours
    if counting_previous:
        previous = None  # `_NEWER_THAN` leaves out no version then
    return environment, id_, requested_after, requested_at, deployed_at, now, previous, previous


_ROLLBACK_COLUMNS = (
    "window_id, state, body, requested_at, attempts, last_status, last_error,"
    " next_attempt_at, finished_at, lease_owner, lease_epoch, lease_until, look_ups"
)

PENDING_ROLLBACKS = (
    f"SELECT {_ROLLBACK_COLUMNS} FROM rollbacks WHERE state = 'pending' ORDER BY requested_at"
)
"""The survivor's sweep, each supervisor turn: through `rollbacks_pending`, it reads the
unfinished rollbacks only, however many finished ones their windows keep."""

PRUNE_GATE_REQUESTS = "DELETE FROM gate_requests WHERE created_at < ?"
PRUNE_ANSWERED_GATES = "DELETE FROM {table} WHERE answered_at IS NOT NULL AND answered_at < ?"
PRUNE_IDEMPOTENCY = (
    "DELETE FROM idempotency WHERE created_at < ? AND key IN"
    " (SELECT key FROM idempotency WHERE created_at < ? LIMIT ?)"
)
"""Retention's sweeps of protection rules' requests, answered gates and idempotency keys
(`prune_gates`, `prune_idempotency`), once a minute in a write transaction."""

_FENCED = "state = 'watching' AND lease_owner = ? AND lease_epoch = ?"
_HELD_BY = (
    "SELECT 1 FROM windows WHERE id = ? AND lease_owner = ? AND lease_epoch = ?"
    # the holder that ended the window still speaks for it (its final alerts)
    " UNION ALL SELECT 1 FROM windows WHERE id = ? AND lease_epoch = ? AND state <> 'watching'"
)


def _fenced(sql: str, fence: Fence | None) -> tuple[str, tuple[Any, ...]]:
    """`sql` (an UPDATE of one window), applied only while `fence` still holds it."""
    if fence is None:
        return sql, ()
    return f"{sql} AND {_FENCED}", (fence.owner, fence.epoch)


ROUND_COUNTED = (
    "UPDATE windows SET rounds = ?, verdict = COALESCE(?, verdict)"
    " WHERE id = ? AND state = 'watching' AND rounds < ?"
)
"""A stored round's window row; `rounds < ?`: a round is never written twice, and the
count never goes back; a round stored without a verdict keeps the latest one (the daemon
words it only every few seconds: `agent.windows.lifecycle.VERDICT_REFRESH_S`)."""
ROUND_INSERT = "INSERT INTO rounds (window_id, number, started_at, summary) VALUES (?, ?, ?, ?)"


def round_rows(
    record: RoundRecord, verdict: dict[str, Any] | None, fence: Fence | None
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    """A round's window UPDATE (fenced), its arguments, and its INSERT's arguments."""
    sql, fenced = _fenced(ROUND_COUNTED, fence)
    counted = (record.number, _dumps(verdict), record.window_id, record.number, *fenced)
    # compact JSON: rounds are most of the store
    row = (record.window_id, record.number, record.started_at, _dumps(record.summary))
    return sql, counted, row


LEASE_RENEWAL = f"UPDATE windows SET lease_until = ? WHERE id = ? AND {_FENCED}"
LEASE_RELEASE = (
    "UPDATE windows SET lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND lease_owner = ? AND lease_epoch = ?"
)
"""A window's lease handed back (`release_lease`, a stop's `release_leases`), whatever its
state, by the fence that holds it only."""


def renewal_args(window_id: str, fence: Fence, until: float) -> tuple[Any, ...]:
    return (until, window_id, fence.owner, fence.epoch)


async def record_round_in(
    db: Connection, record: RoundRecord, verdict: dict[str, Any] | None, fence: Fence | None
) -> bool:
    """Store one round inside the caller's transaction; False when the window is over,
    not `fence`'s any more, or already has this round."""
    sql, counted, row = round_rows(record, verdict, fence)
    if await db.execute(sql, *counted) != 1:
        return False
    await db.execute(ROUND_INSERT, *row)
    return True


async def _insert_rollback(db: Connection, intent: RollbackIntent, guard: str, *args: Any) -> int:
    """Store a rollback intent (with its lease, if handed over) when `guard` holds."""
    return await db.execute(
        "INSERT INTO rollbacks (window_id, state, body, requested_at, attempts,"
        " next_attempt_at, finished_at, last_error, lease_owner, lease_epoch, lease_until,"
        f" requested_after) SELECT ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ({LAST_REGISTERED})"
        f" WHERE {guard}"
        " ON CONFLICT (window_id) DO NOTHING",
        intent.window_id,
        intent.state,
        intent.body,
        intent.requested_at,
        intent.next_attempt_at,
        intent.finished_at,
        intent.last_error,
        intent.lease_owner,
        intent.lease_epoch,
        intent.lease_until,
        intent.window_id,
        *args,
    )


async def _remember(db: Connection, response: IdempotentResponse, at: float) -> None:
    """Keep an answer under its key (a key used already is a unique violation)."""
    await db.execute(
        "INSERT INTO idempotency (key, request_hash, status, body, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        response.key,
        response.request_hash,
        response.status,
        json.dumps(response.body),
        at,
    )


async def _join(db: Connection, active: DeployWindow, same: SameDeployment) -> None:
    """The other provider's labels the joined window lacks (`JOINED_LABELS`), added in
    the transaction that joins it: its statuses and rollback find that deployment."""
    added = {
        k: v
        for k, v in (same.labels or {}).items()
        if k in JOINED_LABELS and k not in active.labels
    }
    if added:
        active.labels = {**active.labels, **added}
        await db.execute(
            "UPDATE windows SET labels = ? WHERE id = ?", json.dumps(active.labels), active.id
        )


async def claim_alerts_in(
    db: Connection,
    window_id: str,
    at: float,
    alerts: Sequence[AlertClaim],
    by: tuple[str | None, str | None] = (None, None),
) -> None:
    """Claim `alerts` inside the caller's transaction (a claim already made stays); `by`:
    the claimer's replica id and run (`SqlStore._claimer`)."""
    for claim in alerts:
        await db.execute(
            "INSERT INTO alerts (window_id, event, claimed_at, payload, claimed_by, claimed_run)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (window_id, event) DO NOTHING",
            window_id,
            claim.event,
            at,
            _text(claim.payload),
            *by,
        )


class _ClaimedAlready(Exception):
    """One of a group's alert keys was claimed already: the group's claim is undone."""


async def _record_grouped(
    db: Connection, window_id: str, events: Sequence[str], result: str, detail: str
) -> None:
    """The keys claimed with a grouped alert (`claim_alert`'s `also`, rows without a
    payload) take its outcome: a resolve of each is owed as of the group's."""
    if events:
        marks = ", ".join("?" * len(events))
        await db.execute(
            "UPDATE alerts SET result = ?, detail = ?"
            f" WHERE window_id = ? AND payload IS NULL AND event IN ({marks})",
            result,
            _text(detail[:2000]),
            window_id,
            *events,
        )


class Connection(Protocol):
    """A backend's connection, inside or outside a transaction; SQL uses `?`."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]: ...


PROBE_INSERT = (
    "INSERT INTO probe_summaries (environment, check_name, at, summary, fingerprint)"
    " VALUES (?, ?, ?, ?, ?)"
)


PROBE_INSERT_HELD = (
    "INSERT INTO probe_summaries (environment, check_name, at, summary, fingerprint)"
    " SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION), CAST(? AS TEXT),"
    " CAST(? AS TEXT) WHERE NOT EXISTS (SELECT 1 FROM background_leases"
    " WHERE environment = ? AND owner <> ?)"
)
"""`PROBE_INSERT` while no other replica holds the environment's background lease (the
casts: PostgreSQL types a SELECT's parameters by them, not by the columns)."""


def _probe_row(run: ProbeRun) -> tuple[str, str, float, str, str | None]:
    return run.environment, run.check, run.at, json.dumps(run.summary), run.fingerprint


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    """Compact JSON, as `json.dumps` writes it up to formatting: orjson writes NaN and
    Infinity (a statistic, a judge's bound) as null and would read them back as None,
    so output with a null is written again by `json.dumps`, which keeps them, when the
    value holds one (a verdict always holds a None, and is worded every round at
    intervals of 5 s or more); so is any value orjson refuses."""
    if value is None:
        return None
    try:
        fast = orjson.dumps(value, option=_ORJSON_AS_JSON)
    except TypeError:  # orjson.JSONEncodeError: a type json.dumps may know
        return json.dumps(value, separators=(",", ":"))
    if b"null" not in fast or _all_finite(value):
        return fast.decode()
    return json.dumps(value, separators=(",", ":"))


def _all_finite(value: Any) -> bool:
    """No NaN or infinity in a JSON-like value (4x quicker than `json.dumps` on a verdict)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if item - item != 0.0:  # NaN and ±inf
                return False
        elif kind is dict:
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
    return True


_ORJSON_AS_JSON = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
"""Dataclasses and datetimes, which `json.dumps` refuses, go to it to be refused (orjson
would write them); so do numpy numbers, large integers and non-text keys (orjson refuses
them, `json.dumps` writes them)."""


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
        lease_epoch=row[16],
    )


def _handed_back(value: Any, window_id: str, event: str) -> int:
    """A claim's count of attempts handed back (`Taken.attempts`), read as none when it is
    not a count this version can read (a row another version wrote): the claim is taken
    all the same, where the take-back after an asked wait failed after its commit, read
    as the store not answering, and the call waited a whole lease for a later try."""
    try:
        return int(value)
    except (TypeError, ValueError):
        log.warning(
            "%s of %s: its stored count of attempts %r is not one this version reads (a"
            " row another version wrote?): read as none",
            event,
            window_id,
            value,
        )
        return 0


def _rollback(row: Sequence[Any]) -> RollbackIntent:
    return RollbackIntent(*row)


class SqlStore(ABC):
    """`Store` in portable SQL; a subclass supplies connections and what differs."""

    ROW_LOCK: ClassVar[str] = ""
    """Appended to a SELECT whose rows the transaction will change (`FOR UPDATE`)."""
    SKIP_LOCKED: ClassVar[str] = ""
    """Appended to the claim's SELECT: rows another replica is changing are left to it."""
    shared: ClassVar[bool] = False
    """Several replicas may use it at once (`Store.shared`)."""
    _holder: tuple[str, str] | None = None
    """(replica id, run) once `hold_replica_id` took the id: the alert claims this process
    makes carry them, so that its successor can tell them its dead run's (`_orphaned`)."""

    def _held_as(self, replica_id: str) -> None:
        """This process holds `replica_id` (on PostgreSQL its session lock, on SQLite the
        file's): its claims are stamped with the id and a run of its own."""
        self._holder = (replica_id, f"{os.getpid()}-{uuid.uuid4().hex[:12]}")

    def _claimer(self) -> tuple[str | None, str | None]:
        """What an alert claim records of its claimer: (replica id, run), or none."""
        return self._holder or (None, None)

    async def _let_claims_lapse(self) -> None:
        """At a close, before the held id is let go: this run's alert claims still without
        an outcome are left to their lease (their run unsaid), not taken at once as a
        killed run's. A process that closes its store may still be sending them from
        apprise's threads until it exits: only a run that never closed (kill -9) is dead
        the moment its lock is free. Bounded and best-effort: a store that does not
        answer leaves them to be taken at once, as a kill's."""
        if self._holder is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WRITE_S), self._tx() as db:
                # claims, and retries taken (each on its partial index)
                for held in ("result = 'claimed'", "retry_at IS NOT NULL"):
                    await db.execute(
                        f"UPDATE alerts SET claimed_run = NULL WHERE {held} AND claimed_run = ?",
                        self._holder[1],
                    )
                await db.execute(
                    "UPDATE gates_by_environment SET claimed_run = NULL"
                    " WHERE answered_at IS NULL AND claimed_run = ?",
                    self._holder[1],
                )

    def _orphaned(self, table: str = "alerts") -> tuple[str, tuple[Any, ...]]:
        """SQL (and its arguments) true for an alert claim (or a retry taken: `take_alert_retry`;
        a claim with an outcome and a retry not taken have no run) whose claimer is proven dead:
        made under the replica id this process holds by another run of it. The id is
        held by one live process at a time (PostgreSQL: a session advisory lock, which
        ends with its process), so that run's process is gone. False until an id is held."""
        if self._holder is None:
            return "1 = 0", ()
        return f"({table}.claimed_by = ? AND {table}.claimed_run <> ?)", self._holder

    @abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Connection]:
        """One transaction: all of it or none."""

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for reads outside a transaction."""

    @abstractmethod
    async def _lock(self, db: Connection, namespace: int, key: str) -> None:
        """Serialise transactions on (`namespace`, `key`) until this one ends."""

    async def _fetchall(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        async with self._read() as db:
            return await db.fetch(sql, *args)

    async def _fetchone(self, sql: str, *args: Any) -> Sequence[Any] | None:
        rows = await self._fetchall(sql, *args)
        return rows[0] if rows else None

    async def store_time(self) -> float | None:
        return None  # an embedded store's clock is this machine's

    async def _migrate(self) -> None:
        async with self._tx() as db:
            await self._lock(db, LOCK_MIGRATE, "")  # replicas starting together take turns
            await db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            rows = await db.fetch("SELECT value FROM meta WHERE key = 'schema_version'")
            current = int(rows[0][0]) if rows else 0
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
                str(SCHEMA_VERSION),
            )

    # windows ---------------------------------------------------------------

    async def create_window(
        self,
        window: DeployWindow,
        idempotency: Remembered | None = None,
        *,
        same: SameDeployment | None = None,
    ) -> WindowCreated:
        async with self._tx() as db:
            # Without this lock two replicas registering deploys of one environment would
            # each supersede the old window and both new ones would stay watching.
            await self._lock(db, LOCK_ENVIRONMENT, window.environment)
            rows = (
                await db.fetch(
                    f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE environment = ?"
                    f" AND state = 'watching' ORDER BY created_at, id{self.ROW_LOCK}",
                    window.environment,
                )
                if window.active
                else []
            )
            superseded = [_window(r) for r in rows]
            if same is not None:
                for active in superseded:
                    if same_deploy(active, same):
                        await _join(db, active, same)
                        await _remember(db, same.response(active), window.created_at)
                        return WindowCreated(window=active, joined=True)
            for old in superseded:
                old.state = "superseded"
                old.ended_at = window.created_at
                await db.execute(
                    "UPDATE windows SET state = 'superseded', ended_at = ?, lease_owner = NULL"
                    " WHERE id = ?",
                    window.created_at,
                    old.id,
                )
            await db.execute(
                f"INSERT INTO windows ({_WINDOW_COLUMNS}, registered)"
                f" VALUES ({', '.join('?' * 17)}, ({NEXT_REGISTERED}))",
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
                window.lease_epoch,
                window.environment,
            )
            created = WindowCreated(window=window, superseded=superseded)
            if idempotency is not None:
                answer = idempotency(created) if callable(idempotency) else idempotency
                await _remember(db, answer, window.created_at)
        return created

    async def idempotent_response(self, key: str) -> IdempotentResponse | None:
        row = await self._fetchone(
            "SELECT key, request_hash, status, body FROM idempotency WHERE key = ?", key
        )
        if row is None:
            return None
        return IdempotentResponse(row[0], row[1], row[2], json.loads(row[3]))

    async def get_window(self, window_id: str) -> DeployWindow | None:
        row = await self._fetchone(f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE id = ?", window_id)
        return _window(row) if row else None

    async def get_windows(self, window_ids: list[str]) -> list[DeployWindow]:
        found: list[DeployWindow] = []
        for at in range(0, len(window_ids), WINDOWS_PER_QUERY):
            ids = window_ids[at : at + WINDOWS_PER_QUERY]
            marks = ", ".join("?" * len(ids))
            rows = await self._fetchall(
                f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE id IN ({marks})", *ids
            )
            found += [_window(row) for row in rows]
        return found

    async def list_windows(
        self,
        *,
        environment: str | None = None,
        state: WindowState | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        where: list[str] = []
        args: list[Any] = []
        if environment is not None:
            where.append("environment = ?")
            args.append(environment)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if cursor is not None:
            created_at, window_id = decode_cursor(cursor)
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args.extend([created_at, created_at, window_id])
        sql = f"SELECT {_WINDOW_COLUMNS} FROM windows"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._fetchall(
            sql + " ORDER BY created_at DESC, id DESC LIMIT ?", *args, limit + 1
        )
        items = [_window(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit and items:
            next_cursor = encode_cursor(items[-1].created_at, items[-1].id)
        return Page(items=items, next_cursor=next_cursor)

    async def newest_window_of(self, environment: str, sha: str) -> DeployWindow | None:
        # a union, so that each half is one index's range (an OR may scan the environment)
        names = sha_and_abbreviations(sha)
        marks = ", ".join("?" * len(names))
        rows = await self._fetchall(
            f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE environment = ?"
            f" AND version IN ({marks})"
            f" UNION SELECT {_WINDOW_COLUMNS} FROM windows WHERE environment = ?"
            f" AND commit_sha IN ({marks}) ORDER BY created_at DESC, id DESC LIMIT 1",
            environment,
            *names,
            environment,
            *names,
        )
        return _window(rows[0]) if rows else None

    async def claim_windows(
        self, owner: str, now: float, lease_s: float, *, fresh: bool = False
    ) -> list[DeployWindow]:
        async with self._tx() as db:
            await self._claim(db, owner, now, lease_s, fresh=fresh)
            rows = await db.fetch(
                f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE {_HELD}", owner, now
            )
        return [_window(r) for r in rows]

    async def claim_leases(
        self,
        owner: str,
        now: float,
        lease_s: float,
        *,
        fresh: bool = False,
        written_only: bool = False,
    ) -> list[Lease]:
        async with self._tx() as db:
            if written_only:
                rows = await self._claim(
                    db, owner, now, lease_s, fresh=fresh, returning=", created_at"
                )
                rows = sorted(rows, key=lambda r: (r[3], r[0]))
            else:
                await self._claim(db, owner, now, lease_s, fresh=fresh)
                rows = await db.fetch(
                    f"SELECT id, lease_epoch, lease_until FROM windows WHERE {_HELD}", owner, now
                )
        return [Lease(r[0], r[1], r[2]) for r in rows]

    async def _claim(
        self,
        db: Connection,
        owner: str,
        now: float,
        lease_s: float,
        *,
        fresh: bool,
        returning: str | None = None,
    ) -> list[Sequence[Any]]:
        """Claim what this owner may take or should renew; with `returning` (extra columns
        after the lease's own), the rows written, else nothing read back."""
        # SKIP_LOCKED: a row another replica is claiming (or renewing, or finishing)
        # right now is left to it instead of waited for; the WHERE is re-checked on
        # the latest committed row, so a lease taken a moment ago is never stolen.
        # A lease that changes hands (or lapsed, even ours, or is claimed `fresh` by a
        # new process of ours) gets a new epoch: every task still holding the old one
        # is refused at its next write.
        # A lease of ours with more than half of it left is not rewritten: the
        # watcher claims every second, and each watch renews its own lease anyway.
        sql = (
            "UPDATE windows SET lease_epoch = CASE WHEN NOT ? AND lease_owner = ?"
            " AND lease_until >= ? THEN lease_epoch ELSE lease_epoch + 1 END,"
            " lease_owner = ?, lease_until = ?"
            " WHERE id IN (SELECT id FROM windows WHERE state = 'watching'"
            " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)"
            " AND (? OR lease_owner IS NULL OR lease_owner <> ? OR lease_until < ?)"
            f" ORDER BY created_at, id{self.SKIP_LOCKED})"
        )
        args = (
            fresh,
            owner,
            now,
            owner,
            now + lease_s,
            owner,
            now,
            fresh,
            owner,
            now + lease_s / 2,
        )
        if returning is None:
            await db.execute(sql, *args)
            return []
        return await db.fetch(f"{sql} RETURNING id, lease_epoch, lease_until{returning}", *args)

    async def renew_lease(self, window_id: str, fence: Fence, until: float) -> bool:
        async with self._tx() as db:
            changed = await db.execute(LEASE_RENEWAL, *renewal_args(window_id, fence, until))
        return changed == 1

    async def release_lease(self, window_id: str, fence: Fence) -> None:
        async with self._tx() as db:
            await db.execute(LEASE_RELEASE, window_id, fence.owner, fence.epoch)

    async def release_leases(self, leases: Sequence[tuple[str, Fence]]) -> None:
        # a transaction per `WINDOWS_PER_QUERY`: a stop cut short still handed some back
        for at in range(0, len(leases), WINDOWS_PER_QUERY):
            async with self._tx() as db:
                for window_id, fence in leases[at : at + WINDOWS_PER_QUERY]:
                    await db.execute(LEASE_RELEASE, window_id, fence.owner, fence.epoch)

    async def set_baseline(
        self, window_id: str, baseline: dict[str, Any], fence: Fence | None = None
    ) -> bool:
        async with self._tx() as db:
            sql, args = _fenced("UPDATE windows SET baseline = ? WHERE id = ?", fence)
            return await db.execute(sql, _dumps(baseline), window_id, *args) == 1

    async def record_round(
        self, record: RoundRecord, verdict: dict[str, Any] | None, fence: Fence | None = None
    ) -> bool:
        async with self._tx() as db:
            return await record_round_in(db, record, verdict, fence)

    async def rounds(
        self,
        window_id: str,
        after: int = 0,
        *,
        each: Callable[[RoundRecord], RoundRecord] | None = None,
    ) -> list[RoundRecord]:
        rows = await self._fetchall(
            "SELECT window_id, number, started_at, summary FROM rounds WHERE window_id = ?"
            " AND number > ? ORDER BY number",
            window_id,
            after,
        )
        # every probe's sample of every round: 720 rounds of 50 checks' 40 parsed in ~1 s,
        # which held the loop that times the probes (a deploy page's read): in a thread
        return await asyncio.to_thread(_round_records, rows, each)

    async def prune_rounds(
        self, ended_before: float, limit: int = 5000, ended_after: float | None = None
    ) -> int:
        # from the windows that ended (by `windows_ended`) to their rounds (by the key):
        # driven from the rounds, each pass read every stored round's key, live windows'
        # included, in the write transaction every round's store waits behind
        since = "" if ended_after is None else " AND w.ended_at >= ?"
        bounds = () if ended_after is None else (ended_after,)
        async with self._tx() as db:
            return await db.execute(
                "DELETE FROM rounds WHERE (window_id, number) IN"
                " (SELECT r.window_id, r.number FROM windows w CROSS JOIN rounds r"
                f" WHERE r.window_id = w.id AND w.ended_at < ?{since} LIMIT ?)",
                ended_before,
                *bounds,
                limit,
            )

    async def prune_alert_payloads(
        self, ended_before: float, limit: int = 5000, ended_after: float | None = None
    ) -> int:
        # what a settled alert would be sent again with, kept beside every alert of every
        # window ever (a third of a window's bytes for good); by `windows_ended`, as rounds
        since = "" if ended_after is None else " AND w.ended_at >= ?"
        bounds = () if ended_after is None else (ended_after,)
        async with self._tx() as db:
            return await db.execute(
                "UPDATE alerts SET payload = NULL WHERE (window_id, event) IN"
                " (SELECT a.window_id, a.event FROM windows w CROSS JOIN alerts a"
                f" WHERE a.window_id = w.id AND w.ended_at < ?{since}"
                " AND a.payload IS NOT NULL AND a.result <> 'claimed' AND a.retry_at IS NULL"
                " LIMIT ?)",
                ended_before,
                *bounds,
                limit,
            )

    async def prune_idempotency(self, before: float, limit: int = 5000) -> int:
        async with self._tx() as db:
            deleted = await db.execute(PRUNE_IDEMPOTENCY, before, before, limit)
            if deleted:  # in the same transaction: no key is gone before the mark says so
                rows = await db.fetch("SELECT value FROM meta WHERE key = ?", KEYS_FORGOTTEN)
                marked = max(before, float(rows[0][0])) if rows else before
                await db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    KEYS_FORGOTTEN,
                    repr(marked),
                )
            return deleted

    async def keys_forgotten_before(self) -> float | None:
        row = await self._fetchone("SELECT value FROM meta WHERE key = ?", KEYS_FORGOTTEN)
        return None if row is None else float(row[0])

    async def finish_window(
        self,
        window_id: str,
        state: WindowState,
        verdict: dict[str, Any] | None,
        at: float,
        rollback: RollbackIntent | None = None,
        fence: Fence | None = None,
        alerts: Sequence[AlertClaim] = (),
        runs: Sequence[ProbeRun] = (),
    ) -> bool:
        async with self._tx() as db:
            sql, args = _fenced(
                "UPDATE windows SET state = ?, verdict = COALESCE(?, verdict), ended_at = ?,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ? AND state = 'watching'",
                fence,
            )
            if await db.execute(sql, state, _dumps(verdict), at, window_id, *args) != 1:
                return False
            if rollback is not None:
                await _insert_rollback(db, rollback, "TRUE")
            await claim_alerts_in(db, window_id, at, alerts, self._claimer())
            for run in runs:
                await db.execute(PROBE_INSERT, *_probe_row(run))
            return True

    async def add_rollback(
        self, intent: RollbackIntent, at: float = 0.0, alerts: Sequence[AlertClaim] = ()
    ) -> bool:
        async with self._tx() as db:
            guard = (
                "EXISTS (SELECT 1 FROM windows WHERE id = ?"
                " AND state IN ('passed', 'failed', 'inconclusive'))"
            )
            if await _insert_rollback(db, intent, guard, intent.window_id) != 1:
                return False
            await claim_alerts_in(db, intent.window_id, at, alerts, self._claimer())
            return True

    async def add_labels(self, window_id: str, labels: Mapping[str, str]) -> bool:
        async with self._tx() as db:
            rows = await db.fetch(
                f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE id = ?{self.ROW_LOCK}", window_id
            )
            if not rows:
                return False
            window = _window(rows[0])
            added = {k: v for k, v in labels.items() if k not in window.labels}
            if not added:
                return False
            await db.execute(
                "UPDATE windows SET labels = ? WHERE id = ?",
                json.dumps({**window.labels, **added}),
                window_id,
            )
        return True

    async def set_state(self, window_id: str, state: WindowState, expected: WindowState) -> bool:
        async with self._tx() as db:
            changed = await db.execute(
                "UPDATE windows SET state = ? WHERE id = ? AND state = ?",
                state,
                window_id,
                expected,
            )
        return changed == 1

    async def cancel_window(self, window_id: str, at: float) -> DeployWindow:
        async with self._tx() as db:
            rows = await db.fetch(
                f"SELECT {_WINDOW_COLUMNS} FROM windows WHERE id = ?{self.ROW_LOCK}", window_id
            )
            if not rows:
                raise KeyError(window_id)
            window = _window(rows[0])
            if not window.active:
                raise Conflict(f"deploy {window_id} already ended in state {window.state}")
            await db.execute(
                "UPDATE windows SET state = 'cancelled', ended_at = ?, lease_owner = NULL,"
                " lease_until = NULL WHERE id = ?",
                at,
                window_id,
            )
        window.state = "cancelled"
        window.ended_at = at
        window.lease_owner = None
        window.lease_until = None
        return window

    # rollback delivery -----------------------------------------------------

    async def get_rollback(self, window_id: str) -> RollbackIntent | None:
        row = await self._fetchone(
            f"SELECT {_ROLLBACK_COLUMNS} FROM rollbacks WHERE window_id = ?", window_id
        )
        return _rollback(row) if row else None

    async def deliveries(self, window_id: str) -> list[DeliveryAttempt]:
        rows = await self._fetchall(
            "SELECT window_id, attempt, at, status, error, duration_s FROM deliveries"
            " WHERE window_id = ? ORDER BY attempt",
            window_id,
        )
        return [DeliveryAttempt(*r) for r in rows]

    async def take_rollback(
        self, window_id: str, owner: str, now: float, until: float, held: Fence | None = None
    ) -> RollbackIntent | None:
        """Lease a pending rollback to `owner` under a new epoch: if nobody holds it, its
        lease lapsed, or `owner` already holds it as `held` (handed over with the verdict).
        None when another sender holds it (or it is no longer pending)."""
        held = held if held is not None and held.owner == owner else Fence(owner, -1)
        async with self._tx() as db:
            rows = await db.fetch(
                "UPDATE rollbacks SET lease_owner = ?, lease_epoch = lease_epoch + 1,"
                " lease_until = ? WHERE window_id = ? AND state = 'pending'"
                " AND (lease_owner IS NULL OR lease_until < ?"
                " OR (lease_owner = ? AND lease_epoch = ?))"
                f" RETURNING {_ROLLBACK_COLUMNS}",
                owner,
                until,
                window_id,
                now,
                held.owner,
                held.epoch,
            )
        return _rollback(rows[0]) if rows else None

    async def take_replaced_rollback(
        self, window_id: str, owner: str, until: float, replaced_by: float
    ) -> RollbackIntent | None:
        async with self._tx() as db:
            rows = await db.fetch(
                "UPDATE rollbacks SET lease_owner = ?, lease_epoch = lease_epoch + 1,"
                " lease_until = ? WHERE window_id = ? AND state = 'pending'"
                " AND lease_owner <> ? AND next_attempt_at IS NOT NULL AND NOT EXISTS"
                " (SELECT 1 FROM deliveries WHERE deliveries.window_id = rollbacks.window_id"
                " AND deliveries.attempt = rollbacks.attempts AND deliveries.status IS NULL"
                f" AND deliveries.error = ?) AND EXISTS (SELECT 1 FROM {_NEWER_DEPLOY}"
                f" AND newer.created_at <= ?) RETURNING {_ROLLBACK_COLUMNS}",
                owner,
                until,
                window_id,
                owner,
                IN_FLIGHT,
                replaced_by,
                replaced_by,
            )
        return _rollback(rows[0]) if rows else None

    async def begin_attempt(
        self, window_id: str, fence: Fence, now: float, until: float
    ) -> int | None:
        """The next attempt's number, allocated and stored (with an in-flight delivery
        row) before it goes out; None if the lease is no longer this sender's, or a newer
        deploy took effect by `now` (read in this transaction)."""
        async with self._tx() as db:
            rows = await db.fetch(
                "UPDATE rollbacks SET attempts = attempts + 1, next_attempt_at = NULL,"
                " lease_until = ? WHERE window_id = ? AND state = 'pending' AND lease_owner = ?"
                " AND lease_epoch = ? AND lease_until >= ?"
                f" AND NOT EXISTS (SELECT 1 FROM {_NEWER_DEPLOY})"
                " RETURNING attempts",
                until,
                window_id,
                fence.owner,
                fence.epoch,
                now,
                now,
            )
            if not rows:
                return None
            number = int(rows[0][0])
            await db.execute(
                "INSERT INTO deliveries (window_id, attempt, at, status, error, duration_s)"
                " VALUES (?, ?, ?, NULL, ?, 0)",
                window_id,
                number,
                now,
                IN_FLIGHT,
            )
        return number

    async def newer_deploy(
        self, window_id: str, now: float, *, counting_previous: bool = False
    ) -> DeployWindow | None:
        ours = await self._fetchone(ROLLED_BACK_DEPLOY, window_id)
        if ours is None:
            return None
        row = await self._fetchone(
            NEWER_DEPLOY, *newer_deploy_values(ours, now, counting_previous=counting_previous)
        )
        return _window(row) if row else None

    async def count_look_up(
        self, window_id: str, fence: Fence, now: float, until: float, by: int = 1
    ) -> int | None:
        async with self._tx() as db:
            rows = await db.fetch(
                "UPDATE rollbacks SET look_ups = look_ups + ?, lease_until = ?"
                " WHERE window_id = ? AND state = 'pending' AND lease_owner = ?"
                " AND lease_epoch = ? AND lease_until >= ? RETURNING look_ups",
                by,
                until,
                window_id,
                fence.owner,
                fence.epoch,
                now,
            )
        return int(rows[0][0]) if rows else None

    async def settle_rollback(
        self,
        intent: RollbackIntent,
        attempt: DeliveryAttempt | None = None,
        alerts: Sequence[AlertClaim] = (),
    ) -> bool:
        """Store an attempt's outcome and where the rollback stands (`intent`'s state,
        last status and error, next attempt, lease) in one transaction.

        Fenced by `intent.fence`, except a delivery: a 2xx is a fact, stored even by a
        sender whose lease lapsed meanwhile, so that no new holder sends again. A
        `delivered` rollback moves its window to `rolled_back` from `failed`, or from
        `passed` or `inconclusive` (a manual rollback's: left to a step after, a reader
        saw the window `passed` with its rollback delivered meanwhile). False if
        nothing changed (the lease is another's, or the rollback already ended).
        `alerts` are claimed with the change, so a crash after it cannot lose them."""
        async with self._tx() as db:
            if attempt is not None:
                await db.execute(
                    "UPDATE deliveries SET at = ?, status = ?, error = ?, duration_s = ?"
                    " WHERE window_id = ? AND attempt = ? AND status IS NULL AND error = ?",
                    attempt.at,
                    attempt.status,
                    _text(attempt.error),
                    attempt.duration_s,
                    attempt.window_id,
                    attempt.attempt,
                    IN_FLIGHT,
                )
            sql = (
                "UPDATE rollbacks SET state = ?, last_status = ?, last_error = ?,"
                " next_attempt_at = ?, finished_at = ?, lease_until = ?"
                " WHERE window_id = ? AND state = 'pending'"
            )
            args: list[Any] = []
            if intent.state != "delivered":
                sql += " AND lease_owner = ? AND lease_epoch = ?"
                args = [intent.lease_owner, intent.lease_epoch]
            changed = await db.execute(
                sql,
                intent.state,
                intent.last_status,
                _text(intent.last_error),
                intent.next_attempt_at,
                intent.finished_at,
                intent.lease_until,
                intent.window_id,
                *args,
            )
            if changed == 1 and intent.state == "delivered":
                # same transaction: "rolled_back" means the webhook accepted it
                await db.execute(
                    "UPDATE windows SET state = 'rolled_back' WHERE id = ?"
                    " AND state IN ('failed', 'passed', 'inconclusive')",
                    intent.window_id,
                )
            if changed == 1:
                at = intent.finished_at if intent.finished_at is not None else intent.requested_at
                await claim_alerts_in(db, intent.window_id, at, alerts, self._claimer())
        return changed == 1

    async def pending_rollbacks(self) -> list[RollbackIntent]:
        rows = await self._fetchall(PENDING_ROLLBACKS)
        return [_rollback(r) for r in rows]

    # alerts ----------------------------------------------------------------

    async def claim_alert(
        self,
        window_id: str,
        event: str,
        at: float,
        fence: Fence | None = None,
        payload: str | None = None,
        also: Sequence[str] = (),
    ) -> bool:
        """With `fence`, only while that claim holds the window, or it ended under that
        claim: a task whose lease was taken over never alerts. `also` are claimed in the
        same transaction, all or none; rows are written in key order, so two replicas
        claiming overlapping groups wait on each other rather than deadlock."""
        sql = (
            "INSERT INTO alerts (window_id, event, claimed_at, payload, claimed_by, claimed_run)"
            " SELECT ?, ?, ?, ?, ?, ?"
        )
        fenced: tuple[Any, ...] = ()
        if fence is not None:
            sql += f" WHERE EXISTS ({_HELD_BY})"
            fenced = (window_id, fence.owner, fence.epoch, window_id, fence.epoch)
        else:
            sql += " WHERE TRUE"  # SQLite: an upsert's SELECT needs a WHERE to parse
        sql += " ON CONFLICT (window_id, event) DO NOTHING"
        rows = sorted([(event, payload), *((member, None) for member in also)])
        try:
            async with self._tx() as db:
                for key, text in rows:
                    claimer = self._claimer()
                    if (
                        await db.execute(sql, window_id, key, at, _text(text), *claimer, *fenced)
                        != 1
                    ):
                        raise _ClaimedAlready
        except _ClaimedAlready:
            return False
        return True

    async def take_alert(
        self,
        window_id: str,
        event: str,
        at: float,
        lapsed_before: float,
        *,
        orphaned: bool = False,
        waiting: bool = False,
    ) -> Taken | None:
        """A first claim, or a claim without an outcome made before `lapsed_before` (with
        `orphaned`, or by a run proven dead: `_orphaned`) taken over, with its handed-back
        attempts; the row stays locked to commit, so of two takers one wins. `waiting`:
        stamped without a run, as a clean stop leaves its claims (`_let_claims_lapse`)."""
        dead, proof = self._orphaned() if orphaned else ("1 = 0", ())
        by, run = self._claimer()
        async with self._tx() as db:
            taken = await db.fetch(
                "INSERT INTO alerts (window_id, event, claimed_at, claimed_by, claimed_run)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (window_id, event) DO UPDATE"
                " SET claimed_at = excluded.claimed_at, claimed_by = excluded.claimed_by,"
                " claimed_run = excluded.claimed_run"
                f" WHERE alerts.result = 'claimed' AND (alerts.claimed_at < ? OR {dead})"
                " RETURNING attempts",
                window_id,
                event,
                at,
                by,
                None if waiting else run,
                lapsed_before,
                *proof,
            )
        return Taken(_handed_back(taken[0][0], window_id, event)) if taken else None

    async def release_alert(
        self, window_id: str, event: str, claimed_at: float, attempts: int = 0
    ) -> bool:
        """Its claim time set to `RELEASED_AT`, before any lease's lapse: fenced by the
        time it was taken at, so a taker that came since keeps it."""
        return await self._counted(window_id, event, claimed_at, attempts, released=True)

    async def count_alert_attempts(
        self, window_id: str, event: str, claimed_at: float, attempts: int
    ) -> bool:
        return await self._counted(window_id, event, claimed_at, attempts, released=False)

    async def _counted(
        self, window_id: str, event: str, claimed_at: float, attempts: int, *, released: bool
    ) -> bool:
        """`attempts` added to the claim taken at `claimed_at` (fenced by it), still
        without an outcome; with `released`, its claim time set to `RELEASED_AT`."""
        released_at = (RELEASED_AT,) if released else ()
        async with self._tx() as db:
            changed = await db.execute(
                "UPDATE alerts SET attempts = attempts + ?"
                + (", claimed_at = ?" if released else "")
                + " WHERE window_id = ? AND event = ? AND result = 'claimed' AND claimed_at = ?",
                attempts,
                *released_at,
                window_id,
                event,
                claimed_at,
            )
        return changed == 1

    async def record_alert(
        self,
        window_id: str,
        event: str,
        result: str,
        detail: str,
        retry_at: float | None = None,
        also: Sequence[str] = (),
    ) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE alerts SET result = ?, detail = ?, claimed_run = NULL, retry_at = CASE"
                " WHEN payload IS NULL THEN NULL ELSE CAST(? AS DOUBLE PRECISION) END"
                " WHERE window_id = ? AND event = ?",
                result,
                _text(detail[:2000]),
                retry_at,
                window_id,
                event,
            )
            await _record_grouped(db, window_id, also, result, detail)

    async def note_alert_channel(self, window_id: str, event: str, channel: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE alerts SET sent_to = sent_to || ? WHERE window_id = ? AND event = ?"
                " AND (result = 'claimed' OR retry_at IS NOT NULL)",
                _text(channel.replace("\n", " ") + "\n"),
                window_id,
                event,
            )

    async def unsettled_alerts(
        self, claimed_before: float, limit: int = 100, *, orphaned: bool = False
    ) -> list[UnsettledAlert]:
        dead, proof = self._orphaned() if orphaned else ("1 = 0", ())
        rows = await self._fetchall(
            "SELECT window_id, event, claimed_at, payload, sent_to FROM alerts"
            f" WHERE result = 'claimed' AND (claimed_at < ? OR {dead}) AND payload IS NOT NULL"
            " ORDER BY claimed_at LIMIT ?",
            claimed_before,
            *proof,
            limit,
        )
        return [UnsettledAlert(r[0], r[1], r[2], r[3], frozenset(r[4].splitlines())) for r in rows]

    async def alert_retries_due(
        self, at: float, limit: int = 100, *, orphaned: bool = False
    ) -> list[tuple[str, str]]:
        dead, proof = self._orphaned() if orphaned else ("1 = 0", ())
        rows = await self._fetchall(
            "SELECT window_id, event FROM alerts WHERE retry_at IS NOT NULL"
            f" AND (retry_at <= ? OR {dead}) AND payload IS NOT NULL"
            " ORDER BY retry_at LIMIT ?",
            at,
            *proof,
            limit,
        )
        return [(r[0], r[1]) for r in rows]

    async def next_alert_retry(self) -> float | None:
        row = await self._fetchone("SELECT MIN(retry_at) FROM alerts WHERE retry_at IS NOT NULL")
        return None if row is None or row[0] is None else float(row[0])

    async def take_alert_retry(
        self, window_id: str, event: str, at: float, until: float, *, orphaned: bool = False
    ) -> AlertRetry | None:
        """The row stays locked to commit: of two takers, the second finds `retry_at`
        moved past `at` (and the taker's run its own) and takes nothing."""
        dead, proof = self._orphaned() if orphaned else ("1 = 0", ())
        async with self._tx() as db:
            rows = await db.fetch(
                "UPDATE alerts SET retry_at = ?, retries = retries + 1, claimed_by = ?,"
                " claimed_run = ? WHERE window_id = ? AND event = ? AND retry_at IS NOT NULL"
                f" AND (retry_at <= ? OR {dead}) AND payload IS NOT NULL"
                " RETURNING payload, sent_to, retries, result, detail",
                until,
                *self._claimer(),
                window_id,
                event,
                at,
                *proof,
            )
        if not rows:
            return None
        payload, sent_to, retries, result, detail = rows[0]
        return AlertRetry(
            window_id,
            event,
            payload,
            frozenset(sent_to.splitlines()),
            int(retries),
            until,
            result,
            detail,
        )

    async def alert_retries_of(self, window_id: str) -> list[OwedRetry]:
        rows = await self._fetchall(
            "SELECT event, payload, sent_to, retry_at, claimed_run IS NOT NULL FROM alerts"
            " WHERE window_id = ? AND retry_at IS NOT NULL AND payload IS NOT NULL",
            window_id,
        )
        return [
            OwedRetry(r[0], r[1], frozenset(r[2].splitlines()), float(r[3]), bool(r[4]))
            for r in rows
        ]

    async def settle_alert_retry(
        self,
        retry: AlertRetry,
        result: str,
        detail: str,
        retry_at: float | None,
        also: Sequence[str] = (),
        *,
        retries: int | None = None,
    ) -> bool:
        async with self._tx() as db:
            changed = await db.execute(
                "UPDATE alerts SET result = ?, detail = ?, retry_at = ?, retries = ?,"
                " claimed_run = NULL"
                " WHERE window_id = ? AND event = ? AND retry_at = ? AND retries = ?",
                result,
                _text(detail[:2000]),
                retry_at,
                retry.retries if retries is None else retries,
                retry.window_id,
                retry.event,
                retry.lease_until,
                retry.retries,
            )
            if changed == 1:
                await _record_grouped(db, retry.window_id, also, result, detail)
        return changed == 1

    async def claims_without_outcome(self, event: str, limit: int | None = None) -> list[str]:
        # by `alerts_unsettled`: only the claims without an outcome are read
        sql = (
            "SELECT window_id FROM alerts WHERE result = 'claimed' AND event = ?"
            " ORDER BY claimed_at"
        )
        args: tuple[Any, ...] = (event,)
        if limit is not None:
            sql, args = f"{sql} LIMIT ?", (event, limit)
        return [r[0] for r in await self._fetchall(sql, *args)]

    async def alert_events(self, window_id: str) -> dict[str, str]:
        rows = await self._fetchall(
            "SELECT event, result FROM alerts WHERE window_id = ?", window_id
        )
        return {r[0]: r[1] for r in rows}

    async def alerts_of(self, window_ids: list[str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for at in range(0, len(window_ids), WINDOWS_PER_QUERY):
            ids = window_ids[at : at + WINDOWS_PER_QUERY]
            marks = ", ".join("?" * len(ids))
            rows = await self._fetchall(
                f"SELECT window_id, event, result FROM alerts WHERE window_id IN ({marks})", *ids
            )
            for window_id, event, result in rows:
                found.setdefault(window_id, {})[event] = result
        return found

    # protection-rule gates ---------------------------------------------------

    async def add_gate(
        self, gate: PendingGate, delivery: IdempotentResponse | None = None
    ) -> GateAsk:
        again = (
            " DO UPDATE SET environment = excluded.environment, sha = excluded.sha,"
            " github_environment = excluded.github_environment, deadline = excluded.deadline,"
            " created_at = excluded.created_at, claimed_until = NULL, answer = NULL,"
            " result = NULL, answered_at = NULL WHERE gates_by_environment.answered_at IS NOT NULL"
        )
        await self._take_over_gates()  # one asked of an older agent is joined, not added
        async with self._tx() as db:
            if delivery is not None:
                remembered = await db.execute(
                    "INSERT INTO idempotency (key, request_hash, status, body, created_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                    delivery.key,
                    delivery.request_hash,
                    delivery.status,
                    json.dumps(delivery.body),
                    gate.created_at,
                )
                if remembered != 1:
                    return GateAsk.ASKED  # a redelivery: the gate stays as it is
                asked = await db.execute(
                    "INSERT INTO gate_requests (request, callback_url, created_at)"
                    " VALUES (?, ?, ?) ON CONFLICT (request) DO NOTHING",
                    delivery.key,
                    gate.callback_url,
                    gate.created_at,
                )
                if asked != 1:
                    return GateAsk.ASKED  # asked before, its delivery forgotten since
            added = await db.execute(
                "INSERT INTO gates_by_environment (callback_url, environment, sha,"
                " github_environment, deadline, created_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (callback_url, github_environment)"
                + (again if delivery is not None else " DO NOTHING"),
                gate.callback_url,
                gate.environment,
                gate.sha,
                gate.github_environment,
                gate.deadline,
                gate.created_at,
            )
        # not added: the gate is stored and still pending, and the request waits with it
        return GateAsk.ADDED if added == 1 else GateAsk.JOINED

    async def gate_state(
        self, request: str, callback_url: str, github_environment: str
    ) -> GateState | None:
        await self._take_over_gates()
        row = await self._fetchone(
            "SELECT g.answer, g.result, g.answered_at, g.created_at,"
            " (SELECT r.created_at FROM gate_requests r WHERE r.request = ?)"
            " FROM gates_by_environment g WHERE g.callback_url = ? AND g.github_environment = ?",
            request,
            callback_url,
            github_environment,
        )
        if row is None:
            return None
        answer, result, answered_at, opened_at, asked_at = row
        if asked_at is not None and opened_at > asked_at:
            # opened again by a later request, which only an answered gate is: this one
            # was answered before, with an answer the gate no longer keeps
            return GateState("answered")
        if answered_at is None:
            return GateState("pending")
        return GateState(str(answer), None if result is None else str(result), answered_at)

    async def prune_gates(self, before: float) -> int:
        async with self._tx() as db:
            requests = await db.execute(PRUNE_GATE_REQUESTS, before)
            gates = 0
            for table in ("gates_by_environment", "gates"):  # `gates`: an older agent's
                gates += await db.execute(PRUNE_ANSWERED_GATES.format(table=table), before)
        return requests + gates

    async def pending_gates(self) -> list[PendingGate]:
        await self._take_over_gates()
        rows = await self._fetchall(
            "SELECT callback_url, environment, sha, github_environment, deadline, created_at"
            " FROM gates_by_environment WHERE answered_at IS NULL"
            " ORDER BY created_at, callback_url, github_environment"
        )
        return [PendingGate(*r) for r in rows]

    async def claim_gate(
        self,
        callback_url: str,
        github_environment: str,
        at: float,
        until: float,
        *,
        orphaned: bool = False,
    ) -> bool:
        """With `orphaned`, a claim its proven-dead claimer holds (`_orphaned`) is taken
        as a lapsed one: counted lapsed up to its end (`lapsed`), in `gates` too, where the
        same claim wrote the same end."""
        async with self._tx() as db:
            lapsed = at
            if orphaned:
                dead, proof = self._orphaned("gates_by_environment")
                rows = await db.fetch(
                    "SELECT claimed_until FROM gates_by_environment WHERE callback_url = ?"
                    " AND github_environment = ? AND answered_at IS NULL"
                    f" AND claimed_until IS NOT NULL AND {dead}",
                    callback_url,
                    github_environment,
                    *proof,
                )
                if rows:
                    lapsed = max(at, math.nextafter(float(rows[0][0]), math.inf))
            if not await self._claim_older_gate(
                db, callback_url, github_environment, lapsed, until
            ):
                return False
            claimed = await db.execute(
                _CLAIM_GATE.format(
                    table="gates_by_environment", claimer=", claimed_by = ?, claimed_run = ?"
                ),
                until,
                *self._claimer(),
                callback_url,
                github_environment,
                lapsed,
            )
        return claimed == 1

    async def gate_claimed_before(self, callback_url: str, github_environment: str) -> bool:
        row = await self._fetchone(
            "SELECT claimed_until FROM gates_by_environment WHERE callback_url = ?"
            " AND github_environment = ? AND answered_at IS NULL",
            callback_url,
            github_environment,
        )
        return row is not None and row[0] is not None

    async def answer_gate(
        self, callback_url: str, github_environment: str, answer: str, result: str, at: float
    ) -> None:
        async with self._tx() as db:
            for table in ("gates_by_environment", "gates"):  # `gates`: an older agent's
                await db.execute(
                    f"UPDATE {table} SET answer = ?, result = ?, answered_at = ?,"
                    " claimed_until = NULL WHERE callback_url = ? AND github_environment = ?"
                    " AND answered_at IS NULL",
                    answer,
                    _text(result[:2000]),
                    at,
                    callback_url,
                    github_environment,
                )

    async def refuse_gate(
        self, callback_url: str, github_environment: str, until: float, result: str
    ) -> bool:
        async with self._tx() as db:
            kept = await db.execute(
                "UPDATE gates_by_environment SET result = ? WHERE callback_url = ?"
                " AND github_environment = ? AND answered_at IS NULL AND claimed_until = ?",
                _text(result[:2000]),
                callback_url,
                github_environment,
                until,
            )
        return kept == 1

    async def gate_refused(self, callback_url: str, github_environment: str) -> str | None:
        row = await self._fetchone(
            "SELECT result FROM gates_by_environment WHERE callback_url = ?"
            " AND github_environment = ? AND answered_at IS NULL",
            callback_url,
            github_environment,
        )
        return None if row is None or row[0] is None else str(row[0])

    async def release_gate(self, callback_url: str, github_environment: str, until: float) -> bool:
        """Its claim ended at the epoch (`RELEASED_AT`: lapsed for any claimer, an older
        agent's too, yet still a claim for `gate_claimed_before`: the answer a stop cut
        may have reached GitHub), fenced by the claim's end (`until`, as `claim_gate`
        wrote it), so a claimer that came since keeps it; in `gates` too, where the claim
        was also taken for an agent of the version before migration 14
        (`_claim_older_gate`)."""
        return await self._move_gate_claim(callback_url, github_environment, until, RELEASED_AT)

    async def extend_gate(
        self, callback_url: str, github_environment: str, until: float, to: float
    ) -> bool:
        """Fenced by the claim's end (`until`) as `release_gate`, in both tables; its run
        unsaid (a rate limit's wait, kept across a restart: not `orphaned`)."""
        return await self._move_gate_claim(callback_url, github_environment, until, to)

    async def _move_gate_claim(
        self, callback_url: str, github_environment: str, until: float, to: float
    ) -> bool:
        async with self._tx() as db:
            moved = 0
            for table in ("gates_by_environment", "gates"):
                unsaid = ", claimed_run = NULL" if table == "gates_by_environment" else ""
                changed = await db.execute(
                    f"UPDATE {table} SET claimed_until = ?{unsaid} WHERE callback_url = ?"
                    " AND github_environment = ? AND answered_at IS NULL AND claimed_until = ?",
                    to,
                    callback_url,
                    github_environment,
                    until,
                )
                if table == "gates_by_environment":
                    moved = changed
        return moved == 1

    async def _take_over_gates(self) -> None:
        """Copy the gates an agent of the version before migration 14 left pending in
        `gates` (keyed by the callback URL alone; asked before the upgrade, or by an older
        replica during a rolling one) into `gates_by_environment`, so they are answered;
        one that gate answered before and asked again since (later) is opened again.
        A read first: the scan runs every second, and a write each time cost a commit."""
        left = await self._fetchone(
            "SELECT 1 FROM gates g WHERE g.answered_at IS NULL AND NOT EXISTS (SELECT 1"
            " FROM gates_by_environment n WHERE n.callback_url = g.callback_url"
            " AND n.github_environment = g.github_environment"
            " AND (n.answered_at IS NULL OR n.created_at >= g.created_at)) LIMIT 1"
        )
        if left is None:
            return
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO gates_by_environment (callback_url, environment, sha,"
                " github_environment, deadline, created_at) SELECT callback_url, environment,"
                " sha, github_environment, deadline, created_at FROM gates"
                " WHERE answered_at IS NULL ON CONFLICT (callback_url, github_environment)"
                " DO UPDATE SET environment = excluded.environment, sha = excluded.sha,"
                " deadline = excluded.deadline, created_at = excluded.created_at,"
                " claimed_until = NULL, answer = NULL, result = NULL, answered_at = NULL"
                " WHERE gates_by_environment.answered_at IS NOT NULL"
                " AND gates_by_environment.created_at < excluded.created_at"
            )

    async def _claim_older_gate(
        self, db: Connection, callback_url: str, github_environment: str, at: float, until: float
    ) -> bool:
        """Claim the gate in `gates` too, where an older agent would claim it: False if one
        holds it, or answered it since it was asked (its answer is then copied)."""
        if await db.execute(
            _CLAIM_GATE.format(table="gates", claimer=""),
            until,
            callback_url,
            github_environment,
            at,
        ):
            return True
        rows = await db.fetch(
            "SELECT answer, result, answered_at FROM gates WHERE callback_url = ?"
            " AND github_environment = ?",
            callback_url,
            github_environment,
        )
        if not rows:
            return True  # asked of this version only
        answer, result, answered_at = rows[0]
        if answered_at is None:
            return False  # an older agent's claim runs
        answered = await db.execute(
            "UPDATE gates_by_environment SET answer = ?, result = ?, answered_at = ?,"
            " claimed_until = NULL WHERE callback_url = ? AND github_environment = ?"
            " AND answered_at IS NULL AND created_at <= ?",
            answer,
            result,
            answered_at,
            callback_url,
            github_environment,
            answered_at,
        )
        return answered == 0  # answered before it was asked again: this ask is not

    # background probing ----------------------------------------------------

    async def take_background(
        self, environment: str, owner: str, now: float, until: float, *, steal: bool = False
    ) -> bool:
        held = (
            ""
            if steal
            else (
                " WHERE background_leases.owner = excluded.owner"
                " OR background_leases.lease_until <= ?"
            )
        )
        async with self._tx() as db:
            changed = await db.execute(
                "INSERT INTO background_leases (environment, owner, lease_until)"
                " VALUES (?, ?, ?) ON CONFLICT (environment) DO UPDATE"
                " SET owner = excluded.owner, lease_until = excluded.lease_until" + held,
                environment,
                owner,
                until,
                *(() if steal else (now,)),
            )
        return changed == 1

    async def release_background(self, owner: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM background_leases WHERE owner = ?", owner)

    async def prune_background_leases(self, lapsed_before: float) -> int:
        async with self._tx() as db:
            return await db.execute(
                "DELETE FROM background_leases WHERE lease_until < ?", lapsed_before
            )

    async def add_probe_summary(
        self,
        environment: str,
        check: str,
        at: float,
        summary: dict[str, Any],
        fingerprint: str | None = None,
        *,
        holder: str | None = None,
    ) -> bool:
        run = ProbeRun(environment, check, at, summary, fingerprint)
        async with self._tx() as db:
            if holder is None:
                return await db.execute(PROBE_INSERT, *_probe_row(run)) == 1
            return await db.execute(PROBE_INSERT_HELD, *_probe_row(run), environment, holder) == 1

    async def probe_summaries(
        self,
        environment: str,
        since: float,
        until: float,
        fingerprints: Collection[str] | None = None,
    ) -> list[tuple[str, float, dict[str, Any]]]:
        # `probe_summaries_by_env` bounds the scan to one lookback of this environment
        # (a few hundred rows); the fingerprint is a filter on those, no index of its own
        sql = (
            "SELECT check_name, at, summary FROM probe_summaries WHERE environment = ?"
            " AND at >= ? AND at < ?"
        )
        args: list[Any] = [environment, since, until]
        if fingerprints is not None:
            if not fingerprints:
                return []
            sql += f" AND fingerprint IN ({', '.join('?' * len(fingerprints))})"
            args.extend(fingerprints)
        rows = await self._fetchall(sql + " ORDER BY at", *args)
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    async def probe_fingerprints(self, environment: str, since: float) -> list[StoredProbes]:
        rows = await self._fetchall(
            "SELECT check_name, fingerprint, COUNT(*), MAX(at) FROM probe_summaries"
            " WHERE environment = ? AND at >= ? GROUP BY check_name, fingerprint",
            environment,
            since,
        )
        return [StoredProbes(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    async def prune_probe_summaries(self, before: float) -> int:
        async with self._tx() as db:
            return await db.execute("DELETE FROM probe_summaries WHERE at < ?", before)


def _round_records(
    rows: Sequence[Sequence[Any]], each: Callable[[RoundRecord], RoundRecord] | None = None
) -> list[RoundRecord]:
    if each is None:
        return [RoundRecord(r[0], r[1], r[2], json.loads(r[3])) for r in rows]
    # each round reshaped as it is parsed: its full summary is dropped before the next's
    return [each(RoundRecord(r[0], r[1], r[2], json.loads(r[3]))) for r in rows]
