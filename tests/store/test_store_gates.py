"""GitHub deployment protection rules in the store (contract §7), on SQLite and
PostgreSQL: a pending gate survives a restart, and only one claimer answers it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any, cast

from agent.records import GateAsk, GateState, IdempotentResponse, PendingGate
from agent.store.base import Store
from agent.store.sql import MIGRATIONS
from tests.store.conftest import Backend, PostgresBackend, SqliteBackend
from tests.store.peek import killed

URL = "https://api.github.com/repos/acme/web/actions/runs/{}/deployment_protection_rule"


def gate(run: int, created_at: float = 100.0) -> PendingGate:
    return PendingGate(URL.format(run), "production", "a" * 40, "Production", 400.0, created_at)


async def test_a_gate_is_stored_once_and_pending_until_answered(store: Store) -> None:
    assert await store.add_gate(gate(1))
    assert not await store.add_gate(gate(1, created_at=150.0))  # GitHub's redelivery
    assert await store.add_gate(gate(2, created_at=120.0))
    assert await store.pending_gates() == [gate(1), gate(2, created_at=120.0)]
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 210.0)
    assert await store.pending_gates() == [gate(2, created_at=120.0)]
    assert not await store.claim_gate(
        URL.format(1), "Production", 300.0, 330.0
    )  # answered: never again


async def test_one_claimer_at_a_time_and_a_lapsed_claim_is_taken_over(store: Store) -> None:
    await store.add_gate(gate(1))
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
    assert not await store.claim_gate(URL.format(1), "Production", 210.0, 240.0)  # another replica
    assert await store.claim_gate(URL.format(1), "Production", 231.0, 260.0)  # the first was killed
    assert not await store.claim_gate(URL.format(9), "Production", 231.0, 260.0)  # unknown


async def test_a_pending_gate_survives_a_restart(backend: Backend) -> None:
    first = backend.make()
    await first.open()
    try:
        await first.add_gate(gate(1))
    finally:
        await first.close()
    second = backend.make()
    await second.open()
    try:
        assert await second.pending_gates() == [gate(1)]
    finally:
        await second.close()


def delivery(guid: str) -> IdempotentResponse:
    key = f"hook:github:{guid}"
    return IdempotentResponse(key, key, 202, {"gate": "pending", "environment": "production"})


async def test_an_answered_gate_asked_again_by_a_new_delivery_is_pending_again(
    store: Store,
) -> None:
    """The run's next job into the environment (or a re-run) asks on the same callback
    URL: stored once and answered, the second request was dropped (DO NOTHING) and that
    job waited for GitHub's 30 days. A redelivery of either request changes nothing."""
    assert await store.add_gate(gate(1), delivery("guid-a"))
    assert not await store.add_gate(gate(1, created_at=110.0), delivery("guid-a"))
    assert not await store.add_gate(gate(1, created_at=120.0), delivery("guid-b"))  # pending
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 210.0)
    assert not await store.add_gate(gate(1, created_at=300.0), delivery("guid-a"))
    assert not await store.add_gate(gate(1, created_at=300.0), delivery("guid-b"))
    assert await store.pending_gates() == []
    assert await store.add_gate(gate(1, created_at=400.0), delivery("guid-c"))
    assert await store.pending_gates() == [gate(1, created_at=400.0)]
    assert await store.claim_gate(URL.format(1), "Production", 401.0, 430.0)
    assert await store.idempotent_response("hook:github:guid-c") == delivery("guid-c")


