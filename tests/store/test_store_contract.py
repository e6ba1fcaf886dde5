"""The store contract: what every backend must do, run against SQLite and PostgreSQL.

Transactions, supersede, leases, paging, migrations, rollback intents, alert claims and
probe summaries. Both backends run the same SQL (`agent.store.sql`); what each does its
own way is checked in test_sqlite_store.py and test_postgres_store.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import Any, cast

import pytest

from agent.records import (
    DeliveryAttempt,
    DeployWindow,
    Fence,
    IdempotentResponse,
    RollbackIntent,
    RoundRecord,
    WindowCreated,
)
from agent.store.base import (
    AlertClaim,
    Conflict,
    OwedRetry,
    ProbeRun,
    SameDeployment,
    Store,
    StoredProbes,
    StoreError,
)
from tests.store.conftest import Backend
from tests.store.peek import deliveries, killed


def window(wid: str, env: str = "production", created: float = 100.0) -> DeployWindow:
    return DeployWindow(
        id=wid,
        environment=env,
        version="v1",
        previous_version="v0",
        commit=None,
        labels={"a": "b"},
        state="watching",
        deployed_at=created,
        ends_at=created + 60,
        created_at=created,
    )


async def test_refuses_a_newer_schema(backend: Backend) -> None:
    s = backend.make()
    await s.open()
    await s.close()
    await backend.set_schema_version(999)
    with pytest.raises(StoreError, match="newer"):
        await backend.make().open()


async def test_reopening_keeps_data_and_does_not_migrate_twice(backend: Backend) -> None:
    s = backend.make()
    await s.open()
    await s.create_window(window("dep_1"))
    await s.close()
    s = backend.make()
    await s.open()
    again = await s.get_window("dep_1")
    assert again is not None and again == window("dep_1")
    await s.close()


async def test_the_store_tells_its_own_clock_where_it_has_one(
    store: Store, backend: Backend
) -> None:
    # PostgreSQL's clock is the one every replica reads to pace rounds; SQLite has none
    # apart from this machine's
    told = await store.store_time()
    if backend.name == "sqlite":
        assert told is None
    else:
        assert told is not None and abs(told - time.time()) < 5


async def test_a_window_deployed_before_the_live_one_supersedes_it(store: Store) -> None:
    """Contract §2, whatever the `deployed_at` order: a late or retried registration of
    an older deploy supersedes the environment's live window (the API warns of it, from
    `created.superseded`), and the answer kept under its key is worded from what the
    store did, under the environment's lock."""
    await store.create_window(window("dep_live", created=100.0))
    older = dataclasses.replace(window("dep_older", created=130.0), deployed_at=90.0)
    kept: list[list[str]] = []

    def answer(created: WindowCreated) -> IdempotentResponse:
        kept.append([old.id for old in created.superseded])
        return IdempotentResponse("k-older", "h", 201, {"state": created.window.state})

    created = await store.create_window(older, answer)
    assert [w.id for w in created.superseded] == ["dep_live"]
    assert created.superseded[0].deployed_at == 100.0
    assert created.window.state == "watching"
    stored = await store.get_window("dep_older")
    assert stored is not None and (stored.state, stored.ended_at) == ("watching", None)
    live = await store.get_window("dep_live")
    assert live is not None and (live.state, live.ended_at) == ("superseded", 130.0)
    assert kept == [["dep_live"]]
    remembered = await store.idempotent_response("k-older")
    assert remembered is not None and remembered.body == {"state": "watching"}


@pytest.mark.parametrize(
    "state", ["passed", "rolled_back", "inconclusive", "superseded", "cancelled"]
)
async def test_a_window_deployed_before_an_ended_newer_one_is_watched(
    store: Store, state: str
) -> None:
    """A newer window of the environment that ended is no active window: a registration
    with a `deployed_at` before it is inserted watching and supersedes nothing (the
    version before inserted it `superseded` at once, a past `deployed_at` after an
    earlier test's or deploy's window unwatched)."""
    newer = dataclasses.replace(window("dep_newer", created=95.0), deployed_at=100.0)
    await store.create_window(newer)
    ok = await store.finish_window("dep_newer", state, None, 120.0)  # type: ignore[arg-type]
    assert ok
    older = dataclasses.replace(window("dep_older", created=130.0), deployed_at=90.0)
    older.ends_at = 90.0 + 3600
    created = await store.create_window(older)
    assert created.superseded == [] and created.window.state == "watching"
    stored = await store.get_window("dep_older")
    assert stored is not None and stored.state == "watching"
    kept = await store.get_window("dep_newer")
    assert kept is not None and kept.state == state


@pytest.mark.parametrize("ended", ["passed", "inconclusive", "failed"])
async def test_a_delivered_rollback_makes_its_window_rolled_back_in_the_same_write(
    store: Store, ended: str
) -> None:
    """A manual rollback of a passed or inconclusive window too: it stayed `passed` with
    its rollback `delivered` until a later step (`after_rollback`) changed it."""
    await store.create_window(window("dep_rb"))
    assert await store.finish_window("dep_rb", ended, None, 110.0)  # type: ignore[arg-type]
    intent = RollbackIntent("dep_rb", "pending", "{}", 111.0, lease_owner="me", lease_epoch=1)
    assert await store.add_rollback(intent, 111.0)
    delivered = dataclasses.replace(intent, state="delivered", last_status=200, finished_at=112.0)
    assert await store.settle_rollback(delivered)
    stored = await store.get_window("dep_rb")
    assert stored is not None and stored.state == "rolled_back"


async def test_new_window_supersedes_the_active_one(store: Store) -> None:
    await store.create_window(window("dep_1"))
    await store.create_window(window("dep_x", env="staging"))
    created = await store.create_window(window("dep_2", created=101))
    assert [w.id for w in created.superseded] == ["dep_1"]
    old = await store.get_window("dep_1")
    assert old is not None and old.state == "superseded"
    other = await store.get_window("dep_x")
    assert other is not None and other.state == "watching"
    assert created.superseded[0].state == "superseded"
    assert created.superseded[0].ended_at == 101
    assert old.ended_at == 101 and old.lease_owner is None


async def test_window_round_trips_every_field(store: Store) -> None:
    w = window("dep_1")
    w.commit = "abc123"
    w.labels = {"z": "1", "a": "2"}
    w.verdict = {"outcome": "pending", "p": math.inf}
    w.baseline = {"latency": {"p95": 0.25}}
    await store.create_window(w)
    got = await store.get_window("dep_1")
    assert got == w
    assert got is not None and list(got.labels) == ["z", "a"]  # key order kept
    assert await store.get_window("nope") is None


async def test_idempotency_is_stored_with_the_window(store: Store) -> None:
    idem = IdempotentResponse("key-1", "hash", 201, {"id": "dep_1"})
    await store.create_window(window("dep_1"), idem)
    again = await store.idempotent_response("key-1")
    assert again == idem
    assert await store.idempotent_response("other") is None


async def test_the_store_marks_how_far_back_it_forgot_idempotency_keys(store: Store) -> None:
    """`keys_forgotten_before`: the newest cutoff of a prune that deleted a key (a deploy
    event of before it may be a replay of a forgotten delivery); None until one did."""
    await store.create_window(window("dep_1", created=100), IdempotentResponse("k1", "h", 202, {}))
    await store.create_window(window("dep_2", created=300), IdempotentResponse("k2", "h", 202, {}))
    assert await store.prune_idempotency(50) == 0
    assert await store.keys_forgotten_before() is None  # nothing forgotten yet
    assert await store.prune_idempotency(200) == 1
    assert await store.keys_forgotten_before() == 200.0
    assert await store.prune_idempotency(150) == 0  # a replica whose clock runs behind
    assert await store.keys_forgotten_before() == 200.0
    assert await store.prune_idempotency(400) == 1
    assert await store.keys_forgotten_before() == 400.0


async def test_a_reused_idempotency_key_undoes_the_whole_insert(store: Store) -> None:
    """The idempotency row shares the window's transaction: both or neither."""
    await store.create_window(window("dep_1"), IdempotentResponse("key-1", "h", 201, {}))
    with pytest.raises(Exception):  # noqa: B017 - SQLite: IntegrityError; PostgreSQL: Conflict
        await store.create_window(
            window("dep_2", created=101), IdempotentResponse("key-1", "h", 201, {})
        )
    assert await store.get_window("dep_2") is None
    first = await store.get_window("dep_1")
    assert first is not None and first.state == "watching"  # the supersede was undone too


def of_deployment(wid: str, deployment: str, created: float) -> DeployWindow:
    opened = window(wid, created=created)
    opened.labels = {"vercel.deployment": deployment}
    return opened


def same(deployment: str, key: str) -> SameDeployment:
    """The deployment of an event keyed `key`, answering with the window it joins."""
    return SameDeployment(
        "vercel.deployment",
        deployment,
        lambda joined: IdempotentResponse(key, key, 202, {"deploy": joined.id}),
    )


