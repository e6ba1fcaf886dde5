"""A rollback still owed when its environment (or the environment's `rollback`) left the
configuration: no agent can send it any more (its webhook and secret are gone), so a restart
or a replica ends it `failed` and pages ROLLBACK FAILED once, instead of logging "cannot
resume rollback … environment gone" every second with the rollback `pending` for ever.

Counted at the sink: one page per deploy across replicas, restarts and a kill -9 right after
the outcome's commit.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.api.models import deploy_object
from agent.metrics import Metrics
from agent.records import RollbackIntent
from agent.rollback.contract import rollback_intent
from agent.rollback.delivery import RollbackDelivery
from agent.settings import AlertChannel
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.supervisor import Watcher
from alerting.notifier import Notifier
from checks.sessions import TargetSessions
from common.redaction import Redactor
from tests.receivers import JsonSink
from tests.rollback.support import BREACH, REQUESTED_AT, make_window

ONLY_PRODUCTION = """
server: {api_tokens: [tok-1234567890abcdef]}
environments:
  production:
    base_url: http://127.0.0.1:9
    alerts: {tags: [oncall]}
    checks: [{name: health, type: http, path: /health}]
"""
STAGING_WITHOUT_ROLLBACK = (
    ONLY_PRODUCTION
    + """
  staging:
    base_url: http://127.0.0.1:9
    alerts: {tags: [staging-team]}
    checks: [{name: health, type: http, path: /health}]
"""
)
LEASE_S = 30.0
ALERT_LEASE_S = 2.0
WINDOW_ID = "dep_01JDTEST" + "0" * 18
NOW = REQUESTED_AT + 3600  # an hour later: the old sender's lease lapsed long ago


async def owed_rollback(store: SqliteStore, owner: str = "a") -> RollbackIntent:
    """staging's deploy failed and its rollback was handed to `owner`'s sender, which died
    before it was delivered: the intent is pending, its lease lapsed."""
    window = make_window(WINDOW_ID, environment="staging")
    await store.create_window(window)
    intent = rollback_intent(window, "probe-errors failed", [BREACH], REQUESTED_AT)
    intent.lease_owner, intent.lease_epoch = owner, 1
    intent.lease_until = REQUESTED_AT + LEASE_S
    assert await store.finish_window(window.id, "failed", None, REQUESTED_AT, rollback=intent)
    return intent


def channels(sink: JsonSink, other: JsonSink | None = None) -> list[AlertChannel]:
    found = [AlertChannel(url=sink.url("oncall"), tags=["oncall"])]
    if other is not None:
        found.append(AlertChannel(url=other.url("staging"), tags=["staging-team"]))
    return found


def watcher(
    store: SqliteStore,
    owner: str,
    config: str,
    routes: list[AlertChannel],
    metrics: Metrics | None = None,
) -> Watcher:
    metrics = metrics or Metrics()
    redact = Redactor([c.url.get_secret_value() for c in routes])
    notifier = Notifier(routes, timeout=5.0, redact=redact, metrics=metrics)
    return Watcher(
        load_settings_text(config),
        store,
        metrics,
        alerts=WindowAlerts(store, notifier, clock=lambda: NOW, lease_s=ALERT_LEASE_S),
        delivery=RollbackDelivery(store, metrics, clock=lambda: NOW, owner=owner),
        providers={},
        sessions=TargetSessions(),
        owner=owner,
        clock=lambda: NOW,
        background_probing=False,
    )


async def resume(w: Watcher, *, startup: bool) -> None:
    """One pass of the watcher's rollback sweep, and what it spawned."""
    await w._resume_rollbacks(startup=startup)
    for _ in range(500):
        if not w.resuming:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError(f"still resuming: {w.resuming}")
    await w.drain(10.0)
    await w.services.delivery.aclose()