async def test_a_request_asked_before_is_not_asked_again_once_its_delivery_is_forgotten(
    store: Store,
) -> None:
    """Retention deletes a delivery's key after `store.retention`: the same request
    replayed then opened its answered gate again, and GitHub refused the second answer
    (an `integration_failed` page for a job that was not waiting)."""
    assert await store.add_gate(gate(1), delivery("request-a"))
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 210.0)
    assert await store.prune_idempotency(before=1e12) >= 1
    assert await store.idempotent_response("hook:github:request-a") is None
    assert not await store.add_gate(gate(1, created_at=500.0), delivery("request-a"))
    assert await store.pending_gates() == []
    assert not await store.claim_gate(URL.format(1), "Production", 501.0, 530.0)
    # another request on the callback URL (the run's next job) is asked
    assert await store.add_gate(gate(1, created_at=600.0), delivery("request-b"))
    assert await store.pending_gates() == [gate(1, created_at=600.0)]


async def test_a_request_asked_again_is_told_its_own_gates_state(store: Store) -> None:
    """A replayed request was answered `{"gate": "pending"}` whatever its gate's state,
    and a new request joining the gate still waiting for its answer read as a redelivery:
    `add_gate` says which it is, and `gate_state` the request's own answer."""
    asked = await store.add_gate(gate(1), delivery("request-a"))
    assert asked is GateAsk.ADDED
    assert await store.gate_state("hook:github:request-a", URL.format(1), "Production") == (
        GateState("pending")
    )
    # the run's next job into the environment, while the gate waits: it joins it
    joined = await store.add_gate(gate(1, created_at=120.0), delivery("request-b"))
    assert joined is GateAsk.JOINED
    assert await store.add_gate(gate(1, created_at=130.0), delivery("request-b")) is (GateAsk.ASKED)
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 210.0)
    answered = GateState("approved", "HTTP 204", 210.0)
    for request in ("request-a", "request-b"):
        key = f"hook:github:{request}"
        assert await store.gate_state(key, URL.format(1), "Production") == answered
    assert await store.prune_idempotency(before=1e12) >= 1  # forgotten: still asked before
    assert await store.add_gate(gate(1, created_at=300.0), delivery("request-a")) is (GateAsk.ASKED)
    # a re-run asks again: the gate is its own now, and request-a's answer is not kept
    assert await store.add_gate(gate(1, created_at=400.0), delivery("request-c")) is (GateAsk.ADDED)
    assert await store.gate_state("hook:github:request-c", URL.format(1), "Production") == (
        GateState("pending")
    )
    assert await store.gate_state("hook:github:request-a", URL.format(1), "Production") == (
        GateState("answered")
    )
    assert await store.gate_state("hook:github:request-z", URL.format(9), "Production") is None


async def test_requests_and_answered_gates_are_forgotten_a_pending_gate_kept(
    store: Store,
) -> None:
    """`gate_requests` (a row per request, for replays) and answered gates were kept for
    good; retention forgets those from before its bound, never a gate still pending."""
    assert await store.add_gate(gate(1), delivery("request-a"))
    assert await store.add_gate(gate(2, created_at=120.0), delivery("request-b"))
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 210.0)
    assert await store.prune_gates(before=110.0) == 1  # request-a alone
    assert await store.prune_gates(before=110.0) == 0
    assert await store.gate_state("hook:github:request-a", URL.format(1), "Production") == (
        GateState("approved", "HTTP 204", 210.0)  # the gate is kept till its answer's age
    )
    assert await store.prune_gates(before=1e12) == 2  # request-b, gate 1 answered
    assert await store.gate_state("hook:github:request-a", URL.format(1), "Production") is None
    assert await store.pending_gates() == [gate(2, created_at=120.0)]  # still waits
    assert await store.claim_gate(URL.format(2), "Production", 300.0, 330.0)


async def test_a_runs_gates_into_two_environments_are_two_gates(store: Store) -> None:
    """GitHub's callback URL is one per run: a run into two gated environments asks on
    one URL for each. Keyed by the URL alone, the second was dropped while the first
    waited, and its job waited for GitHub's 30 days."""
    eu = PendingGate(URL.format(1), "production-eu", "a" * 40, "Production-EU", 400.0, 101.0)
    assert await store.add_gate(gate(1), delivery("request-us"))
    assert await store.add_gate(eu, delivery("request-eu"))
    assert await store.pending_gates() == [gate(1), eu]
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
    assert await store.claim_gate(URL.format(1), "Production-EU", 200.0, 230.0)
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 210.0)
    assert await store.pending_gates() == [eu]