async def test_an_event_of_a_watched_deployment_joins_its_window(store: Store) -> None:
    """Vercel's `deployment.promoted` after `deployment.succeeded` of one deployment: no
    second window, no supersede; the event's answer is kept under its key. Another
    deployment supersedes as before; once the window ended, the same deployment opens."""
    first = of_deployment("dep_1", "dpl_a", 100)
    await store.create_window(first)  # however it was opened: its label names it
    created = await store.create_window(
        of_deployment("dep_2", "dpl_a", 101),
        IdempotentResponse("k2", "k2", 202, {"deploy": "dep_2"}),
        same=same("dpl_a", "k2"),
    )
    assert (created.joined, created.window.id, created.superseded) == (True, "dep_1", [])
    assert await store.get_window("dep_2") is None
    assert await store.get_window("dep_1") == first  # still watching, untouched
    assert await store.idempotent_response("k2") == IdempotentResponse(
        "k2", "k2", 202, {"deploy": "dep_1"}
    )
    created = await store.create_window(
        of_deployment("dep_3", "dpl_b", 102), same=same("dpl_b", "k3")
    )
    assert not created.joined
    assert [w.id for w in created.superseded] == ["dep_1"]
    assert await store.finish_window("dep_3", "passed", None, 103.0)
    created = await store.create_window(
        of_deployment("dep_4", "dpl_b", 104), same=same("dpl_b", "k4")
    )
    assert (created.joined, created.window.id, created.superseded) == (False, "dep_4", [])


async def test_an_event_of_a_watched_deployment_naming_another_commit_supersedes_it(
    store: Store,
) -> None:
    """A deployment has one commit: the same id with another commit is a sender reusing
    ids, another deploy. One naming none, or an abbreviation of the commit, joins."""
    first = of_deployment("dep_1", "dpl_a", 100)
    first.commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"
    await store.create_window(first)
    for commit in (None, "9fceb02", "9FCEB02D0AE598E95DC970B74767F19372D61AF8"):
        event = same("dpl_a", f"k_{commit}")._replace(version=commit)
        created = await store.create_window(of_deployment("dep_x", "dpl_a", 101), same=event)
        assert (created.joined, created.window.id) == (True, "dep_1"), commit
    other = same("dpl_a", "k_other")._replace(version="b" * 40)
    created = await store.create_window(of_deployment("dep_2", "dpl_a", 102), same=other)
    assert not created.joined and [w.id for w in created.superseded] == ["dep_1"]


@pytest.mark.parametrize(
    ("watched", "event", "joins"),
    [
        ("9fceb02", "9fceb02d0ae598e95dc970b74767f19372d61af8", True),  # git's abbreviation
        ("9fceb02d0ae598e95dc970b74767f19372d61af8", "9FCEB02", True),
        ("main", "main", True),
        ("9fc", "9fceb02d0ae598e95dc970b74767f19372d61af8", False),  # too short to name it
        ("release-2", "release-20", False),
        ("v2", "v2.4.1", False),
        ("main", "9fceb02d0ae598e95dc970b74767f19372d61af8", False),
    ],
)
async def test_only_a_hex_abbreviation_of_seven_or_more_names_a_commit_by_its_start(
    store: Store, watched: str, event: str, joins: bool
) -> None:
    """A commit as registered (`--commit`) is free text: a prefix of any text was taken
    for the same commit, so `release-2` joined `release-20`'s event and `9fc` any SHA
    starting so. Hex of 7 digits or more (git's abbreviations) matches by its start;
    other texts compare whole."""
    first = of_deployment("dep_1", "dpl_a", 100)
    first.commit = watched
    await store.create_window(first)
    event_of = same("dpl_a", "k_event")._replace(version=event)
    created = await store.create_window(of_deployment("dep_2", "dpl_a", 101), same=event_of)
    assert created.joined is joins
    assert [w.id for w in created.superseded] == ([] if joins else ["dep_1"])


async def test_the_other_providers_event_of_the_same_commit_joins_and_adds_its_labels(
    store: Store,
) -> None:
    """Vercel's GitHub integration reports one deploy twice: a GitHub deployment of the
    same commit joins the window a Vercel event opened, and the window takes the GitHub
    deployment's labels (not its URL: the window probes what it probed), in the same
    transaction. Another commit, or the same provider's other deployment, supersedes."""
    first = of_deployment("dep_1", "dpl_a", 100)
    first.version = "sha1"
    await store.create_window(first)
    github = {
        "github.deployment": "42",
        "github.repository": "acme/web",
        "github.environment_url": "https://elsewhere.example",
    }
    event = SameDeployment(
        "github.deployment",
        "42",
        lambda joined: IdempotentResponse("g1", "g1", 202, {"deploy": joined.id}),
        version="sha1",
        labels=github,
    )
    created = await store.create_window(window("dep_2", created=101), same=event)
    assert (created.joined, created.window.id) == (True, "dep_1")
    stored = await store.get_window("dep_1")
    assert stored is not None and stored.state == "watching"
    assert stored.labels == {
        "vercel.deployment": "dpl_a",
        "github.deployment": "42",
        "github.repository": "acme/web",
    }
    other = event._replace(value="43", version="sha2")
    created = await store.create_window(window("dep_3", created=102), same=other)
    assert not created.joined and [w.id for w in created.superseded] == ["dep_1"]


async def test_two_replicas_opening_one_deployment_at_once_open_one_window(
    backend: Backend,
) -> None:
    """The check shares the insert's transaction and the environment's lock: of two
    events of one deployment on two replicas at the same instant, one opens, one joins."""
    first, second = backend.make(), backend.make()
    await first.open()
    await second.open()
    try:
        for n in range(10):
            deployment = f"dpl_{n}"
            created = await asyncio.gather(
                *(
                    s.create_window(
                        of_deployment(f"dep_{n}_{i}", deployment, 100.0 + n),
                        same=same(deployment, f"k_{n}_{i}"),
                    )
                    for i, s in enumerate((first, second))
                )
            )
            assert sorted(c.joined for c in created) == [False, True]
            assert created[0].window.id == created[1].window.id
        watching = await first.list_windows(state="watching")
        assert len(watching.items) == 1
        everything = await first.list_windows(limit=100)
        assert len(everything.items) == 10
    finally:
        await first.close()
        await second.close()


async def test_list_pages_newest_first_with_a_cursor(store: Store) -> None:
    for i in range(5):
        await store.create_window(window(f"dep_{i}", env=f"e{i}", created=100 + i))
    first = await store.list_windows(limit=2)
    assert [w.id for w in first.items] == ["dep_4", "dep_3"]
    assert first.next_cursor
    second = await store.list_windows(limit=2, cursor=first.next_cursor)
    assert [w.id for w in second.items] == ["dep_2", "dep_1"]
    third = await store.list_windows(limit=2, cursor=second.next_cursor)
    assert [w.id for w in third.items] == ["dep_0"]
    assert third.next_cursor is None
    with pytest.raises(ValueError):
        await store.list_windows(cursor="garbage!!")


async def test_list_filters_and_breaks_ties_by_id(store: Store) -> None:
    for wid in ("dep_a", "dep_b", "dep_c"):
        await store.create_window(window(wid, env=wid, created=100.5))
    await store.create_window(window("dep_d", env="dep_a", created=101))
    watching = await store.list_windows(state="watching", limit=10)
    assert [w.id for w in watching.items] == ["dep_d", "dep_c", "dep_b"]
    in_a = await store.list_windows(environment="dep_a")
    assert [w.id for w in in_a.items] == ["dep_d", "dep_a"]
    both = await store.list_windows(environment="dep_a", state="superseded")
    assert [w.id for w in both.items] == ["dep_a"]
    page = await store.list_windows(limit=2)
    assert [w.id for w in page.items] == ["dep_d", "dep_c"]
    rest = await store.list_windows(limit=2, cursor=page.next_cursor)
    assert [w.id for w in rest.items] == ["dep_b", "dep_a"]
    assert rest.next_cursor is None


async def test_leases_exclude_other_owners_until_they_lapse(store: Store) -> None:
    await store.create_window(window("dep_1"))
    mine = await store.claim_windows("a", now=1000, lease_s=30)
    assert [w.id for w in mine] == ["dep_1"]
    assert await store.claim_windows("b", now=1010, lease_s=30) == []
    a = mine[0].fence
    assert await store.renew_lease("dep_1", a, until=1100)
    assert not await store.renew_lease("dep_1", Fence("b", a.epoch), until=1100)
    taken = await store.claim_windows("b", now=1101, lease_s=30)
    assert [w.id for w in taken] == ["dep_1"]
    assert taken[0].lease_owner == "b" and taken[0].lease_until == 1131
    assert taken[0].lease_epoch == a.epoch + 1
    assert not await store.renew_lease("dep_1", a, until=1200)


async def test_every_claim_that_changes_hands_raises_the_epoch(store: Store) -> None:
    await store.create_window(window("dep_1"))
    [first] = await store.claim_windows("a", now=1000, lease_s=30)
    [renewed] = await store.claim_windows("a", now=1020, lease_s=30)
    assert renewed.lease_epoch == first.lease_epoch  # held all along: the same claim
    # a paused past its lease and claims again: a new claim, though nobody else took it
    [again] = await store.claim_windows("a", now=1051, lease_s=30)
    assert again.lease_epoch == first.lease_epoch + 1
    assert not await store.record_round(RoundRecord("dep_1", 1, 1.0, {}), None, first.fence)
    assert not await store.set_baseline("dep_1", {"x": {}}, first.fence)
    assert not await store.finish_window("dep_1", "passed", None, 1052, fence=first.fence)
    assert not await store.claim_alert("dep_1", "breach:x", 1052, first.fence)
    assert await store.record_round(RoundRecord("dep_1", 1, 1.0, {}), None, again.fence)
    assert await store.claim_alert("dep_1", "breach:x", 1052, again.fence)
    assert await store.finish_window("dep_1", "passed", None, 1053, fence=again.fence)
    # the holder that ended the window still sends its final alerts; the stale one never
    assert await store.claim_alert("dep_1", "passed", 1053, again.fence)
    assert not await store.claim_alert("dep_1", "inconclusive", 1053, first.fence)


