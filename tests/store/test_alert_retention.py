"""What a settled alert would be sent again with is forgotten once its window ended
longer ago than `store.retention.rounds`, and so are idempotency keys older than that;
an alert's event and outcome stay for the page.

Every alert's payload (its whole message, ~2 KB) and every registration's idempotency
row (its whole answer, ~1 KB) were kept for good: in a soak of a dozen environments
(`bench/soak.py`) they held more bytes than the windows themselves, long after the
rounds were gone."""

from __future__ import annotations

from agent.records import DeployWindow, IdempotentResponse
from agent.retention import StorePruner
from agent.store.base import Store
from tests.store.peek import rows

DAY = 86400.0
NOW = 30 * DAY


def window(wid: str, created: float = 1000.0) -> DeployWindow:
    return DeployWindow(
        id=wid,
        environment=wid.removeprefix("dep_"),  # one each: none supersedes another
        version="v1",
        previous_version="v0",
        commit=None,
        labels={},
        state="watching",
        deployed_at=created,
        ends_at=created + 60,
        created_at=created,
    )


async def payloads(store: Store) -> dict[tuple[str, str], bool]:
    found = await rows(store, "SELECT window_id, event, payload FROM alerts")
    return {(w, e): p is not None for w, e, p in found}


async def test_settled_alerts_of_old_windows_lose_their_payload_and_keep_their_outcome(
    store: Store,
) -> None:
    for wid in ("dep_old", "dep_recent", "dep_live"):
        await store.create_window(window(wid))
        assert await store.claim_alert(wid, "breach:errors", 1010.0, payload='{"m": 1}')
        await store.record_alert(wid, "breach:errors", "sent", "json://…")
    # one still owed (no outcome: a sender may have died) and one owed a retry
    assert await store.claim_alert("dep_old", "failed", 1020.0, payload='{"m": 2}')
    assert await store.claim_alert("dep_old", "passed", 1020.0, payload='{"m": 3}')
    await store.record_alert("dep_old", "passed", "failed", "500", retry_at=NOW + 60)
    assert await store.finish_window("dep_old", "failed", None, NOW - 8 * DAY)
    assert await store.finish_window("dep_recent", "passed", None, NOW - DAY)

    pruner = StorePruner(store, rounds_s=7 * DAY, probe_summaries_s=1e9, clock=lambda: NOW)
    pruned = await pruner.prune_once()

    assert await payloads(store) == {
        ("dep_old", "breach:errors"): False,
        ("dep_old", "failed"): True,  # unsettled: resent after a crash from it
        ("dep_old", "passed"): True,  # its retry is owed
        ("dep_recent", "breach:errors"): True,
        ("dep_live", "breach:errors"): True,
    }
    assert pruned.alert_payloads == 1
    assert (await store.alerts_of(["dep_old"]))["dep_old"] == {
        "breach:errors": "sent",
        "failed": "claimed",
        "passed": "failed",
    }
    assert (await pruner.prune_once()).alert_payloads == 0  # each forgotten once


async def test_idempotency_keys_older_than_the_retention_are_forgotten(store: Store) -> None:
    for wid, created in (("dep_old", NOW - 8 * DAY), ("dep_recent", NOW - DAY)):
        answer = IdempotentResponse(f"key-{wid}", "hash", 201, {"id": wid})
        await store.create_window(window(wid, created), answer)
    pruner = StorePruner(store, rounds_s=7 * DAY, probe_summaries_s=1e9, clock=lambda: NOW)
    pruned = await pruner.prune_once()

    assert await store.idempotent_response("key-dep_old") is None
    kept = await store.idempotent_response("key-dep_recent")
    assert kept is not None and kept.body == {"id": "dep_recent"}
    assert pruned.idempotency_keys == 1