OLD_GATES = [
    "DROP TABLE gate_requests",
    "DROP TABLE gates_by_environment",
    "DROP TABLE gates",
    "ALTER TABLE alerts DROP COLUMN claimed_by",  # the migration after them, undone
    "ALTER TABLE alerts DROP COLUMN claimed_run",
    "ALTER TABLE rollbacks DROP COLUMN look_ups",  # and the one after that
    "DROP INDEX windows_by_env_registered",  # and migration 20
    "ALTER TABLE windows DROP COLUMN registered",
    "ALTER TABLE rollbacks DROP COLUMN requested_after",
    "CREATE TABLE gates (callback_url TEXT PRIMARY KEY, environment TEXT NOT NULL,"
    " sha TEXT NOT NULL, github_environment TEXT NOT NULL, deadline DOUBLE PRECISION NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL, claimed_until DOUBLE PRECISION, answer TEXT,"
    " result TEXT, answered_at DOUBLE PRECISION)",
    "CREATE INDEX gates_pending ON gates (created_at) WHERE answered_at IS NULL",
    "INSERT INTO gates (callback_url, environment, sha, github_environment, deadline,"
    f" created_at) VALUES ('{URL.format(1)}', 'production', '{'a' * 40}', 'Production',"
    " 400.0, 100.0)",
]
"""The gates as they were before the two gate migrations, with one pending."""
BEFORE_GATE_MIGRATIONS = next(
    at for at, script in enumerate(MIGRATIONS) if "CREATE TABLE gate_requests" in script
)
"""The schema version of a store from before them (later migrations run again too)."""


async def _run(backend: Backend, statements: list[str]) -> None:
    if isinstance(backend, SqliteBackend):
        with closing(sqlite3.connect(backend.path)) as db:
            for sql in statements:
                db.execute(sql)
            db.commit()
        return
    import asyncpg

    assert isinstance(backend, PostgresBackend)
    conn = await asyncpg.connect(backend.url)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def test_a_store_from_before_gates_by_environment_keeps_its_gates(
    backend: Backend,
) -> None:
    first = backend.make()
    await first.open()
    await first.close()
    await _run(backend, OLD_GATES)
    await backend.set_schema_version(BEFORE_GATE_MIGRATIONS)
    upgraded = backend.make()
    await upgraded.open()
    try:
        # the run's next job, asked after the upgrade, joins the gate asked before it
        assert await upgraded.add_gate(gate(1), delivery("request-next")) is GateAsk.JOINED
        assert await upgraded.pending_gates() == [gate(1)]
        eu = PendingGate(URL.format(1), "production-eu", "a" * 40, "Production-EU", 400.0, 101.0)
        assert await upgraded.add_gate(eu, delivery("request-eu"))
        assert await upgraded.pending_gates() == [gate(1), eu]
        assert await upgraded.claim_gate(URL.format(1), "Production", 200.0, 230.0)
        await upgraded.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 210.0)
        assert await upgraded.pending_gates() == [eu]  # answered once, not taken over again
    finally:
        await upgraded.close()


OLDER_ASKS = (
    "INSERT INTO gates (callback_url, environment, sha, github_environment, deadline,"
    " created_at) VALUES ('{}', 'production', '{}', 'Production', 400.0, 100.0)"
)
"""What an agent of the version before migration 14 (a replica not yet upgraded) writes."""