async def test_claims_return_held_windows_oldest_first_and_skip_ended(store: Store) -> None:
    await store.create_window(window("dep_2", env="e2", created=102))
    await store.create_window(window("dep_1", env="e1", created=101))
    await store.create_window(window("dep_3", env="e3", created=103))
    await store.finish_window("dep_3", "passed", None, 104)
    assert [w.id for w in await store.claim_windows("a", 1000, 30)] == ["dep_1", "dep_2"]
    # claiming again renews what we hold
    again = await store.claim_windows("a", 1020, 30)
    assert [(w.id, w.lease_until) for w in again] == [("dep_1", 1050), ("dep_2", 1050)]


async def test_windows_are_read_many_at_once_and_unknown_ids_are_skipped(store: Store) -> None:
    """More ids than one query binds (`WINDOWS_PER_QUERY`): the watcher starting thousands."""
    ids = [f"dep_{i}" for i in range(1, 1202)]
    # made side by side (each its own environment): PostgreSQL's on the pool's connections
    await asyncio.gather(
        *(
            store.create_window(window(wid, env=f"e{i}", created=100 + i))
            for i, wid in enumerate(ids)
        )
    )
    found = await store.get_windows([*ids, "dep_unknown"])
    assert sorted(w.id for w in found) == sorted(ids)
    assert {w.id: w.environment for w in found}["dep_7"] == "e6"
    assert await store.get_windows([]) == []


async def test_a_released_lease_is_free_at_once(store: Store) -> None:
    await store.create_window(window("dep_1"))
    [mine] = await store.claim_windows("a", 1000, 30)
    await store.release_lease("dep_1", Fence("b", mine.lease_epoch))  # not b's: no effect
    assert await store.claim_windows("b", 1001, 30) == []
    await store.release_lease("dep_1", mine.fence)
    assert [w.id for w in await store.claim_windows("b", 1001, 30)] == ["dep_1"]


async def test_a_stop_hands_back_only_the_leases_still_its_own(store: Store) -> None:
    """`release_leases` (a clean stop's windows): a lease another replica took since, or
    claimed afresh under a new epoch, stays with its holder."""
    for n, wid in enumerate(("dep_1", "dep_2", "dep_3")):
        await store.create_window(window(wid, env=f"env-{n}", created=100.0 + n))
    held = {w.id: w.fence for w in await store.claim_windows("a", 1000, 30)}
    assert [w.id for w in await store.claim_windows("b", 1031, 30)] == ["dep_1", "dep_2", "dep_3"]
    assert [w.id for w in await store.claim_windows("a", 1062, 30)] == ["dep_1", "dep_2", "dep_3"]
    retaken = {w.id: w.fence for w in await store.claim_windows("a", 1062, 30)}
    await store.release_leases([("dep_1", retaken["dep_1"]), ("dep_2", held["dep_2"])])
    assert [w.id for w in await store.claim_windows("c", 1063, 30)] == ["dep_1"]
    kept = await store.get_window("dep_2")
    assert kept is not None and kept.lease_owner == "a"  # an old epoch: kept


async def test_a_round_without_a_verdict_keeps_the_stored_one(store: Store) -> None:
    """The daemon words a window's verdict every few seconds, not every round."""
    await store.create_window(window("dep_1"))
    worded = {"outcome": "pending", "reason": "no rule failed after 1 round", "rules": []}
    assert await store.record_round(RoundRecord("dep_1", 1, 1.0, {}), worded)
    assert await store.record_round(RoundRecord("dep_1", 2, 2.0, {}), None)
    stored = await store.get_window("dep_1")
    assert stored is not None and (stored.rounds, stored.verdict) == (2, worded)
    again = worded | {"reason": "no rule failed after 3 rounds"}
    assert await store.record_round(RoundRecord("dep_1", 3, 3.0, {}), again)
    stored = await store.get_window("dep_1")
    assert stored is not None and stored.verdict == again


async def test_round_is_not_recorded_once_the_window_ended(store: Store) -> None:
    await store.create_window(window("dep_1"))
    assert await store.record_round(RoundRecord("dep_1", 1, 1.0, {"x": 1}), {"outcome": "pending"})
    await store.cancel_window("dep_1", at=5)
    assert not await store.record_round(RoundRecord("dep_1", 2, 2.0, {}), None)
    assert [r.number for r in await store.rounds("dep_1")] == [1]
    with pytest.raises(Conflict):
        await store.cancel_window("dep_1", at=6)
    with pytest.raises(KeyError):
        await store.cancel_window("nope", at=6)


async def test_rounds_are_fenced_and_never_overwritten(store: Store) -> None:
    await store.create_window(window("dep_1"))
    [mine] = await store.claim_windows("a", 1000, 30)
    a, b = mine.fence, Fence("b", mine.lease_epoch)
    assert not await store.record_round(RoundRecord("dep_1", 1, 1.0, {}), None, b)
    assert await store.record_round(RoundRecord("dep_1", 1, 1.0, {"try": 1}), {"o": 1}, a)
    # the same round again, or an older one, is refused: the count never goes back
    assert not await store.record_round(RoundRecord("dep_1", 1, 1.5, {"try": 2}), None, a)
    assert await store.record_round(RoundRecord("dep_1", 2, 2.0, {}), {"o": 2}, a)
    assert not await store.record_round(RoundRecord("dep_1", 1, 1.5, {"try": 2}), None, a)
    assert [(r.number, r.summary) for r in await store.rounds("dep_1")] == [
        (1, {"try": 1}),
        (2, {}),
    ]
    got = await store.get_window("dep_1")
    assert got is not None and got.rounds == 2 and got.verdict == {"o": 2}


async def test_cancel_returns_the_cancelled_window(store: Store) -> None:
    await store.create_window(window("dep_1"))
    await store.claim_windows("a", 1000, 30)
    cancelled = await store.cancel_window("dep_1", at=7)
    assert (cancelled.state, cancelled.ended_at, cancelled.lease_owner) == ("cancelled", 7, None)
    assert await store.get_window("dep_1") == cancelled


async def test_finish_stores_the_rollback_intent_once(store: Store) -> None:
    await store.create_window(window("dep_1"))
    intent = RollbackIntent("dep_1", "pending", '{"event":"rollback"}', requested_at=10)
    assert await store.finish_window("dep_1", "failed", {"outcome": "fail"}, 10, intent)
    assert not await store.finish_window("dep_1", "failed", {"outcome": "fail"}, 11, intent)
    assert [i.window_id for i in await store.pending_rollbacks()] == ["dep_1"]
    stored = await store.get_rollback("dep_1")
    assert stored is not None and stored.body == intent.body


async def test_finish_claims_its_alerts_in_the_same_transaction(store: Store) -> None:
    """A crash right after the end leaves its alert claimed with what to send; an end
    refused (the window had ended, or the fence lost it) claims nothing."""
    await store.create_window(window("dep_1"))
    [held] = await store.claim_windows("a", 1000, 30)
    assert not await store.finish_window(
        "dep_1", "passed", None, 10, fence=Fence("b", 1), alerts=[AlertClaim("passed", "{}")]
    )
    assert await store.alert_events("dep_1") == {}
    claims = [AlertClaim("passed", '{"alert": {}}')]
    assert await store.finish_window("dep_1", "passed", None, 10, fence=held.fence, alerts=claims)
    listed = await store.unsettled_alerts(claimed_before=11.0)
    assert [(a.window_id, a.event, a.claimed_at, a.payload) for a in listed] == [
        ("dep_1", "passed", 10.0, '{"alert": {}}')
    ]
    assert not await store.finish_window("dep_1", "failed", None, 12, alerts=[AlertClaim("x")])
    assert await store.alert_events("dep_1") == {"passed": "claimed"}


async def test_finish_keeps_the_last_verdict_when_given_none(store: Store) -> None:
    await store.create_window(window("dep_1"))
    await store.record_round(RoundRecord("dep_1", 1, 1.0, {}), {"outcome": "pass"})
    assert await store.finish_window("dep_1", "passed", None, 20)
    got = await store.get_window("dep_1")
    assert got is not None
    assert (got.state, got.verdict, got.ended_at) == ("passed", {"outcome": "pass"}, 20)
    assert await store.get_rollback("dep_1") is None


async def failed_with_rollback(store: Store, lease: tuple[str, float] | None = None) -> None:
    await store.create_window(window("dep_1"))
    intent = RollbackIntent("dep_1", "pending", "{}", requested_at=10, next_attempt_at=10)
    if lease is not None:
        intent.lease_owner, intent.lease_epoch, intent.lease_until = lease[0], 1, lease[1]
    assert await store.finish_window("dep_1", "failed", None, 10, intent)


