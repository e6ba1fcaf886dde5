"""A rollback's provider markers are claimed with the window's end
(`agent.windows.markers`): a sender that died before writing one leaves its claim, which
a replica takes over once the store lease lapses, or the same replica's next start at
once; a marker written is never written again. The process test is
`tests/e2e/test_crash_end.py`."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, Literal

from agent.metrics import Metrics
from agent.providers.base import DeployScope
from agent.providers.newrelic import NewRelicProvider
from agent.providers.provider_settings import NewRelicSettings, SentrySettings
from agent.providers.sentry import SentryProvider
from agent.rollback.contract import rollback_intent
from agent.settings import EnvironmentSettings, Settings
from agent.store.base import AlertClaim
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.markers import marker_claims, marker_key, resume_markers
from alerting.notifier import Notifier
from tests.rollback.support import BREACH, REQUESTED_AT, make_window
from tests.store.peek import rows

LEASE_S = 30.0


class MarkingProvider:
    """A provider whose markers are counted (its reads are never made here)."""

    name = "sentry"

    def __init__(self, *, marks: bool = True) -> None:
        self.marks = marks
        self.marked: list[tuple[str, str | None, str]] = []

    async def mark(self, scope: DeployScope, event: Literal["deploy", "rollback"]) -> None:
        self.marked.append((scope.deploy_id, scope.previous_version, event))


class Clock:
    def __init__(self) -> None:
        self.now = REQUESTED_AT

    def __call__(self) -> float:
        return self.now


def services(store: SqliteStore, provider: MarkingProvider, owner: str, clock: Clock) -> Any:
    notifier = Notifier([], timeout=1.0, redact=str, metrics=Metrics())
    return SimpleNamespace(
        store=store,
        alerts=WindowAlerts(store, notifier, clock=clock),
        providers={"sentry": provider},
        owner=owner,
        lease_s=LEASE_S,
        clock=clock,
    )


async def ended_with_a_marker_owed(store: SqliteStore, owner: str) -> None:
    """A failed window's end as `WindowWatch._fail` stores it: the intent, leased to
    `owner`, and the marker's claim; its sender then killed."""
    window = make_window()
    await store.create_window(window)
    intent = rollback_intent(window, "probe-errors failed", [BREACH], REQUESTED_AT)
    intent.lease_owner, intent.lease_epoch = owner, 1
    intent.lease_until = REQUESTED_AT + LEASE_S
    claims = [AlertClaim(marker_key("sentry"))]
    assert await store.finish_window(
        window.id, "failed", None, REQUESTED_AT, rollback=intent, alerts=claims
    )


async def resumed(s: Any, *, owner: str | None = None) -> None:
    tasks: list[asyncio.Task[Any]] = []

    def spawn(coro: Any) -> asyncio.Task[Any]:
        tasks.append(asyncio.create_task(coro))
        return tasks[-1]

    settings = Settings.model_construct(  # what resume_markers reads, unvalidated
        environments={"production": EnvironmentSettings(base_url="http://127.0.0.1:9")}
    )
    await resume_markers(s, settings, spawn, set(), owner=owner)
    await asyncio.gather(*tasks)


async def test_a_replica_takes_a_dead_senders_marker_over_once_its_lease_lapsed(
    store: SqliteStore,
) -> None:
    await ended_with_a_marker_owed(store, "a")
    provider, clock = MarkingProvider(), Clock()
    b = services(store, provider, "b", clock)
    clock.now += LEASE_S / 2
    await resumed(b)
    assert provider.marked == []  # its sender may still be writing it
    clock.now += LEASE_S
    await resumed(b)
    assert provider.marked == [("dep_01JDTEST", "v2.4.0", "rollback")]
    clock.now += LEASE_S * 2
    await resumed(b)  # written: its claim has an outcome
    assert len(provider.marked) == 1
    assert (await store.alert_events("dep_01JDTEST"))[marker_key("sentry")] == "sent"


async def test_the_restarted_sender_writes_its_own_marker_at_once(store: SqliteStore) -> None:
    await ended_with_a_marker_owed(store, "a")
    provider, clock = MarkingProvider(), Clock()
    again = services(store, provider, "a", clock)
    clock.now += 1.0
    await resumed(again, owner="b")  # another replica's start: not its rollback
    assert provider.marked == []
    await resumed(again, owner="a")
    assert provider.marked == [("dep_01JDTEST", "v2.4.0", "rollback")]
    await resumed(again, owner="a")
    assert len(provider.marked) == 1