async def test_an_older_replicas_gate_is_taken_over_and_answered_once(backend: Backend) -> None:
    """Migration 14 adds `gates_by_environment` and leaves `gates` to an agent of the
    version before, still running during a rolling upgrade (the README's upgrade: it
    only adds). A gate that agent stores is answered by this one, its claim and answer
    kept in `gates` too: each version claims the other's and none answers it twice."""
    store = backend.make()
    await store.open()
    try:
        await _run(
            backend,
            [
                OLDER_ASKS.format(URL.format(1), "a" * 40),
                OLDER_ASKS.format(URL.format(2), "a" * 40),
                # the older agent holds gate 2's claim
                f"UPDATE gates SET claimed_until = 500.0 WHERE callback_url = '{URL.format(2)}'",
            ],
        )
        assert await store.pending_gates() == [gate(1), gate(2)]
        assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
        await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 210.0)
        assert not await store.claim_gate(URL.format(2), "Production", 200.0, 230.0)
        # the older agent answers gate 2 (its own statement, by the URL alone)
        await _run(
            backend,
            [
                "UPDATE gates SET answer = 'approved', result = 'HTTP 204', answered_at = 300.0,"
                f" claimed_until = NULL WHERE callback_url = '{URL.format(2)}'"
                " AND answered_at IS NULL"
            ],
        )
        assert not await store.claim_gate(URL.format(2), "Production", 600.0, 630.0)
        assert await store.pending_gates() == []  # both answered once
        assert await store.gate_state("x", URL.format(2), "Production") == GateState(
            "approved", "HTTP 204", 300.0
        )
        if isinstance(backend, SqliteBackend):  # the older agent's scan finds none left
            with closing(sqlite3.connect(backend.path)) as db:
                left = db.execute("SELECT callback_url FROM gates WHERE answered_at IS NULL")
                assert left.fetchall() == []
    finally:
        await store.close()


async def test_a_gate_claim_handed_back_is_claimed_again_at_once(store: Store) -> None:
    """A stop that cut a gate's answer (in flight, or in a retry's wait) hands its claim
    back: the next agent claims it at once, where it waited for it to lapse
    (`GATE_CLAIM_S`, 300 s). Fenced by the claim's end: a claim taken since, or an
    answer, is kept."""
    await store.add_gate(gate(1))
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 500.0)
    assert not await store.release_gate(URL.format(1), "Production", 499.0)  # not its claim
    assert not await store.claim_gate(URL.format(1), "Production", 210.0, 510.0)  # still held
    assert await store.release_gate(URL.format(1), "Production", 500.0)
    assert await store.claim_gate(URL.format(1), "Production", 210.0, 510.0)  # at once
    assert not await store.release_gate(URL.format(1), "Production", 500.0)  # claimed since
    assert not await store.claim_gate(URL.format(1), "Production", 220.0, 520.0)
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 230.0)
    assert not await store.release_gate(URL.format(1), "Production", 510.0)  # answered
    assert not await store.claim_gate(URL.format(1), "Production", 240.0, 540.0)
    assert not await store.release_gate(URL.format(9), "Production", 500.0)  # unknown


async def test_a_gate_claim_extended_is_held_to_its_new_end(store: Store) -> None:
    """An answer given up on a rate limit longer than the claim (`GATE_CLAIM_S`) moves its
    claim's end on to the wait asked: no other claimer takes it before then. Fenced by the
    claim's end, as `release_gate`: a claim taken since, or an answer, is kept."""
    await store.add_gate(gate(1))
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 500.0)
    assert not await store.extend_gate(URL.format(1), "Production", 499.0, 900.0)  # not its
    assert await store.extend_gate(URL.format(1), "Production", 500.0, 900.0)
    assert not await store.claim_gate(URL.format(1), "Production", 600.0, 900.0)  # held on
    assert not await store.claim_gate(URL.format(1), "Production", 899.0, 1199.0)
    assert await store.claim_gate(URL.format(1), "Production", 901.0, 1201.0)  # lapsed
    assert not await store.extend_gate(URL.format(1), "Production", 900.0, 2000.0)  # since
    assert not await store.claim_gate(URL.format(1), "Production", 1000.0, 1300.0)
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 1100.0)
    assert not await store.extend_gate(URL.format(1), "Production", 1201.0, 2000.0)  # answered
    assert not await store.extend_gate(URL.format(9), "Production", 500.0, 900.0)  # unknown