async def test_a_rollback_has_one_sender_at_a_time(store: Store) -> None:
    await failed_with_rollback(store, lease=("a", 40.0))  # handed to a with the verdict
    assert await store.take_rollback("dep_1", "b", now=20, until=50) is None
    mine = await store.take_rollback("dep_1", "a", 20, 50, held=Fence("a", 1))
    assert mine is not None and mine.fence == Fence("a", 2) and mine.lease_until == 50
    assert await store.begin_attempt("dep_1", mine.fence, now=21, until=60) == 1
    # a stops (killed mid-attempt): once its lease lapsed, b takes over, a is fenced
    assert await store.take_rollback("dep_1", "b", now=59, until=89) is None
    theirs = await store.take_rollback("dep_1", "b", now=61, until=91)
    assert theirs is not None and theirs.fence == Fence("b", 3) and theirs.attempts == 1
    assert await store.begin_attempt("dep_1", mine.fence, now=62, until=99) is None
    mine.state, mine.last_status, mine.next_attempt_at = "pending", 503, 70.0
    assert not await store.settle_rollback(mine)
    assert await store.begin_attempt("dep_1", theirs.fence, now=62, until=99) == 2
    # a lease that lapsed and was taken by nobody still refuses its old holder's attempt
    assert await store.begin_attempt("dep_1", theirs.fence, now=100, until=130) is None


async def test_a_newer_deploy_of_the_environment_refuses_the_rollbacks_next_attempt(
    store: Store,
) -> None:
    """`newer_deploy` and `begin_attempt`'s guard read one definition: what does not
    count leaves the attempt to go out, and the first deploy that does refuses it in the
    same transaction (the rollback keeps its attempts, the lease its holder's)."""
    await store.create_window(window("dep_1", created=100))
    intent = RollbackIntent("dep_1", "pending", "{}", requested_at=110)
    assert await store.finish_window("dep_1", "failed", None, 110, intent)
    taken = await store.take_rollback("dep_1", "a", now=111, until=500)
    assert taken is not None
    not_newer = [
        dataclasses.replace(window("dep_2", "staging", created=120), version="v2"),
        dataclasses.replace(window("dep_4", created=120), version="v0"),  # the rollback landing
        dataclasses.replace(window("dep_5", created=125), version="v2", deployed_at=90),  # late
        dataclasses.replace(window("dep_6", created=130), version="v2", deployed_at=900),
    ]
    for other in not_newer:
        await store.create_window(other)
    assert await store.newer_deploy("dep_1", now=200) is None
    # counting previous_version, for a failed rollback's page: the rollback done by hand
    landed = await store.newer_deploy("dep_1", now=200, counting_previous=True)
    assert landed is not None and landed.id == "dep_4"
    assert await store.begin_attempt("dep_1", taken.fence, now=200, until=500) == 1

    await store.create_window(dataclasses.replace(window("dep_7", created=150), version="v2"))

    found = await store.newer_deploy("dep_1", now=200)
    assert found is not None and (found.id, found.version) == ("dep_7", "v2")
    newest = await store.newer_deploy("dep_1", now=200, counting_previous=True)
    assert newest is not None and newest.id == "dep_7"
    assert await store.newer_deploy("dep_1", now=149) is None  # not yet deployed then
    assert await store.begin_attempt("dep_1", taken.fence, now=200, until=500) is None
    stored = await store.get_rollback("dep_1")
    assert stored is not None and stored.attempts == 1 and stored.fence == taken.fence
    assert await store.newer_deploy("dep_missing", now=200) is None


async def test_registered_after_the_rollbacks_request_is_the_stores_order_not_a_clock(
    store: Store,
) -> None:
    """A deploy registered before the rollback was requested (one asked for by hand after
    it, knowingly) is not newer, though a replica whose clock runs ahead stamped it after
    the request; one registered after is, though a replica whose clock runs behind stamped
    it before: the store's order of the environment's registrations (migration 20), where
    their clocks were compared and the rollback went out after the fix, undoing it."""
    await store.create_window(window("dep_1", created=100))
    assert await store.finish_window("dep_1", "failed", None, 104)
    ahead = dataclasses.replace(window("dep_2", created=170), version="v2", deployed_at=105)
    await store.create_window(ahead)
    assert await store.add_rollback(RollbackIntent("dep_1", "pending", "{}", requested_at=110))
    taken = await store.take_rollback("dep_1", "a", now=111, until=500)
    assert taken is not None
    assert await store.newer_deploy("dep_1", now=200) is None
    assert await store.begin_attempt("dep_1", taken.fence, now=200, until=500) == 1

    behind = dataclasses.replace(window("dep_3", created=108), version="v3")
    await store.create_window(behind)

    found = await store.newer_deploy("dep_1", now=200)
    assert found is not None and found.id == "dep_3"
    assert await store.begin_attempt("dep_1", taken.fence, now=200, until=500) is None


async def test_a_rollback_held_through_a_wait_is_taken_once_a_newer_deploy_is_old_enough(
    store: Store,
) -> None:
    """`take_replaced_rollback`: another sender's lease, live, through a stored wait, is
    taken only once a newer deploy took effect (and registered) by `replaced_by`, never
    while an attempt of it is in flight, nor by its own holder."""
    await store.create_window(window("dep_1", created=100))
    intent = RollbackIntent("dep_1", "pending", "{}", requested_at=110)
    assert await store.finish_window("dep_1", "failed", None, 110, intent)
    held = await store.take_rollback("dep_1", "a", now=111, until=500)
    assert held is not None
    assert await store.begin_attempt("dep_1", held.fence, now=111, until=500) == 1
    await store.create_window(dataclasses.replace(window("dep_7", created=150), version="v2"))
    # attempt 1 in flight (no outcome stored): not taken, whatever the newer deploy
    assert await store.take_replaced_rollback("dep_1", "b", until=600, replaced_by=160) is None
    held.attempts, held.last_status, held.next_attempt_at, held.lease_until = 1, 503, 400, 430
    assert await store.settle_rollback(held, DeliveryAttempt("dep_1", 1, 111, 503, "503", 0.1))

    assert await store.take_replaced_rollback("dep_1", "b", until=600, replaced_by=149) is None
    assert await store.take_replaced_rollback("dep_1", "a", until=600, replaced_by=160) is None
    taken = await store.take_replaced_rollback("dep_1", "b", until=600, replaced_by=160)

    assert taken is not None and taken.fence == Fence("b", held.lease_epoch + 1)
    assert (taken.lease_until, taken.attempts, taken.next_attempt_at) == (600, 1, 400)
    assert await store.begin_attempt("dep_1", held.fence, now=401, until=500) is None
    # its last attempt unanswered, or a 409 (a look owed, once, before giving up): taken
    # all the same, where its killed sender's lease was waited out
    for status, error, taker in ((None, "timed out after 10s", "c"), (409, "HTTP 409", "d")):
        taken.last_status, taken.last_error = status, error
        assert await store.settle_rollback(taken)
        again = await store.take_replaced_rollback("dep_1", taker, until=700, replaced_by=160)
        assert again is not None and again.fence == Fence(taker, taken.lease_epoch + 1)
        assert (again.last_status, again.next_attempt_at) == (status, 400)
        taken = again


async def test_a_rollbacks_look_ups_are_counted_with_its_lease_and_outlive_it(store: Store) -> None:
    """The asks of which deployment to roll back to are counted before each goes out,
    fenced by the lease; the next sender reads the count where the last left it."""
    await failed_with_rollback(store)
    mine = await store.take_rollback("dep_1", "a", now=11, until=40)
    assert mine is not None and mine.look_ups == 0
    assert await store.count_look_up("dep_1", mine.fence, now=12, until=50) == 1
    assert await store.count_look_up("dep_1", mine.fence, now=13, until=50) == 2
    assert await store.take_rollback("dep_1", "b", now=45, until=80) is None  # extended
    theirs = await store.take_rollback("dep_1", "b", now=51, until=80)
    assert theirs is not None and theirs.look_ups == 2  # a was killed: b goes on from 2
    assert await store.count_look_up("dep_1", mine.fence, now=52, until=90) is None
    assert await store.count_look_up("dep_1", theirs.fence, now=52, until=90) == 3
    # one a stop let go of is taken back, not spent
    assert await store.count_look_up("dep_1", theirs.fence, now=52, until=90, by=-1) == 2
    assert await store.count_look_up("dep_1", theirs.fence, now=52, until=90) == 3
    assert await store.begin_attempt("dep_1", theirs.fence, now=53, until=90) == 1
    stored = await store.get_rollback("dep_1")
    assert stored is not None and (stored.look_ups, stored.attempts) == (3, 1)


async def test_attempts_are_numbered_once_and_their_rows_never_overwritten(
    store: Store,
) -> None:
    await failed_with_rollback(store)
    taken = await store.take_rollback("dep_1", "a", now=11, until=100)
    assert taken is not None
    one = await store.begin_attempt("dep_1", taken.fence, now=11, until=100)
    two = await store.begin_attempt("dep_1", taken.fence, now=12, until=100)
    assert (one, two) == (1, 2)  # the first never reported back (killed): a row says so
    taken.last_status, taken.last_error, taken.lease_until = 503, "HTTP 503", 100.0
    second = DeliveryAttempt("dep_1", 2, 12.0, 503, "HTTP 503: bad\x00byte", 0.1)
    assert await store.settle_rollback(taken, second)
    replay = DeliveryAttempt("dep_1", 2, 13.0, 200, None, 0.2)
    assert await store.settle_rollback(taken, replay)  # the rollback row is still a's …
    rows = await deliveries(store, "dep_1")  # … but attempt 2's row keeps its outcome
    assert [(r.attempt, r.status) for r in rows] == [(1, None), (2, 503)]
    assert rows[0].error is not None and rows[0].error.startswith("in flight")
    assert rows[1].error is not None and rows[1].error.startswith("HTTP 503: bad")
    stored = await store.get_rollback("dep_1")
    assert stored is not None and stored.attempts == 2 and stored.last_status == 503