async def test_a_rollback_owed_by_an_environment_no_longer_configured_fails_and_pages(
    store: SqliteStore, json_sink: JsonSink
) -> None:
    await owed_rollback(store)
    metrics = Metrics()

    await resume(watcher(store, "a", ONLY_PRODUCTION, channels(json_sink), metrics), startup=True)

    stored = await store.get_rollback(WINDOW_ID)
    assert stored is not None and stored.state == "failed" and stored.finished_at == NOW
    assert (
        stored.last_error is not None and "'staging' is no longer configured" in stored.last_error
    )
    window = await store.get_window(WINDOW_ID)
    assert window is not None
    shown = deploy_object(window, stored)
    assert shown["state"] == "failed" and shown["rollback"]["state"] == "failed"
    # the environment and its tags are gone: every channel hears of it
    [page] = json_sink.notifications
    assert page.title == "[postflight] staging v2.4.1: ROLLBACK FAILED, act now"
    assert page.message.startswith("**Rollback FAILED: not sent.** This environment")
    assert "did not accept it" not in page.message
    assert "rollback NOT sent: environment 'staging' is no longer configured" in page.message
    sample = metrics.registry.get_sample_value
    assert sample("postflight_rollbacks_total", {"environment": "staging", "result": "failed"}) == 1
    assert sample("postflight_windows_total", {"environment": "staging", "outcome": "failed"}) == 1


async def test_an_environment_whose_rollback_was_removed_pages_its_own_channels(
    store: SqliteStore, json_sink: JsonSink
) -> None:
    """staging is still configured, without `rollback`: its channels still route."""
    await owed_rollback(store)
    others = JsonSink()
    await others.start()
    try:
        routes = channels(json_sink, others)
        await resume(watcher(store, "a", STAGING_WITHOUT_ROLLBACK, routes), startup=True)
    finally:
        await others.stop()

    stored = await store.get_rollback(WINDOW_ID)
    assert stored is not None and stored.state == "failed"
    assert json_sink.notifications == []
    [page] = others.notifications
    assert "staging' no longer configures a rollback" in page.message


async def test_replicas_and_restarts_page_once(tmp_path: Path, json_sink: JsonSink) -> None:
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        await owed_rollback(store, owner="gone")
        routes = channels(json_sink)
        a = watcher(store, "a", ONLY_PRODUCTION, routes)
        b = watcher(store, "b", ONLY_PRODUCTION, routes)
        await asyncio.gather(resume(a, startup=False), resume(b, startup=False))
        await resume(watcher(store, "a", ONLY_PRODUCTION, routes), startup=True)
        later = watcher(store, "b", ONLY_PRODUCTION, routes)
        assert await later.services.alerts.recover() == 0
    finally:
        await store.close()

    assert len(json_sink.notifications) == 1


class DiesAfterSettle(SqliteStore):
    """A process killed the instant the rollback's outcome is committed."""

    async def settle_rollback(self, intent: RollbackIntent, *args: Any, **kw: Any) -> bool:
        settled = await super().settle_rollback(intent, *args, **kw)
        if intent.state != "pending":
            raise asyncio.CancelledError  # the kill: nothing after the commit runs
        return settled


async def test_a_kill_right_after_the_outcome_does_not_lose_the_page(
    tmp_path: Path, json_sink: JsonSink
) -> None:
    path = tmp_path / "postflight.db"
    dying = DiesAfterSettle(path)
    await dying.open()
    try:
        await owed_rollback(dying)
        # the sweep's task dies at the commit: nothing after it runs
        await resume(watcher(dying, "a", ONLY_PRODUCTION, channels(json_sink)), startup=True)
    finally:
        await dying.close()
    assert json_sink.notifications == []

    store = SqliteStore(path)
    await store.open()
    try:
        stored = await store.get_rollback(WINDOW_ID)
        assert stored is not None and stored.state == "failed"
        survivor = watcher(store, "b", ONLY_PRODUCTION, channels(json_sink))
        survivor.services.alerts._clock = lambda: NOW + ALERT_LEASE_S + 1
        assert await survivor.services.alerts.recover() == 1
        assert await survivor.services.alerts.recover() == 0
    finally:
        await store.close()
    [page] = json_sink.notifications
    assert page.title == "[postflight] staging v2.4.1: ROLLBACK FAILED, act now"