async def test_a_gate_claim_moved_to_a_sooner_end_lapses_then(store: Store) -> None:
    """A wait GitHub asked for inside one answer, shorter than the claim, moves the
    claim's end back to the wait's (`GateClaimWait.keep`): another claimer takes it once
    the wait is over, not only once the whole claim (`GATE_CLAIM_S`) would have lapsed."""
    await store.add_gate(gate(1))
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 500.0)
    assert await store.extend_gate(URL.format(1), "Production", 500.0, 260.0)
    assert not await store.claim_gate(URL.format(1), "Production", 259.0, 559.0)  # waiting
    assert await store.claim_gate(URL.format(1), "Production", 261.0, 561.0)  # wait over


async def test_a_gate_claimed_before_and_not_answered_says_so(store: Store) -> None:
    """`gate_claimed_before`: a claim that lapsed (its claimer killed, maybe after GitHub
    took its answer) or was handed back (a stop cut its answer in flight) is one an
    earlier answer may have gone out under; a fresh gate, or an answered one, is not."""
    await store.add_gate(gate(1))
    await store.add_gate(gate(2))
    assert not await store.gate_claimed_before(URL.format(1), "Production")
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
    assert await store.gate_claimed_before(URL.format(1), "Production")
    assert await store.claim_gate(URL.format(1), "Production", 231.0, 260.0)  # lapsed
    assert await store.gate_claimed_before(URL.format(1), "Production")
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 204", 240.0)
    assert not await store.gate_claimed_before(URL.format(1), "Production")
    assert await store.claim_gate(URL.format(2), "Production", 200.0, 230.0)
    assert await store.release_gate(URL.format(2), "Production", 230.0)
    assert await store.gate_claimed_before(URL.format(2), "Production")  # handed back
    assert await store.claim_gate(URL.format(2), "Production", 201.0, 231.0)  # at once
    assert not await store.gate_claimed_before(URL.format(9), "Production")  # unknown


async def test_a_refusal_kept_under_its_claim_is_read_until_the_gate_is_answered(
    store: Store,
) -> None:
    """`refuse_gate` keeps GitHub's 422 on the unanswered gate, fenced by the claim's end
    (a claim taken since keeps the gate as it is); `gate_refused` reads it, until the gate
    is answered, and a gate asked again after its answer starts without it."""
    await store.add_gate(gate(1))
    assert await store.gate_refused(URL.format(1), "Production") is None
    assert await store.claim_gate(URL.format(1), "Production", 200.0, 230.0)
    assert not await store.refuse_gate(URL.format(1), "Production", 229.0, "HTTP 422")  # not its
    assert await store.refuse_gate(URL.format(1), "Production", 230.0, "HTTP 422: refused")
    assert await store.gate_refused(URL.format(1), "Production") == "HTTP 422: refused"
    assert await store.pending_gates() == [gate(1)]  # still waits for its outcome
    assert await store.claim_gate(URL.format(1), "Production", 231.0, 260.0)  # lapsed
    assert await store.gate_refused(URL.format(1), "Production") == "HTTP 422: refused"
    await store.answer_gate(URL.format(1), "Production", "approved", "HTTP 422: paged", 240.0)
    assert await store.gate_refused(URL.format(1), "Production") is None
    assert not await store.refuse_gate(URL.format(1), "Production", 260.0, "HTTP 422")
    next_job = await store.add_gate(gate(1, created_at=300.0), delivery("guid-next"))
    assert next_job == GateAsk.ADDED  # the run's next job asks again: opened again
    assert await store.gate_refused(URL.format(1), "Production") is None
    assert await store.gate_refused(URL.format(9), "Production") is None  # unknown