async def test_a_delivery_is_stored_even_by_a_sender_that_lost_its_lease(store: Store) -> None:
    """A 2xx is a fact: once stored, the new holder finds nothing left to send."""
    await failed_with_rollback(store)
    stale = await store.take_rollback("dep_1", "a", now=11, until=20)
    assert stale is not None
    assert await store.begin_attempt("dep_1", stale.fence, now=11, until=20) == 1
    fresh = await store.take_rollback("dep_1", "b", now=21, until=50)
    assert fresh is not None
    stale.state, stale.last_status, stale.finished_at = "delivered", 200, 22.0
    assert await store.settle_rollback(stale, DeliveryAttempt("dep_1", 1, 11, 200, None, 0.1))
    assert await store.begin_attempt("dep_1", fresh.fence, now=22, until=50) is None
    stored = await store.get_rollback("dep_1")
    assert stored is not None
    assert (stored.state, stored.attempts, stored.last_status, stored.finished_at) == (
        "delivered",
        1,
        200,
        22.0,
    )
    assert await store.pending_rollbacks() == []
    rolled_back = await store.get_window("dep_1")
    assert rolled_back is not None and rolled_back.state == "rolled_back"


async def test_a_settled_rollback_claims_its_alerts_in_the_same_transaction(
    store: Store,
) -> None:
    """Only the call that settles it claims (at `finished_at`): one refused by the fence,
    or one for a rollback already settled, claims nothing."""
    await failed_with_rollback(store)
    taken = await store.take_rollback("dep_1", "a", now=11, until=20)
    assert taken is not None
    lost = dataclasses.replace(taken, lease_epoch=taken.lease_epoch + 1)
    lost.state, lost.finished_at = "failed", 12.0
    assert not await store.settle_rollback(lost, None, [AlertClaim("rollback_failed", "{}")])
    assert await store.alert_events("dep_1") == {}
    taken.state, taken.last_status, taken.finished_at = "failed", 400, 13.0
    claims = [AlertClaim("rollback_failed", '{"alert": {}}')]
    assert await store.settle_rollback(taken, None, claims)
    listed = await store.unsettled_alerts(claimed_before=14.0)
    assert [(a.event, a.claimed_at, a.payload) for a in listed] == [
        ("rollback_failed", 13.0, '{"alert": {}}')
    ]
    again = dataclasses.replace(taken, finished_at=15.0)
    assert not await store.settle_rollback(again, None, [AlertClaim("rollback_delivered", "{}")])
    assert await store.alert_events("dep_1") == {"rollback_failed": "claimed"}


async def test_a_failed_delivery_leaves_the_window_failed(store: Store) -> None:
    await failed_with_rollback(store)
    taken = await store.take_rollback("dep_1", "a", now=11, until=20)
    assert taken is not None
    taken.state, taken.last_status = "failed", 503
    assert await store.settle_rollback(taken)
    failed = await store.get_window("dep_1")
    assert failed is not None and failed.state == "failed"
    assert await store.take_rollback("dep_1", "b", now=30, until=40) is None  # ended


async def test_alert_claims_survive_a_reopen(backend: Backend) -> None:
    s = backend.make()
    await s.open()
    await s.create_window(window("dep_1"))
    assert await s.claim_alert("dep_1", "passed", 1.0)
    assert not await s.claim_alert("dep_1", "passed", 2.0)
    await s.close()
    s = backend.make()
    await s.open()
    assert not await s.claim_alert("dep_1", "passed", 3.0)
    assert await s.claim_alert("dep_1", "breach:x", 3.0)
    await s.close()


async def test_a_claim_without_an_outcome_is_taken_over_once_after_it_lapses(
    backend: Backend,
) -> None:
    """A follow-up's lease: its sender died mid-call; two replicas then race to take it."""
    first, second = backend.make(), backend.make()
    await first.open()
    await second.open()
    try:
        await first.create_window(window("dep_1"))
        assert await first.take_alert("dep_1", "then:db", 10.0, lapsed_before=0.0)
        # still within its lease: nobody else may send
        assert not await second.take_alert("dep_1", "then:db", 20.0, lapsed_before=5.0)
        # lapsed: exactly one of two simultaneous takers wins
        taken = await asyncio.gather(
            first.take_alert("dep_1", "then:db", 30.0, lapsed_before=25.0),
            second.take_alert("dep_1", "then:db", 30.0, lapsed_before=25.0),
        )
        assert sorted(t is not None for t in taken) == [False, True]
        # an outcome ends it: no lapse brings it back
        await second.record_alert("dep_1", "then:db", "delivered", "HTTP 200")
        assert not await first.take_alert("dep_1", "then:db", 90.0, lapsed_before=80.0)
        assert await first.alert_events("dep_1") == {"then:db": "delivered"}
    finally:
        await first.close()
        await second.close()


async def test_a_claim_handed_back_is_taken_at_once_and_only_by_its_taker(store: Store) -> None:
    """A follow-up a stop cut: its sender gives its claim back, and the next taker takes it
    within the lease, where it waited for the claim to lapse; a sender whose claim was
    taken over since, or that has an outcome, gives nothing back."""
    await store.create_window(window("dep_1"))
    assert await store.take_alert("dep_1", "then:db", 100.0, lapsed_before=1.0)
    assert not await store.take_alert("dep_1", "then:db", 110.0, lapsed_before=50.0)
    assert not await store.release_alert("dep_1", "then:db", 99.0)  # not its claim's time
    assert await store.release_alert("dep_1", "then:db", 100.0)
    assert await store.take_alert("dep_1", "then:db", 110.0, lapsed_before=50.0)
    assert not await store.release_alert("dep_1", "then:db", 100.0)  # taken since
    await store.record_alert("dep_1", "then:db", "delivered", "HTTP 200")
    assert not await store.release_alert("dep_1", "then:db", 110.0)  # it has an outcome
    assert not await store.take_alert("dep_1", "then:db", 120.0, lapsed_before=115.0)
    assert await store.alert_events("dep_1") == {"then:db": "delivered"}


async def test_a_claim_handed_back_keeps_the_attempts_its_senders_made(store: Store) -> None:
    """A follow-up's attempts are its own: each sender that hands it back adds the calls
    it made, and the next taker is told them by its take (a hand-back refused adds
    nothing). They came from a second read after the take: a store that failed between
    the two left the follow-up claimed and unsent until its lease lapsed."""
    await store.create_window(window("dep_1"))
    first = await store.take_alert("dep_1", "then:db", 100.0, lapsed_before=1.0)
    assert first is not None and first.attempts == 0
    assert await store.release_alert("dep_1", "then:db", 100.0, attempts=2)
    second = await store.take_alert("dep_1", "then:db", 110.0, lapsed_before=50.0)
    assert second is not None and second.attempts == 2
    assert not await store.release_alert("dep_1", "then:db", 100.0, attempts=5)  # not its
    assert await store.release_alert("dep_1", "then:db", 110.0, attempts=3)
    third = await store.take_alert("dep_1", "then:db", 120.0, lapsed_before=50.0)
    assert third is not None and third.attempts == 5
    assert await store.take_alert("dep_1", "then:db", 130.0, lapsed_before=50.0) is None


async def test_a_claim_kept_through_a_wait_counts_its_senders_attempts(store: Store) -> None:
    """A stop in a wait its receiver asked for keeps the claim (its stamp, so its lapse)
    as it is, and adds the calls its sender made: the next taker, once it lapses, is
    told them, as after a hand-back; only its taker's count is added."""
    await store.create_window(window("dep_1"))
    assert await store.take_alert("dep_1", "then:db", 100.0, lapsed_before=1.0)
    assert not await store.count_alert_attempts("dep_1", "then:db", 99.0, 5)  # not its
    assert await store.count_alert_attempts("dep_1", "then:db", 100.0, 2)
    assert await store.take_alert("dep_1", "then:db", 110.0, lapsed_before=100.0) is None
    later = await store.take_alert("dep_1", "then:db", 200.0, lapsed_before=150.0)
    assert later is not None and later.attempts == 2
    await store.record_alert("dep_1", "then:db", "delivered", "HTTP 200")
    assert not await store.count_alert_attempts("dep_1", "then:db", 200.0, 1)  # an outcome


async def test_an_alert_claimed_with_its_payload_is_listed_until_it_has_an_outcome(
    store: Store,
) -> None:
    """What a dead sender left: the alert to send, the channels that took it already; a
    claim without a payload (a follow-up's, an older agent's) is not listed."""
    await store.create_window(window("dep_1"))
    assert await store.claim_alert("dep_1", "passed", 10.0, payload='{"alert": {}}')
    assert await store.claim_alert("dep_1", "then:db", 10.0)
    assert await store.claim_alert("dep_1", "breach:x", 20.0, payload="{}")
    await store.note_alert_channel("dep_1", "passed", "0:json://a")
    await store.note_alert_channel("dep_1", "passed", "2:mailto://b")
    listed = await store.unsettled_alerts(claimed_before=15.0)
    assert [(a.event, a.payload, a.sent_to) for a in listed] == [
        ("passed", '{"alert": {}}', frozenset({"0:json://a", "2:mailto://b"}))
    ]
    assert await store.take_alert("dep_1", "passed", 30.0, lapsed_before=15.0)
    assert [a.event for a in await store.unsettled_alerts(claimed_before=25.0)] == ["breach:x"]
    await store.record_alert("dep_1", "breach:x", "sent", "")
    assert [a.event for a in await store.unsettled_alerts(claimed_before=99.0)] == ["passed"]