async def test_a_watching_window_whose_environment_left_ends_inconclusive(
    store: SqliteStore,
) -> None:
    """Not stuck either (pinned here with the rollback's case): the watch ends it at once,
    with a verdict saying why."""
    await store.create_window(make_window(WINDOW_ID, environment="staging"))
    w = watcher(store, "a", ONLY_PRODUCTION, [])
    try:
        await w._claim()
        await asyncio.gather(*w.tasks.values())
    finally:
        await w._stop_windows()
        await w.services.delivery.aclose()
    window = await store.get_window(WINDOW_ID)
    assert window is not None and window.state == "inconclusive"
    shown = deploy_object(window, None)
    assert "'staging' is no longer configured" in shown["verdict"]["reason"]


async def test_a_watching_window_whose_environment_left_is_said_in_the_log(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A configuration changed between two runs (the environment renamed or removed):
    its watching window ended inconclusive with no line in the log, where every other
    end of a window is logged; the operator who made the change had only `status` to
    find it. A warning naming the window and why."""
    await store.create_window(make_window(WINDOW_ID, environment="staging"))
    w = watcher(store, "a", ONLY_PRODUCTION, [])
    with caplog.at_level(logging.INFO, logger="postflight"):
        try:
            await w._claim()
            await asyncio.gather(*w.tasks.values())
        finally:
            await w._stop_windows()
            await w.services.delivery.aclose()
    [said] = [r for r in caplog.records if "no longer configured" in r.getMessage()]
    assert said.levelno == logging.WARNING
    assert getattr(said, "deploy_id", None) == WINDOW_ID
    assert said.getMessage().startswith(
        "window inconclusive: environment 'staging' is no longer configured"
    ), said.getMessage()


async def test_a_rollback_owed_when_dry_run_was_turned_on_is_skipped_not_sent(
    store: SqliteStore, json_sink: JsonSink, rollback_receiver: Any
) -> None:
    """`rollback.dry_run: true` is "never call the webhook": an operator who turns it on
    and restarts the agent (a webhook doing harm, an incident) had the rollback still owed
    from before sent at once by the restarted agent's sweep. It ends `skipped` (the API's
    word for dry_run), unsent, and on-call is told it was not sent; counted at the
    receiver."""
    receiver = await rollback_receiver("s3cret")
    await owed_rollback(store)
    metrics = Metrics()
    config = (
        ONLY_PRODUCTION
        + f"""
  staging:
    base_url: http://127.0.0.1:9
    alerts: {{tags: [oncall]}}
    checks: [{{name: health, type: http, path: /health}}]
    rollback: {{url: "{receiver.url}", secret: s3cret, dry_run: true}}
"""
    )

    await resume(watcher(store, "a", config, channels(json_sink), metrics), startup=True)

    assert receiver.attempts == []
    stored = await store.get_rollback(WINDOW_ID)
    assert stored is not None and stored.state == "skipped" and stored.finished_at == NOW
    assert stored.last_error is not None and "dry_run" in stored.last_error
    window = await store.get_window(WINDOW_ID)
    assert window is not None
    shown = deploy_object(window, stored)
    assert shown["state"] == "failed" and shown["rollback"]["state"] == "skipped"
    [page] = json_sink.notifications
    assert page.title == (
        "[postflight] staging v2.4.1: deploy failed (probe-errors), rollback skipped (dry run)"
    )
    assert page.message.startswith("**Deploy failed.** No rollback was sent: `rollback.dry_run`")
    assert "rollback NOT sent: rollback.dry_run was turned on" in page.message
    sample = metrics.registry.get_sample_value
    failed = {"environment": "staging", "result": "failed"}
    assert not sample("postflight_rollbacks_total", failed)  # neither delivered nor failed
    assert sample("postflight_windows_total", {"environment": "staging", "outcome": "failed"}) == 1
    # a later sweep finds nothing owed: nothing is sent, nothing paged again
    await resume(watcher(store, "b", config, channels(json_sink), metrics), startup=True)
    assert receiver.attempts == [] and len(json_sink.notifications) == 1