async def test_a_gate_claim_handed_back_is_released_for_an_older_replica_too(
    backend: Backend,
) -> None:
    """A gate an agent of the version before migration 14 stored is claimed in `gates`
    too (`_claim_older_gate`): handed back, both claims are, so the next claimer of
    either version takes it at once."""
    store = backend.make()
    await store.open()
    try:
        await _run(backend, [OLDER_ASKS.format(URL.format(1), "a" * 40)])
        assert await store.pending_gates() == [gate(1)]  # taken over
        assert await store.claim_gate(URL.format(1), "Production", 200.0, 500.0)
        assert await store.release_gate(URL.format(1), "Production", 500.0)
        # the older agent's own claim is free too: ended at the epoch, lapsed for it
        assert await _fetch(backend, "SELECT claimed_until FROM gates") == [(0.0,)]
        assert await store.claim_gate(URL.format(1), "Production", 210.0, 510.0)
    finally:
        await store.close()


async def _fetch(backend: Backend, sql: str) -> list[tuple[object, ...]]:
    """Rows read past the store, as another agent reads them."""
    if isinstance(backend, SqliteBackend):
        with closing(sqlite3.connect(backend.path)) as db:
            return [tuple(row) for row in db.execute(sql).fetchall()]
    import asyncpg

    assert isinstance(backend, PostgresBackend)
    conn = await asyncpg.connect(backend.url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_a_gate_its_own_killed_process_was_answering_is_taken_at_once(
    backend: Backend,
) -> None:
    """kill -9 mid-answer, then a restart under the same replica id: the gate's claim (to
    400) is its killed process's, taken at once with `orphaned`; one moved
    on to a rate limit's wait (`extend_gate`) is kept to its end; a clean stop's claims
    wait (the process may still be answering until it exits)."""
    first, restart = backend.make(), backend.make()
    try:
        await first.open()
        await cast(Any, first).hold_replica_id("web-1")
        for run in (1, 2, 3):
            await first.add_gate(gate(run))
            assert await first.claim_gate(URL.format(run), "Production", 100.0, 400.0)
        assert await first.extend_gate(URL.format(2), "Production", 400.0, 900.0)
        await restart.open()
        assert not await restart.claim_gate(
            URL.format(1), "Production", 101.0, 401.0, orphaned=True
        )  # the id not held yet: nothing proven
        await killed(first)
        await cast(Any, restart).hold_replica_id("web-1")
        assert not await restart.claim_gate(URL.format(1), "Production", 101.0, 401.0)
        assert await restart.claim_gate(URL.format(1), "Production", 101.0, 401.0, orphaned=True)
        assert not await restart.claim_gate(
            URL.format(1), "Production", 102.0, 402.0, orphaned=True
        )  # the restart's own now
        assert not await restart.claim_gate(
            URL.format(2), "Production", 101.0, 401.0, orphaned=True
        )  # the asked wait, kept
        assert await restart.claim_gate(URL.format(2), "Production", 901.0, 1201.0, orphaned=True)
        assert await restart.claim_gate(URL.format(3), "Production", 101.0, 401.0, orphaned=True)
    finally:
        await first.close()
        await restart.close()


async def test_a_gate_claim_its_process_left_at_a_clean_stop_waits_its_end(
    backend: Backend,
) -> None:
    first, restart = backend.make(), backend.make()
    try:
        await first.open()
        await cast(Any, first).hold_replica_id("web-1")
        await first.add_gate(gate(1))
        assert await first.claim_gate(URL.format(1), "Production", 100.0, 400.0)
        await first.close()
        await restart.open()
        await cast(Any, restart).hold_replica_id("web-1")
        assert not await restart.claim_gate(
            URL.format(1), "Production", 101.0, 401.0, orphaned=True
        )
        assert await restart.claim_gate(URL.format(1), "Production", 401.0, 701.0, orphaned=True)
    finally:
        await restart.close()