async def opened_as_web_1(store: Store) -> None:
    """`store` opened as replica web-1, holding its id (a process that held it is gone)."""
    await store.open()
    await cast(Any, store).hold_replica_id("web-1")


async def test_a_claim_its_own_killed_process_left_is_taken_at_once_by_the_restart(
    backend: Backend,
) -> None:
    """kill -9 mid-send, then a restart under the same replica id: holding the id (on
    PostgreSQL its session lock, on SQLite the file's lock) proves the process that held
    it before gone, so its claim is listed and taken at once (`orphaned`), long before its
    lease (claimed at 100, the lease lapsing at 200). Not before the restart holds the id,
    never without `orphaned`, and never a claim of the restart's own run."""
    first, restart = backend.make(), backend.make()
    try:
        await opened_as_web_1(first)
        await first.create_window(window("dep_1"))
        assert await first.claim_alert("dep_1", "failed", 100.0, payload='{"alert": {}}')
        await restart.open()
        assert await restart.unsettled_alerts(claimed_before=100.0, orphaned=True) == []
        assert await restart.take_alert("dep_1", "failed", 101.0, 100.0, orphaned=True) is None
        await killed(first)
        await cast(Any, restart).hold_replica_id("web-1")
        assert await restart.unsettled_alerts(claimed_before=100.0) == []
        assert await restart.take_alert("dep_1", "failed", 101.0, lapsed_before=100.0) is None
        listed = await restart.unsettled_alerts(claimed_before=100.0, orphaned=True)
        assert [(a.event, a.claimed_at) for a in listed] == [("failed", 100.0)]
        assert await restart.take_alert("dep_1", "failed", 101.0, 100.0, orphaned=True)
        # taken: the restart's own now, a live sender's to its own scans
        assert await restart.unsettled_alerts(claimed_before=100.0, orphaned=True) == []
        assert await restart.take_alert("dep_1", "failed", 102.0, 100.0, orphaned=True) is None
        assert await restart.claim_alert("dep_1", "passed", 103.0, payload="{}")
        assert await restart.unsettled_alerts(claimed_before=100.0, orphaned=True) == []
    finally:
        await first.close()
        await restart.close()


async def test_a_claim_its_killed_process_held_to_wait_is_not_taken_at_once(
    backend: Backend,
) -> None:
    """A claim taken `waiting` (a status's rate limit asked for a wait: `_stamp_for_retry`)
    is kept to its lease by the restart, its killed taker's death notwithstanding; one the
    same process took to send is the restart's at once (`orphaned`)."""
    first, restart = backend.make(), backend.make()
    try:
        await first.open()
        await cast(Any, first).hold_replica_id("web-1")
        await first.create_window(window("dep_1"))
        for key in ("github:in_progress", "github:success"):
            assert await first.take_alert("dep_1", key, 100.0, lapsed_before=100.0)
        assert await first.take_alert(
            "dep_1", "github:in_progress", 150.0, lapsed_before=100.5, waiting=True
        )
        await killed(first)
        await restart.open()
        await cast(Any, restart).hold_replica_id("web-1")
        assert (
            await restart.take_alert("dep_1", "github:in_progress", 101.0, 100.0, orphaned=True)
            is None
        )
        assert await restart.take_alert("dep_1", "github:success", 101.0, 100.0, orphaned=True)
        assert await restart.take_alert("dep_1", "github:in_progress", 161.0, 150.5, orphaned=True)
    finally:
        await first.close()
        await restart.close()


@pytest.mark.parametrize("ended", ["killed", "stopped"])
async def test_a_retry_its_own_killed_process_was_sending_is_due_at_once_for_the_restart(
    backend: Backend, ended: str
) -> None:
    """A retry taken (held until 200) by a process killed mid-send is due at once for the
    restart under its replica id, not after its lease; one only scheduled (due at 500) is
    not made due by its scheduler's death; a stopped process's taken retry waits its
    lease (it may still be sending until it exits)."""
    first, restart = backend.make(), backend.make()
    try:
        await opened_as_web_1(first)
        for wid, retry_at in (("dep_1", 100.0), ("dep_2", 500.0)):
            await first.create_window(window(wid))
            assert await first.claim_alert(wid, "failed", 90.0, payload='{"alert": {}}')
            await first.record_alert(wid, "failed", "failed", "HTTP 500", retry_at=retry_at)
        assert await first.take_alert_retry("dep_1", "failed", 100.0, 200.0)
        await (killed(first) if ended == "killed" else first.close())
        await opened_as_web_1(restart)
        assert await restart.alert_retries_due(101.0) == []
        due = await restart.alert_retries_due(101.0, orphaned=True)
        taken = await restart.take_alert_retry("dep_1", "failed", 101.0, 300.0, orphaned=True)
        if ended == "killed":
            assert due == [("dep_1", "failed")]
            assert taken is not None and taken.retries == 2
            # the restart's own now: not due to its own scans until its lease lapses
            assert await restart.alert_retries_due(299.0, orphaned=True) == []
        else:
            assert (due, taken) == ([], None)
            assert await restart.alert_retries_due(201.0, orphaned=True) == [("dep_1", "failed")]
    finally:
        await first.close()
        await restart.close()


async def test_a_windows_owed_retries_are_listed_with_whether_a_sender_holds_one(
    backend: Backend,
) -> None:
    """`alert_retries_of`: the window's alerts owed a retry, due or not, each with its
    payload, the channels that took it and when it is due; one taken says so (a later
    alert leaves it to its sender), an outcome without a retry or a mark is not listed."""
    store = backend.make()
    try:
        await store.open()
        await cast(Any, store).hold_replica_id("web-1")
        await store.create_window(window("dep_1"))
        payload = '{"alert": {}}'
        for event, retry_at in (
            ("breach:a", 100.0),
            ("rollback_requested", 500.0),
            ("passed", None),
        ):
            assert await store.claim_alert("dep_1", event, 90.0, payload=payload)
            await store.note_alert_channel("dep_1", event, "0:json://a")
            await store.record_alert("dep_1", event, "partial", "1 of 2", retry_at=retry_at)
        owed = sorted(await store.alert_retries_of("dep_1"))
        assert owed == [
            OwedRetry("breach:a", payload, frozenset({"0:json://a"}), 100.0, False),
            OwedRetry("rollback_requested", payload, frozenset({"0:json://a"}), 500.0, False),
        ]
        assert await store.take_alert_retry("dep_1", "breach:a", 100.0, 200.0)
        taken = {o.event: (o.retry_at, o.taken) for o in await store.alert_retries_of("dep_1")}
        assert taken == {"breach:a": (200.0, True), "rollback_requested": (500.0, False)}
        assert await store.alert_retries_of("dep_2") == []
    finally:
        await store.close()


async def test_a_claim_its_process_left_at_a_clean_stop_waits_its_lease(
    backend: Backend,
) -> None:
    """A process that closed its store may still be sending (apprise's threads, until it
    exits): its claim without an outcome waits its lease, as before, for the restart too."""
    first, restart = backend.make(), backend.make()
    try:
        await opened_as_web_1(first)
        await first.create_window(window("dep_1"))
        assert await first.claim_alert("dep_1", "failed", 100.0, payload='{"alert": {}}')
        await first.close()
        await opened_as_web_1(restart)
        assert await restart.unsettled_alerts(claimed_before=100.0, orphaned=True) == []
        assert await restart.take_alert("dep_1", "failed", 101.0, 100.0, orphaned=True) is None
        listed = await restart.unsettled_alerts(claimed_before=101.0, orphaned=True)
        assert [a.event for a in listed] == ["failed"]  # once lapsed
    finally:
        await restart.close()


async def test_a_failed_alert_is_retried_when_due_by_one_taker_at_a_time(
    backend: Backend,
) -> None:
    """A channel failed the alert: its retry is due at the time stored with the outcome;
    of two replicas one takes it, holds it for its lease, and a taker that died leaves it
    due again once that lapses (each take counted). The channels that took it stay
    noted; settling ends it."""
    first, second = backend.make(), backend.make()
    await first.open()
    await second.open()
    try:
        await first.create_window(window("dep_1"))
        assert await first.claim_alert("dep_1", "passed", 10.0, payload='{"alert": {}}')
        await first.note_alert_channel("dep_1", "passed", "1:json://b")
        await first.record_alert("dep_1", "passed", "partial", "1 of 2", retry_at=15.0)
        assert await first.alert_retries_due(14.0) == []
        assert await first.next_alert_retry() == 15.0
        assert await second.alert_retries_due(15.0) == [("dep_1", "passed")]

        taken = await asyncio.gather(
            first.take_alert_retry("dep_1", "passed", 16.0, until=30.0),
            second.take_alert_retry("dep_1", "passed", 16.0, until=30.0),
        )
        retry = next(t for t in taken if t is not None)
        assert [t is None for t in taken].count(True) == 1
        assert (retry.payload, retry.sent_to, retry.retries) == (
            '{"alert": {}}',
            frozenset({"1:json://b"}),
            1,
        )
        assert (retry.lease_until, retry.result, retry.detail) == (30.0, "partial", "1 of 2")
        assert await first.alert_retries_due(29.0) == []  # held by its taker
        await first.note_alert_channel("dep_1", "passed", "0:json://a")  # took it this time

        # the taker died: due again once its lease lapsed, with what it noted
        again = await second.take_alert_retry("dep_1", "passed", 31.0, until=45.0)
        assert again is not None and again.retries == 2
        assert again.sent_to == frozenset({"0:json://a", "1:json://b"})
        assert not await first.settle_alert_retry(retry, "sent", "late", None)  # not its own
        assert await second.settle_alert_retry(again, "sent", "2 of 2", None)
        assert await first.alert_retries_due(1e12) == []
        assert await first.next_alert_retry() is None
        assert await first.alert_events("dep_1") == {"passed": "sent"}
    finally:
        await first.close()
        await second.close()