async def test_a_bug_in_the_markers_resumption_does_not_keep_windows_unwatched(
    tmp_path: Any, monkeypatch: Any
) -> None:
    """The watcher's turn resumes markers beside its claims: raised into it, a bug there
    was the turn's failure, at every turn, and no window was ever claimed."""
    import time

    from agent.windows import supervisor
    from checks.sessions import TargetSessions
    from tests.test_round_bug_watcher import watcher_of

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(supervisor, "resume_markers", broken)
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    sessions = TargetSessions()
    watcher = watcher_of(store, sessions)
    now = time.time()
    await store.create_window(make_window(deployed_at=now, ends_at=now + 60, created_at=now))
    task = asyncio.create_task(watcher.run())
    try:
        for _ in range(100):
            if watcher.claims:
                break
            await asyncio.sleep(0.05)
        assert watcher.claims, "the window was never claimed"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sessions.aclose()
        await store.close()


async def test_a_provider_with_markers_off_gets_no_marker_claim() -> None:
    """Every provider a rule read had its marker claimed with a failed window's end, and
    recorded `sent`, "marked", though with `markers: false` (the default) it wrote none."""
    metrics = Metrics()
    env = SimpleNamespace(rules=[SimpleNamespace(source="sentry"), SimpleNamespace(source="nr")])
    for markers in (False, True):
        sentry = SentrySettings.model_validate(
            {"base_url": "http://127.0.0.1:9", "org": "acme", "token": "t", "markers": markers}
        )
        newrelic = NewRelicSettings.model_validate(
            {"api_key": "NRAK-x", "account_id": 1, "markers": markers}
        )
        providers: Any = {
            "sentry": SentryProvider(sentry, metrics=metrics),
            "nr": NewRelicProvider(newrelic, metrics=metrics),
        }
        claims = marker_claims(env, providers)  # type: ignore[arg-type]
        owed = [marker_key("sentry"), marker_key("nr")] if markers else []
        assert [c.event for c in claims] == owed


async def test_a_marker_owed_by_a_provider_whose_markers_went_off_is_recorded_dropped(
    store: SqliteStore,
) -> None:
    """A claim made before `markers: false` (a restart with the new configuration): no
    marker is asked for, and the claim's outcome says so rather than "marked"."""
    await ended_with_a_marker_owed(store, "a")
    provider, clock = MarkingProvider(marks=False), Clock()
    clock.now += 1.0
    await resumed(services(store, provider, "a", clock), owner="a")
    assert provider.marked == []
    assert (await store.alert_events("dep_01JDTEST"))[marker_key("sentry")] == "dropped"


class SilentPlugin:
    """A third-party provider as the plugin protocol has it: a `mark` answering None (no
    marker written: it writes none) and no `marks` saying whether it writes any."""

    name = "sentry"

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def mark(self, scope: DeployScope, event: Literal["deploy", "rollback"]) -> None:
        self.asked.append(event)


async def test_a_plugin_that_does_not_say_it_writes_markers_is_not_recorded_marked(
    store: SqliteStore,
) -> None:
    """Asked as before, but its claim's outcome says what is known: it refused nothing,
    and whether it wrote a marker is not known. Before, `sent`, "marked"."""
    await ended_with_a_marker_owed(store, "a")
    provider, clock = SilentPlugin(), Clock()
    clock.now += 1.0
    await resumed(services(store, provider, "a", clock), owner="a")  # type: ignore[arg-type]
    assert provider.asked == ["rollback"]
    recorded = await rows(
        store,
        "SELECT result, detail FROM alerts WHERE window_id = ? AND event = ?",
        "dep_01JDTEST",
        marker_key("sentry"),
    )
    [(result, detail)] = recorded
    assert result == "asked", recorded
    assert "sentry does not say whether it writes markers" in detail, detail
    await resumed(services(store, provider, "a", clock), owner="a")  # type: ignore[arg-type]
    assert provider.asked == ["rollback"]  # an outcome: never asked again


async def test_a_provider_that_says_it_marks_is_recorded_marked(store: SqliteStore) -> None:
    await ended_with_a_marker_owed(store, "a")
    provider, clock = MarkingProvider(), Clock()
    clock.now += 1.0
    await resumed(services(store, provider, "a", clock), owner="a")
    recorded = await rows(
        store, "SELECT result, detail FROM alerts WHERE event = ?", marker_key("sentry")
    )
    assert recorded == [("sent", "marked")], recorded