async def test_only_a_claim_with_its_payload_can_be_retried(store: Store) -> None:
    """A mark (a follow-up's claim) has nothing to send again."""
    await store.create_window(window("dep_1"))
    assert await store.claim_alert("dep_1", "then:db", 10.0)
    await store.record_alert("dep_1", "then:db", "failed", "HTTP 500", retry_at=15.0)
    assert await store.alert_retries_due(99.0) == []
    assert await store.take_alert_retry("dep_1", "then:db", 99.0, until=120.0) is None


async def test_a_grouped_alert_claims_all_its_keys_or_none(store: Store) -> None:
    """A round's breaches go out as one alert (`claim_alert`'s `also`): all its keys are
    claimed with it or none is (one taken already: the group claims nothing, and is
    claimed again without it); the marks take the alert's outcome, a retry's too, and
    only the alert itself is listed, retried or taken over."""
    await store.create_window(window("dep_1"))
    assert await store.claim_alert("dep_1", "breach:b", 5.0)
    group = ("breach:a", ["breach:b", "breach:c"])
    assert not await store.claim_alert("dep_1", group[0], 10.0, payload="{}", also=group[1])
    assert await store.alert_events("dep_1") == {"breach:b": "claimed"}
    also = ["breach:c"]
    assert await store.claim_alert("dep_1", "breach:a", 10.0, payload="{}", also=also)
    assert not await store.claim_alert("dep_1", "breach:d", 11.0, payload="{}", also=also)
    assert [c.event for c in await store.unsettled_alerts(claimed_before=99.0)] == ["breach:a"]

    await store.record_alert("dep_1", "breach:a", "failed", "HTTP 503", retry_at=15.0, also=also)
    assert await store.alert_events("dep_1") == {
        "breach:a": "failed",
        "breach:b": "claimed",
        "breach:c": "failed",
    }
    assert await store.alert_retries_due(99.0) == [("dep_1", "breach:a")]
    retry = await store.take_alert_retry("dep_1", "breach:a", 16.0, until=30.0)
    assert retry is not None
    assert await store.settle_alert_retry(retry, "sent", "delivered", None, also)
    lapsed = retry._replace(lease_until=29.0)
    assert not await store.settle_alert_retry(lapsed, "failed", "late", None, ["breach:b"])
    events = await store.alert_events("dep_1")
    assert events == {"breach:a": "sent", "breach:b": "claimed", "breach:c": "sent"}


async def test_claims_without_outcome_lists_one_event_oldest_first(store: Store) -> None:
    await store.create_window(window("dep_1"))
    await store.create_window(window("dep_2", env="staging"))
    assert await store.claim_alert("dep_2", "rollback:follow-ups", 10.0)
    assert await store.claim_alert("dep_1", "rollback:follow-ups", 20.0)
    assert await store.claim_alert("dep_1", "passed", 5.0)
    assert await store.claims_without_outcome("rollback:follow-ups") == ["dep_2", "dep_1"]
    assert await store.claims_without_outcome("rollback:follow-ups", limit=1) == ["dep_2"]
    await store.record_alert("dep_2", "rollback:follow-ups", "done", "")
    assert await store.claims_without_outcome("rollback:follow-ups") == ["dep_1"]


async def test_the_newest_window_of_a_commit_is_found_by_version_or_commit(
    store: Store,
) -> None:
    """However many windows came since (a gate's staging window)."""
    sha = "d" * 40
    by_version = dataclasses.replace(window("dep_1", env="staging", created=1.0), version=sha)
    by_commit = dataclasses.replace(window("dep_2", env="staging", created=2.0), commit=sha)
    elsewhere = dataclasses.replace(window("dep_3", env="production", created=3.0), version=sha)
    for w in (by_version, by_commit, elsewhere):
        await store.create_window(w)
    for n in range(60):
        await store.create_window(window(f"dep_n{n:02}", env="staging", created=10.0 + n))
    found = await store.newest_window_of("staging", sha)
    assert found is not None and found.id == "dep_2"
    assert await store.newest_window_of("staging", "e" * 40) is None
    older = await store.newest_window_of("production", sha)
    assert older is not None and older.id == "dep_3"


async def test_a_window_of_a_short_commit_is_a_window_of_its_sha(store: Store) -> None:
    """`register --commit 9fceb02` (the contract's example): the protection rule of
    9fceb02d0a… found no staging window, waited its whole timeout and rejected."""
    sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"
    short = dataclasses.replace(window("dep_1", env="staging", created=1.0), commit=sha[:7])
    by_version = dataclasses.replace(window("dep_2", env="staging", created=2.0), version=sha[:10])
    other = dataclasses.replace(window("dep_3", env="staging", created=3.0), commit="9fceb03")
    for w in (short, other):
        await store.create_window(w)
    found = await store.newest_window_of("staging", sha)
    assert found is not None and found.id == "dep_1"
    await store.create_window(by_version)
    found = await store.newest_window_of("staging", sha)
    assert found is not None and found.id == "dep_2"
    assert await store.newest_window_of("staging", sha[:6] + "0" * 34) is None


async def test_alert_results_are_recorded_per_event(store: Store) -> None:
    await store.create_window(window("dep_1"))
    await store.claim_alert("dep_1", "passed", 1.0)
    await store.claim_alert("dep_1", "breach:x", 1.0)
    await store.record_alert("dep_1", "passed", "sent", "x" * 5000)
    await store.record_alert("dep_1", "unclaimed", "sent", "")  # no claim: nothing stored
    assert await store.alert_events("dep_1") == {"passed": "sent", "breach:x": "claimed"}
    assert await store.alert_events("dep_2") == {}


async def test_probe_summaries_window_and_prune(store: Store) -> None:
    for at in (10.0, 20.0, 30.0):
        await store.add_probe_summary("production", "api", at, {"ok": [1]})
    rows = await store.probe_summaries("production", 15, 31)
    assert [r[1] for r in rows] == [20.0, 30.0]
    assert await store.prune_probe_summaries(before=25) == 2
    assert await store.probe_summaries("production", 0, 100) == [("api", 30.0, {"ok": [1]})]
    assert await store.probe_summaries("staging", 0, 100) == []


async def test_a_background_run_is_kept_only_while_no_other_replica_holds_its_lease(
    store: Store,
) -> None:
    """A run stored with its `holder` is kept while the environment's background lease is
    its holder's or no one's, not once another replica took it (its window probes the
    environment): the run went on beside that window (`agent.windows.in_flight`)."""
    kept = await store.add_probe_summary("production", "api", 10.0, {"ok": [1]}, holder="b")
    assert kept  # no lease at all
    assert await store.take_background("production", "b", 10.0, 40.0)
    assert await store.add_probe_summary("production", "api", 20.0, {"ok": [1]}, "fp", holder="b")
    assert await store.take_background("production", "a", 25.0, 55.0, steal=True)
    assert not await store.add_probe_summary("production", "api", 30.0, {"ok": [0]}, holder="b")
    assert await store.add_probe_summary("staging", "api", 30.0, {"ok": [1]}, holder="b")
    assert await store.add_probe_summary("production", "api", 35.0, {"ok": [1]}, holder="a")
    assert await store.add_probe_summary("production", "api", 36.0, {"ok": [1]})  # no holder
    rows = await store.probe_summaries("production", 0, 100)
    assert [at for _, at, _ in rows] == [10.0, 20.0, 35.0, 36.0]
    assert await store.probe_summaries("production", 0, 100, ["fp"]) == [("api", 20.0, {"ok": [1]})]


async def test_probe_summaries_keep_what_each_run_probed(store: Store) -> None:
    """A baseline asks for the runs of its checks' fingerprints only; rows stored before
    fingerprints were kept (None) match none; a start reads what each check's runs probed."""
    await store.add_probe_summary("production", "api", 10.0, {"ok": [0]}, "fp-old")
    await store.add_probe_summary("production", "api", 20.0, {"ok": [1]}, "fp-new")
    await store.add_probe_summary("production", "web", 25.0, {"ok": [1]}, "fp-web")
    await store.add_probe_summary("production", "api", 30.0, {"ok": [0]})
    await store.add_probe_summary("staging", "api", 40.0, {"ok": [1]}, "fp-new")
    matching = await store.probe_summaries("production", 0, 100, ["fp-new", "fp-web"])
    assert matching == [("api", 20.0, {"ok": [1]}), ("web", 25.0, {"ok": [1]})]
    assert await store.probe_summaries("production", 0, 100, []) == []
    assert len(await store.probe_summaries("production", 0, 100)) == 4  # unfiltered
    stored = await store.probe_fingerprints("production", since=15.0)
    assert sorted(stored, key=lambda s: (s.check, s.fingerprint or "")) == [
        StoredProbes("api", None, 1, 30.0),
        StoredProbes("api", "fp-new", 1, 20.0),
        StoredProbes("web", "fp-web", 1, 25.0),
    ]
    assert await store.probe_fingerprints("staging", since=0.0) == [
        StoredProbes("api", "fp-new", 1, 40.0)
    ]


async def test_prune_rounds_deletes_only_rounds_of_windows_ended_long_enough_ago(
    store: Store,
) -> None:
    for wid, env in (("dep_old", "a"), ("dep_new", "b"), ("dep_live", "c")):
        await store.create_window(window(wid, env))
        for n in (1, 2, 3):
            assert await store.record_round(RoundRecord(wid, n, float(n), {"n": n}), None)
    await store.finish_window("dep_old", "passed", {"outcome": "pass"}, 200.0)
    await store.finish_window("dep_new", "passed", {"outcome": "pass"}, 400.0)
    assert await store.prune_rounds(ended_before=300.0, limit=2) == 2  # in batches
    assert await store.prune_rounds(ended_before=300.0, limit=2) == 1
    assert await store.prune_rounds(ended_before=300.0) == 0
    assert await store.rounds("dep_old") == []
    assert len(await store.rounds("dep_new")) == 3
    assert len(await store.rounds("dep_live")) == 3  # a watching window is never pruned
    kept = await store.get_window("dep_old")
    assert kept is not None and kept.verdict == {"outcome": "pass"} and kept.rounds == 3


async def test_baseline_is_stored_on_the_window(store: Store) -> None:
    await store.create_window(window("dep_1"))
    await store.set_baseline("dep_1", {"errors": {"rate": 0.01, "n": 300}})
    got = await store.get_window("dep_1")
    assert got is not None and got.baseline == {"errors": {"rate": 0.01, "n": 300}}


async def test_ping_is_false_once_closed(backend: Backend) -> None:
    s = backend.make()
    await s.open()
    assert await s.ping()
    await s.close()
    assert not await s.ping()


async def test_a_unique_violation_is_a_conflict(store: Store) -> None:
    """Two requests racing on one idempotency key: the loser gets `Conflict` on both."""
    key = IdempotentResponse("k1", "h", 201, {"id": "dep_1"})
    await store.create_window(window("dep_1"), key)
    with pytest.raises(Conflict):
        await store.create_window(window("dep_2", env="other"), key)
    assert await store.get_window("dep_2") is None


async def test_a_conflict_is_heard_once_what_caused_it_is_committed(store: Store) -> None:
    """Concurrent inserts of one idempotency key: every loser's `Conflict` comes once the
    winner's row is committed, so the read it makes next finds it (the API replays it
    rather than answering 500). On SQLite the losers often join the winner's group
    commit, where they see its row before it is committed."""
    for race in range(10):
        key = IdempotentResponse(f"k{race}", "h", 201, {"n": race})

        async def insert(i: int, key: IdempotentResponse = key, race: int = race) -> str:
            try:
                await store.create_window(window(f"dep_{race}_{i}", env=f"e{race}_{i}"), key)
            except Conflict:
                found = await store.idempotent_response(key.key)
                return "replayed" if found == key else f"conflict before commit: {found}"
            return "created"

        outcomes = sorted(await asyncio.gather(*(insert(i) for i in range(5))))
        assert outcomes == ["created"] + ["replayed"] * 4, (race, outcomes)


async def test_a_new_process_claims_afresh_even_its_own_valid_leases(store: Store) -> None:
    await store.create_window(window("dep_1"))
    [before] = await store.claim_windows("a", now=1000, lease_s=30)
    [after] = await store.claim_windows("a", now=1001, lease_s=30, fresh=True)
    assert after.lease_epoch == before.lease_epoch + 1
    assert not await store.renew_lease("dep_1", before.fence, until=1100)


async def test_set_state_is_a_compare_and_set(store: Store) -> None:
    await store.create_window(window("dep_1"))
    assert not await store.set_state("dep_1", "rolled_back", expected="failed")
    await store.finish_window("dep_1", "failed", None, 10)
    assert await store.set_state("dep_1", "rolled_back", expected="failed")
    assert not await store.set_state("dep_1", "rolled_back", expected="failed")
    got = await store.get_window("dep_1")
    assert got is not None and got.state == "rolled_back"


async def test_add_labels_adds_only_what_a_window_lacks(store: Store) -> None:
    """Vercel's previous production deployment, learnt after the window opened: added to
    its labels, never over one it has (an event's, a registration's)."""
    first = window("dep_1")
    first.labels = {"vercel.deployment": "dpl_new"}
    await store.create_window(first)
    assert await store.add_labels("dep_1", {"vercel.previous": "dpl_old"})
    assert not await store.add_labels("dep_1", {"vercel.previous": "dpl_other"})
    assert not await store.add_labels("dep_unknown", {"vercel.previous": "dpl_old"})
    got = await store.get_window("dep_1")
    assert got is not None
    assert got.labels == {"vercel.deployment": "dpl_new", "vercel.previous": "dpl_old"}


async def test_claiming_leases_holds_what_claiming_windows_does(store: Store) -> None:
    await store.create_window(window("dep_1", env="e1", created=101))
    await store.create_window(window("dep_2", env="e2", created=102))
    [first, _] = await store.claim_windows("a", 1000, 30)
    # more than half left: not rewritten (same epoch, same end)
    assert await store.claim_leases("a", 1010, 30) == [("dep_1", 1, 1030), ("dep_2", 1, 1030)]
    # less than half left: renewed, same epoch
    assert await store.claim_leases("a", 1020, 30) == [("dep_1", 1, 1050), ("dep_2", 1, 1050)]
    # lapsed: another owner takes it with a new epoch, and the first holds nothing
    assert await store.claim_leases("b", 1051, 30) == [("dep_1", 2, 1081), ("dep_2", 2, 1081)]
    assert await store.claim_leases("a", 1052, 30) == []
    assert first.lease_epoch == 1


async def test_claiming_leases_written_only_answers_what_the_claim_wrote(store: Store) -> None:
    """The watcher's claim pass every second: what changed, not one row per window held."""
    await store.create_window(window("dep_1", env="e1", created=101))
    await store.create_window(window("dep_2", env="e2", created=102))
    assert await store.claim_leases("a", 1000, 30, written_only=True) == [
        ("dep_1", 1, 1030),
        ("dep_2", 1, 1030),
    ]
    # held with more than half left: nothing written, nothing answered
    assert await store.claim_leases("a", 1010, 30, written_only=True) == []
    assert await store.claim_leases("a", 1010, 30) == [("dep_1", 1, 1030), ("dep_2", 1, 1030)]
    # a new window, and one whose watch renewed it: the half-spent one and the new one
    await store.create_window(window("dep_3", env="e3", created=103))
    assert await store.renew_lease("dep_1", Fence("a", 1), 1044)
    assert await store.claim_leases("a", 1016, 30, written_only=True) == [
        ("dep_2", 1, 1046),
        ("dep_3", 1, 1046),
    ]
    # lapsed, taken by another owner: new epochs, in the order the windows were made
    assert await store.claim_leases("b", 1100, 30, written_only=True) == [
        ("dep_1", 2, 1130),
        ("dep_2", 2, 1130),
        ("dep_3", 2, 1130),
    ]
    assert await store.claim_leases("a", 1101, 30, written_only=True) == []


async def test_a_background_lease_is_held_by_one_owner_until_it_lapses(store: Store) -> None:
    """Replicas sharing the store probe each environment once (`take_background`): held
    by its owner, renewed by it, taken by another only once lapsed or given up, or by
    the replica whose window probes the environment (`steal`)."""
    assert await store.take_background("production", "a", 1000, 1060)
    assert not await store.take_background("production", "b", 1010, 1070)
    assert await store.take_background("staging", "b", 1010, 1070)  # per environment
    assert await store.take_background("production", "a", 1030, 1090)  # renewed
    assert not await store.take_background("production", "b", 1089, 1149)
    assert await store.take_background("production", "b", 1090, 1150)  # lapsed
    assert not await store.take_background("production", "a", 1100, 1160)
    assert await store.take_background("production", "a", 1100, 1160, steal=True)
    assert not await store.take_background("production", "b", 1110, 1170)
    assert await store.take_background("staging", "b", 1110, 1200)
    await store.release_background("a")  # a clean stop: b need not wait for it to lapse
    assert await store.take_background("production", "b", 1111, 1171)
    assert not await store.take_background("staging", "a", 1111, 1171)  # b's, kept


async def test_a_windows_end_keeps_its_stand_in_runs_only_when_it_applies(store: Store) -> None:
    """The background runs a window's rounds stood in for are kept in its end's own
    transaction: a deploy registered right after pools them, and an end refused (another
    claim's window, one already ended) keeps none."""
    await store.create_window(window("dep_1"))
    run = ProbeRun("production", "api", 130.0, {"ok": [1, 1]}, "fp")
    refused = await store.finish_window(
        "dep_1", "passed", None, 160.0, fence=Fence("x", 9), runs=[run]
    )
    assert not refused
    assert await store.probe_summaries("production", 0, 1000) == []
    assert await store.finish_window("dep_1", "passed", None, 160.0, runs=[run])
    assert await store.probe_summaries("production", 0, 1000, ["fp"]) == [
        ("api", 130.0, {"ok": [1, 1]})
    ]
    again = ProbeRun("production", "api", 140.0, {"ok": [1]}, "fp")
    assert not await store.finish_window("dep_1", "passed", None, 170.0, runs=[again])
    assert len(await store.probe_summaries("production", 0, 1000)) == 1
