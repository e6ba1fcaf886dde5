"""The Vercel and GitHub rollback targets (contract §7) at the delivery level, against
the fake APIs: the request sent, a rollback that can never be sent, and the restart
case neither provider dedupes for us (an attempt went out, its outcome was never
recorded)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agent.integrations.targets import RollbackTargets, github_web_url, of_commit
from agent.metrics import Metrics
from agent.records import DeployWindow, RollbackIntent
from agent.rollback import RollbackDelivery, rollback_intent
from agent.rollback.delivery import FINAL_LOOKS
from agent.settings import Settings
from agent.store.base import IN_FLIGHT
from agent.store.sqlite import SqliteStore
from tests.fakes._server import Failure
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import NEW, OLD, PROJECT, FakeVercel, listed_deployment
from tests.store.peek import deliveries, rows, set_rollback

TOKEN = "vercel-token"


@pytest.fixture
async def fake() -> AsyncIterator[FakeVercel]:
    async with FakeVercel(token=TOKEN, team_id="team_1") as server:
        yield server


def settings(fake: FakeVercel) -> Settings:
    return Settings(
        server={"api_tokens": ["tok-1234567890abcdef"]},
        integrations={"vercel": {"api_url": fake.url, "token": TOKEN, "team_id": "team_1"}},
        environments={
            "production": {
                "base_url": "http://127.0.0.1:9",
                "sources": {"vercel": {"project": PROJECT}},
                "rollback": {"target": "vercel", "backoff": "10ms", "max_attempts": 3},
            }
        },
    )


async def failed_window(store: SqliteStore, labels: dict[str, str]) -> DeployWindow:
    now = time.time()
    window = DeployWindow(
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
        "production",
        "v2",
        "v1",
        None,
        labels,
        "watching",
        now,
        now + 60,
        now,
    )
    await store.create_window(window)
    return window


async def rollback_requested(
    store: SqliteStore, labels: dict[str, str], reason: str = "bad"
) -> RollbackIntent:
    """The intent of a failed window's rollback, stored with the window's end."""
    window = await failed_window(store, labels)
    intent = rollback_intent(window, reason, [], time.time())
    await store.finish_window(window.id, "failed", None, time.time(), intent)
    return intent


async def delivered_to_target(
    store: SqliteStore, config: Settings, intent: RollbackIntent, **changes: Any
) -> RollbackIntent:
    """`intent` delivered, as the agent does, to the rollback target `config` names for
    production, with these `changes` to its rollback settings."""
    rollback = config.environments["production"].rollback
    assert rollback is not None
    rollback = rollback.model_copy(update=changes)
    delivery = RollbackDelivery(store, Metrics(), targets=RollbackTargets(config))
    try:
        return await delivery.deliver(intent, rollback, "production")
    finally:
        await delivery.aclose()


async def test_it_rolls_back_to_the_previous_deployment_with_team_and_token(
    fake: FakeVercel, store: SqliteStore
) -> None:
    config = settings(fake)
    intent = await rollback_requested(
        store, {"vercel.deployment": NEW, "vercel.previous": OLD}, reason="probe-errors failed"
    )
    done = await delivered_to_target(store, config, intent)
    assert (done.state, done.last_status) == ("delivered", 201)
    (seen,) = fake.seen("/rollback/")
    assert seen.path == f"/v1/projects/{PROJECT}/rollback/{OLD}"
    assert seen.param("teamId") == "team_1"
    assert "probe-errors failed" in (seen.param("description") or "")
    # no body, so no JSON content type: an empty body declared JSON is malformed JSON,
    # which a strict API (Fastify's, for one) refuses with a 400, failing the rollback
    assert seen.body in (None, "", b"")
    assert "content-type" not in {name.lower() for name in seen.headers}
    assert [a["deployment"] for a in fake.accepted] == [OLD]


async def test_no_previous_deployment_label_asks_vercel_which_production_came_before(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """A deploy whose labels name no previous deployment (a fresh agent's first window):
    Vercel's list of production deployments says, where it failed at once."""
    newer = "dpl_newer333"
    fake.deployments.add(newer)
    fake.listed[PROJECT] = [
        listed_deployment(newer, 1764547200000),
        listed_deployment(NEW, 1764460800000),
        listed_deployment("dpl_err", 1764420000000, state="ERROR"),
        listed_deployment("dpl_staged", 1764410000000, candidate=False),
        listed_deployment(OLD, 1764374400000),
    ]
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW})
    done = await delivered_to_target(store, config, intent)
    assert (done.state, done.last_status) == ("delivered", 201)
    (listed,) = fake.seen("/v6/deployments")
    assert listed.param("teamId") == "team_1"
    assert (listed.param("projectId"), listed.param("target")) == (PROJECT, "production")
    assert [a["deployment"] for a in fake.accepted] == [OLD]
    window = await store.get_window(intent.window_id)
    assert window is not None and window.labels["vercel.previous"] == OLD


@pytest.mark.parametrize("listed", ["only_its_own", "not_its_own", "vercel_refuses"])
async def test_no_previous_deployment_anywhere_fails_at_once_saying_why(
    fake: FakeVercel, store: SqliteStore, listed: str
) -> None:
    if listed == "only_its_own":
        fake.listed[PROJECT] = [listed_deployment(NEW, 1764460800000)]
    elif listed == "not_its_own":  # more than a page of deployments since: no guess
        fake.listed[PROJECT] = [listed_deployment(OLD, 1764374400000)]
    else:
        fake.token = "another-token"
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW})
    done = await delivered_to_target(store, config, intent)
    assert done.state == "failed"
    error = done.last_error or ""
    assert "vercel.previous" in error
    # where the look-up came from, that it is a fallback, and the way round it
    assert "asked as a fallback (GET /v6/deployments" in error, error
    assert "meta.previousDeploymentId" in error and "label vercel.previous" in error, error
    if listed == "vercel_refuses":
        assert "Vercel's list of production deployments: HTTP 403" in error
    else:
        assert f"Vercel lists no READY production deployment before {NEW}" in error
    assert fake.seen("/rollback/") == [] and fake.accepted == []


async def test_a_pipeline_registered_deploy_without_a_vercel_label_says_which_label_to_send(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """A deploy registered by the pipeline (`POST /v1/deploys`, no Vercel event) has no
    `vercel.deployment` label: its rollback failed with only "nothing to roll back to".
    It says what is missing and how to send it; Vercel is not asked for a guess."""
    fake.listed[PROJECT] = [listed_deployment(NEW, 1764460800000)]
    config = settings(fake)
    intent = await rollback_requested(store, {"team": "web"})
    done = await delivered_to_target(store, config, intent)
    assert done.state == "failed"
    error = done.last_error or ""
    assert "nothing to roll back to" in error
    assert "no label vercel.deployment" in error and "POST /v1/deploys" in error, error
    assert "--label vercel.deployment=" in error and "vercel.previous=" in error, error
    assert fake.seen("/v6/deployments") == [] and fake.accepted == []


@pytest.mark.parametrize("took_effect", [True, False])
async def test_a_restart_with_an_unrecorded_attempt_asks_vercel_before_sending_again(
    fake: FakeVercel, store: SqliteStore, took_effect: bool
) -> None:
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
    # the previous process stored attempt 1, sent it, and died before recording the answer
    intent.attempts = 1
    await set_rollback(store, intent)
    if took_effect:
        fake.production[PROJECT] = OLD  # Vercel had acted on it
    done = await delivered_to_target(store, config, intent)
    assert done.state == "delivered"
    # asked at once, and while not found again after each wait of the backoff schedule
    looks = 1 if took_effect else 1 + FINAL_LOOKS
    assert len(fake.seen(f"/v9/projects/{PROJECT}")) == looks
    assert len(fake.accepted) == (0 if took_effect else 1)
    assert (await store.get_window(intent.window_id)).state == "rolled_back"  # type: ignore[union-attr]


async def test_a_vercel_rollback_whose_last_attempt_got_no_answer_is_looked_for_before_failing(
    store: SqliteStore,
) -> None:
    """Vercel rolled production back but its 201 came after the last attempt's timeout: the
    rollback was reported failed. Production is asked first, as before a next attempt."""

    class SlowToAnswer(FakeVercel):
        async def rollback(self, request: Any) -> Any:
            answer = await super().rollback(request)  # production is rolled back
            await asyncio.sleep(0.5)  # past the attempt's 0.2 s timeout
            return answer

    async with SlowToAnswer(token=TOKEN, team_id="team_1") as fake:
        config = settings(fake)
        intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
        done = await delivered_to_target(store, config, intent, max_attempts=1, timeout=0.2)

    assert (done.state, done.attempts) == ("delivered", 1)
    assert [a["deployment"] for a in fake.accepted] == [OLD]


@pytest.mark.parametrize("kind", ["429", "rate_limit"], ids=["retry-after", "ratelimit-reset"])
async def test_a_vercel_rate_limit_is_waited_out_as_it_asks(
    fake: FakeVercel, store: SqliteStore, kind: str
) -> None:
    """Vercel's 429 names its window's end in `X-RateLimit-Reset` (epoch seconds), with or
    without a `Retry-After`: without one, our own backoff (10 ms here, 1 s, 2 s, … by
    default) spent the attempts inside the window and the rollback was reported failed.
    Either is waited for, then the rollback goes out once."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
    fake.fail(kind, times=1, reset_in=1.0, match="/rollback/")
    done = await delivered_to_target(store, config, intent, max_backoff=0.01)
    sent = fake.seen("/rollback/")
    assert (done.state, done.attempts, len(sent)) == ("delivered", 2, 2)
    assert sent[1].at - sent[0].at >= 0.9  # the wait Vercel asked for, not 10 ms
    assert [a["deployment"] for a in fake.accepted] == [OLD]


@pytest.mark.parametrize("rolled_back", [True, False], ids=["already-there", "elsewhere"])
async def test_a_vercel_409_asks_where_production_is_before_failing(
    fake: FakeVercel, store: SqliteStore, rolled_back: bool
) -> None:
    """Vercel refuses a rollback that conflicts with the project's state (409) when
    production already is that deployment (an earlier attempt's answer lost, a rollback
    by hand): it was reported failed (ROLLBACK FAILED, roll back by hand) while production
    was where it had to be. A 409 asks Vercel first; otherwise it still fails at once."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
    if rolled_back:
        fake.production[PROJECT] = OLD
    fake.fail("409", match="/rollback/")
    done = await delivered_to_target(store, config, intent)
    assert len(fake.seen("/rollback/")) == 1  # not retried either way
    if rolled_back:
        assert (done.state, done.last_status, done.last_error) == ("delivered", 409, None)
        assert (await store.get_window(intent.window_id)).state == "rolled_back"  # type: ignore[union-attr]
    else:
        assert (done.state, done.last_status) == ("failed", 409)
        assert "Vercel answered HTTP 409" in (done.last_error or "")


@pytest.mark.parametrize("ran", [True, False])
async def test_github_target_after_a_restart_finds_the_dispatched_run_by_its_name(
    store: SqliteStore, ran: bool
) -> None:
    async with FakeGitHub(token="gh") as github:
        config = github_rollback_config(github.url)
        intent = await rollback_requested(store, {})
        intent.attempts = 1  # sent before the crash, answer never recorded
        await set_rollback(store, intent)
        if ran:
            github.runs.append(rollback_run(intent.window_id))
        done = await delivered_to_target(store, config, intent)
        assert done.state == "delivered"
        assert len(github.dispatches) == (0 if ran else 1)


@pytest.mark.parametrize(
    ("kind", "delivered"),
    [("secondary_rate_limit", True), ("rate_limit", True), ("forbidden", False)],
)
async def test_a_github_rate_limit_403_is_waited_out_and_other_403s_fail_at_once(
    store: SqliteStore, kind: str, delivered: bool
) -> None:
    """GitHub answers a rate limit with 403 as often as 429 (`Retry-After`, or
    `x-ratelimit-remaining: 0` and `x-ratelimit-reset`): the rollback's dispatch waits it
    out as a 429 would be, where every 403 failed the rollback at once (ROLLBACK FAILED,
    roll back by hand) while the token only had to wait. A 403 that is not a rate limit
    (a permission the token lacks) still fails at once."""
    async with FakeGitHub(token="gh") as github:
        config = github_rollback_config(github.url, max_backoff="10ms", max_attempts=3)
        intent = await rollback_requested(store, {})
        github.fail(kind, times=1, reset_in=1.0, match="/dispatches")
        done = await delivered_to_target(store, config, intent)
        sent = github.seen("/dispatches")
        if delivered:
            assert (done.state, done.attempts, len(github.dispatches)) == ("delivered", 2, 1)
            # the wait GitHub asked for (1 s), not the 10 ms backoff
            assert sent[1].at - sent[0].at >= 0.9
        else:
            assert (done.state, done.last_status, len(sent)) == ("failed", 403, 1)
            assert "Resource not accessible" in (done.last_error or "")


async def test_a_github_dispatch_whose_answer_never_came_is_not_dispatched_again_once_it_ran(
    store: SqliteStore,
) -> None:
    """GitHub created the run but its 204 came after the attempt's timeout: the retry
    dispatched the workflow again, a second rollback run (a dispatch has no idempotency
    key). An attempt that got no answer is as one a crash cut off: its run is looked
    for by name first, as after a restart."""

    class SlowToAnswer(FakeGitHub):
        async def dispatch(self, request: Any) -> Any:
            answer = await super().dispatch(request)  # the run is created
            if len(self.dispatches) == 1:
                await asyncio.sleep(0.5)  # past the attempt's 0.2 s timeout
            return answer

    async with SlowToAnswer(token="gh") as github:
        config = github_rollback_config(github.url, timeout="200ms", max_attempts=3)
        intent = await rollback_requested(store, {})
        done = await delivered_to_target(store, config, intent)

    assert len(github.dispatches) == 1
    assert (done.state, done.attempts) == ("delivered", 1)


@pytest.mark.parametrize("ran", [True, False], ids=["run-created", "no-run"])
async def test_a_github_dispatch_whose_last_attempt_got_no_answer_is_looked_for_before_failing(
    store: SqliteStore, ran: bool
) -> None:
    """The last allowed attempt timed out, GitHub having created the run: the rollback was
    reported failed (ROLLBACK FAILED, a false page: the rollback ran). Its run is looked
    for before giving up, as before a next attempt; what was found is said."""

    class SlowToAnswer(FakeGitHub):
        async def dispatch(self, request: Any) -> Any:
            if not ran:
                await asyncio.sleep(0.5)  # past the attempt's timeout: no run, ever
                return web.Response(status=503)
            answer = await super().dispatch(request)
            await asyncio.sleep(0.5)  # the run is created; its 204 comes too late
            return answer

    async with SlowToAnswer(token="gh") as github:
        config = github_rollback_config(github.url, timeout="200ms", max_attempts=1)
        intent = await rollback_requested(store, {})
        done = await delivered_to_target(store, config, intent)
        stored = await store.get_rollback(intent.window_id)

    assert stored is not None and stored.attempts == 1
    if ran:
        assert len(github.dispatches) == 1
        assert (done.state, stored.state) == ("delivered", "delivered")
    else:
        assert (done.state, stored.state) == ("failed", "failed")
        # asked at once, then after each wait of the backoff schedule (10, 20, 40, 80 ms)
        assert stored.last_error == (
            "timed out after 0.2s; GitHub lists no run of the rollback workflow for this"
            " deploy (asked 5 times over 150ms)"
        )
        assert len(github.seen("/runs")) == 5


class ListsRunsLate(FakeGitHub):
    """GitHub as it is: a dispatched run is listed only a while after the dispatch was
    taken (`listed_after` seconds), and the dispatch's 204 comes after the attempt's
    timeout."""

    listed_after = 0.5

    def __init__(self, token: str) -> None:
        super().__init__(token=token)
        self.created: dict[int, float] = {}

    async def dispatch(self, request: Any) -> Any:
        answer = await super().dispatch(request)
        self.created[self.runs[0]["id"]] = time.monotonic()
        await asyncio.sleep(1.0)  # past the attempt's timeout
        return answer

    async def runs_of(self, request: Any) -> Any:
        everything, now = self.runs, time.monotonic()
        self.runs = [
            r for r in everything if now - self.created.get(r["id"], 0.0) >= self.listed_after
        ]
        try:
            return await super().runs_of(request)
        finally:
            self.runs = everything


async def test_a_run_github_lists_only_after_the_last_dispatch_timed_out_is_waited_for(
    store: SqliteStore,
) -> None:
    """The last dispatch timed out and GitHub, which had created the run, listed it only
    half a second later: the one look at once found nothing and the rollback was reported
    failed (ROLLBACK FAILED, a false page: the rollback ran). The look is asked again
    after each wait of the backoff schedule, and nothing is dispatched again."""
    async with ListsRunsLate(token="gh") as github:
        config = github_rollback_config(
            github.url, timeout="200ms", max_attempts=1, backoff="100ms"
        )
        intent = await rollback_requested(store, {})
        done = await delivered_to_target(store, config, intent)
        stored = await store.get_rollback(intent.window_id)
        attempts = await deliveries(store, intent.window_id)

    assert len(github.dispatches) == 1
    assert stored is not None and (done.state, stored.state) == ("delivered", "delivered")
    assert len(github.seen("/runs")) >= 2  # not found at once
    assert [(a.attempt, a.status, a.error) for a in attempts] == [(1, None, "timed out after 0.2s")]
    assert (await store.get_window(intent.window_id)).state == "rolled_back"  # type: ignore[union-attr]


async def _attempt_recorded(
    store: SqliteStore, intent: RollbackIntent, status: int | None, error: str, duration_s: int
) -> None:
    """`intent`'s attempt 1 in the deliveries table as a stop left it (`status` None: no
    answer recorded), made now."""
    await rows(
        store,
        "INSERT INTO deliveries (window_id, attempt, at, status, error, duration_s)"
        " VALUES (?, 1, ?, ?, ?, ?)",
        intent.window_id,
        time.time(),
        status,
        error,
        duration_s,
    )


async def test_a_quick_restart_after_a_dispatch_waits_for_github_to_list_its_run(
    store: SqliteStore,
) -> None:
    """The agent stopped just after GitHub took a dispatch, before its 204 was recorded,
    and came back at once: the one look at once found no run (GitHub lists it only
    seconds later) and the workflow was dispatched again, a second rollback run. The
    restart looks again after each wait of the backoff schedule before sending."""
    async with ListsRunsLate(token="gh") as github:
        config = github_rollback_config(github.url, backoff="100ms", max_attempts=3)
        intent = await rollback_requested(store, {})
        github.runs.insert(0, rollback_run(intent.window_id, status="queued"))
        github.created[1] = time.monotonic()  # taken just now, listed half a second later
        await _attempt_recorded(store, intent, None, IN_FLIGHT, 0)
        intent.attempts = 1  # sent before the stop, its answer never recorded
        await set_rollback(store, intent)
        done = await delivered_to_target(store, config, intent)

    assert github.dispatches == []
    assert (done.state, done.attempts) == ("delivered", 1)
    assert len(github.seen("/runs")) >= 2  # not found at once


@pytest.mark.parametrize("ran", [True, False], ids=["run-listed", "no-run"])
async def test_a_restart_while_looking_for_the_last_attempts_run_looks_again_and_never_dispatches(
    store: SqliteStore, ran: bool
) -> None:
    """The agent stopped while it looked whether its last dispatch, which timed out, had
    run (its outcome stored, the wait between looks stored as the next attempt's time):
    the restart took it for a retry still owed and dispatched the workflow again. It
    looks again instead, and reports what it found."""
    async with FakeGitHub(token="gh") as github:
        config = github_rollback_config(github.url, max_attempts=2)
        intent = await rollback_requested(store, {})
        await rows(
            store,
            "INSERT INTO deliveries (window_id, attempt, at, status, error, duration_s)"
            " VALUES (?, 1, ?, NULL, 'HTTP 503', 0), (?, 2, ?, NULL, ?, 10)",
            intent.window_id,
            time.time() - 20,
            intent.window_id,
            time.time() - 10,
            "timed out after 10s",
        )
        intent.attempts, intent.last_error = 2, "timed out after 10s"
        intent.next_attempt_at = time.time() - 1  # a look's wait, stored; its lease lapsed
        await set_rollback(store, intent)
        if ran:
            github.runs.append(rollback_run(intent.window_id))
        done = await delivered_to_target(store, config, intent)

    assert github.dispatches == []
    if ran:
        assert done.state == "delivered"
    else:
        assert (done.state, done.attempts) == ("failed", 2)
        assert (done.last_error or "").startswith(
            "timed out after 10s; GitHub lists no run of the rollback workflow for this deploy"
        )


def rollback_run(window_id: str, status: str = "completed") -> dict[str, Any]:
    """Run 1 of the rollback workflow as GitHub lists it, named for `window_id`'s rollback."""
    return {
        "id": 1,
        "display_title": f"rollback {window_id}",
        "event": "workflow_dispatch",
        "workflow": "rollback.yml",
        "name": "rollback.yml",
        "status": status,
    }


def github_rollback_config(api_url: str, **rollback: Any) -> Settings:
    """Production rolled back through the GitHub workflow `rollback.yml` at `api_url`
    (backoff 10ms), with these more rollback settings."""
    from tests.fakes.github import REPOSITORY

    return Settings(
        server={"api_tokens": ["tok-1234567890abcdef"]},
        integrations={"github": {"api_url": api_url, "token": "gh"}},
        environments={
            "production": {
                "base_url": "http://127.0.0.1:9",
                "sources": {"github": {"repository": REPOSITORY, "environment": "P"}},
                "rollback": {
                    "target": "github",
                    "github": {"workflow": "rollback.yml"},
                    "backoff": "10ms",
                    **rollback,
                },
            }
        },
    )


def test_which_listed_deployment_is_a_commits() -> None:
    """The newest of the commit's, by its full sha or a pipeline's short one; none for a
    commit Vercel does not list, or one too short (or not hex) to name one."""
    sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"
    listed = [
        listed_deployment(NEW, 3, sha=sha),
        listed_deployment("dpl_again", 2, sha=sha),
        listed_deployment(OLD, 1, sha="b" * 40),
        listed_deployment("dpl_cli", 0),  # `vercel deploy` from a laptop: no git meta
    ]
    assert of_commit(listed, sha) == NEW
    assert of_commit(listed, sha[:7].upper()) == NEW
    assert of_commit(listed, "b" * 40) == OLD
    assert of_commit(listed, "c" * 40) is None
    assert of_commit(listed, "9fceb0") is None
    assert of_commit(listed, "v2.4.1-x") is None
    assert of_commit(None, sha) is None


@pytest.mark.parametrize("tells", [True, False], ids=["told-at-the-third", "never-told"])
async def test_a_vercel_409_whose_look_cannot_tell_asks_again_and_never_says_refused(
    fake: FakeVercel, store: SqliteStore, tells: bool
) -> None:
    """A 409, and the look at production answered 503: it was read as "not there", the
    rollback reported refused, though production may have been rolled back. It is asked
    again within the looks; still 503, it fails saying Vercel could not tell, and where to
    check, its attempt recorded once."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
    fake.production[PROJECT] = OLD
    fake.fail("409", match="/rollback/")
    fake.fail("503", times=2 if tells else None, match=f"/v9/projects/{PROJECT}")
    done = await delivered_to_target(store, config, intent)
    assert len(fake.seen("/rollback/")) == 1  # never sent again
    assert [a.status for a in await deliveries(store, intent.window_id)] == [409]
    if tells:
        assert (done.state, done.last_error) == ("delivered", None)
        assert len(fake.seen(f"/v9/projects/{PROJECT}")) == 3
        return
    assert done.state == "failed"
    said = done.last_error or ""
    assert "Vercel answered HTTP 409" in said, said
    assert "Vercel could not say whether it took the rollback" in said, said
    assert f"asked {1 + FINAL_LOOKS} times" in said and "HTTP 503" in said, said
    assert f"https://vercel.com/d?to=%2F%5Bteam%5D%2F{PROJECT}%2Fdeployments" in said, said


async def test_a_restart_after_an_unanswered_attempt_whose_look_cannot_tell_sends_nothing(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """Stopped in the backoff after a timed-out attempt (recorded: no answer), the restart
    looked once, read a 503 as "not rolled back" and sent the rollback again."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
    await _attempt_recorded(store, intent, None, "timed out after 1s", 1)
    intent.attempts, intent.last_error = 1, "timed out after 1s"
    await set_rollback(store, intent)
    fake.fail("503", match=f"/v9/projects/{PROJECT}")
    done = await delivered_to_target(store, config, intent)
    assert fake.seen("/rollback/") == []
    assert len(fake.seen(f"/v9/projects/{PROJECT}")) == 1 + FINAL_LOOKS
    assert done.state == "failed"
    assert "Vercel could not say whether it took the rollback" in (done.last_error or "")


async def test_a_restart_after_an_answered_5xx_sends_again_though_the_look_cannot_tell(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """An attempt answered 503 was not taken: a look that cannot tell does not hold the
    rollback back (nor wait), it goes out."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
    await _attempt_recorded(store, intent, 503, "HTTP 503", 0)
    intent.attempts, intent.last_status = 1, 503
    await set_rollback(store, intent)
    fake.fail("503", match=f"/v9/projects/{PROJECT}")
    done = await delivered_to_target(store, config, intent)
    assert len(fake.seen(f"/v9/projects/{PROJECT}")) == 1
    assert (done.state, len(fake.accepted)) == ("delivered", 1)


@pytest.mark.parametrize(
    ("api_url", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.github.com/", "https://github.com"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
    ],
)
def test_the_runs_a_page_sends_on_call_to_are_on_githubs_web_not_its_api(
    api_url: str, web: str
) -> None:
    assert github_web_url(api_url) == web


async def test_a_stop_while_vercel_is_asked_whether_it_took_effect_lets_the_look_go(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """Resumed after an attempt answered 503, the rollback asks Vercel whether it took
    effect before sending again; a stop while that look is out lets it go and hands the
    rollback back unsent, its lease with it: another sender takes it at once. Before,
    the stop waited for Vercel's answer (not taken) and the stopping sender sent the
    rollback again inside its grace."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
    await _attempt_recorded(store, intent, 503, "HTTP 503", 0)
    intent.attempts, intent.last_status = 1, 503
    await set_rollback(store, intent)
    asked, answer = asyncio.Event(), asyncio.Event()
    rollback = config.environments["production"].rollback
    assert rollback is not None
    delivery = RollbackDelivery(store, Metrics(), owner="a", targets=RollbackTargets(config))
    original = fake.project

    async def slow_project(request: web.Request) -> web.Response:
        asked.set()
        await answer.wait()  # Vercel answers as the stop comes
        return await original(request)

    fake.project = slow_project  # type: ignore[method-assign]
    try:
        await fake.stop()
        await fake.start(fake.port)  # its routes bound again, to the slow look
        sending = asyncio.create_task(delivery.deliver(intent, rollback, "production"))
        await asyncio.wait_for(asked.wait(), 30)
        delivery.leave_waits()
        answer.set()
        done = await asyncio.wait_for(sending, 30)  # a bound for a hung test only
    finally:
        await delivery.aclose()
    assert (done.state, done.attempts) == ("pending", 1)
    assert fake.accepted == []  # before: attempt 2 sent inside the stop
    now = time.time()
    taken = await store.take_rollback(intent.window_id, "b", now, now + 30)
    assert taken is not None and taken.attempts == 1  # handed back: taken at once


@pytest.mark.parametrize("max_attempts", [3, 1], ids=["attempts-left", "last-attempt"])
@pytest.mark.parametrize("cut", ["stop", "kill"])
@pytest.mark.parametrize("production", [OLD, NEW], ids=["rolled-back", "not-there"])
async def test_a_409s_look_cut_short_is_left_to_the_restart_not_a_resend(
    fake: FakeVercel, store: SqliteStore, production: str, cut: str, max_attempts: int
) -> None:
    """Vercel answered the rollback 409, and a stop let the look at its production go
    (`LeftAsking`, the 409 stored with the hand-back), or a kill cut it (the task
    cancelled: nothing more stored). The restart read the first as an answered 5xx, the
    second as an attempt whose answer was lost: looks, then, not rolled back, the
    rollback sent again (another 409, counted at the fake). The 409 is stored before the
    look, and the restart looks as the 409's own look does: delivered if production is
    the deployment rolled back to, else failed as Vercel's refusal, nothing sent again.
    On the last allowed attempt too, where the restart took it for an unanswered last
    attempt: Vercel asked 5 times over the final looks' waits, "(asked 5 times over
    150ms)" added to the 409's error."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
    fake.fail("409", match="/rollback/")
    asked, let_go = asyncio.Event(), asyncio.Event()
    rollback = config.environments["production"].rollback
    assert rollback is not None
    rollback = rollback.model_copy(update={"max_attempts": max_attempts})
    first = RollbackDelivery(store, Metrics(), owner="a", targets=RollbackTargets(config))
    original = fake.project

    async def held_project(request: web.Request) -> web.Response:
        asked.set()
        await let_go.wait()  # not answered before the stop lets it go
        return await original(request)

    fake.project = held_project  # type: ignore[method-assign]
    try:
        await fake.stop()
        await fake.start(fake.port)  # its routes bound again, to the held look
        sending = asyncio.create_task(first.deliver(intent, rollback, "production"))
        await asyncio.wait_for(asked.wait(), 30)
        if cut == "stop":
            first.leave_waits()
            await asyncio.wait_for(sending, 30)  # a bound for a hung test only
        else:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
    finally:
        let_go.set()
        await first.aclose()
    left = await store.get_rollback(intent.window_id)
    assert left is not None and (left.state, left.attempts) == ("pending", 1)
    assert [a.status for a in await deliveries(store, intent.window_id)] == [409]

    fake.project = original  # type: ignore[method-assign]
    await fake.stop()
    await fake.start(fake.port)
    fake.production[PROJECT] = production
    stored = await store.get_rollback(intent.window_id)
    assert stored is not None
    looked_before = len(fake.seen(f"/v9/projects/{PROJECT}"))
    restart = RollbackDelivery(store, Metrics(), owner="a", targets=RollbackTargets(config))
    try:  # the next start of the same replica
        done = await restart.deliver(stored, rollback, "production")
    finally:
        await restart.aclose()
    assert len(fake.seen("/rollback/")) == 1, fake.seen("/rollback/")  # not sent again
    (answered,) = await deliveries(store, intent.window_id)
    assert answered.status == 409
    # one look, as the 409's own look: found or not found, it is not asked again
    assert len(fake.seen(f"/v9/projects/{PROJECT}")) - looked_before == 1
    if production == OLD:
        assert (done.state, done.last_status, done.last_error) == ("delivered", 409, None)
    else:
        assert (done.state, done.last_status) == ("failed", 409)
        assert "Vercel answered HTTP 409" in (done.last_error or ""), done.last_error
        assert done.last_error == answered.error  # the 409's words, nothing added


async def test_a_rate_limit_on_the_look_up_of_the_previous_deployment_is_waited_out(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """Vercel's list of production deployments (the look-up of what to roll back to)
    answered 429 with a reset past the look-up's own 2 s wait: the rollback failed at
    once, "nothing to roll back to", the bad deploy left live for a rate limit. The
    reset is waited for (stored, as the rollback's other waits), then Vercel is asked
    again and the rollback goes out once."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW})
    fake.fail("rate_limit", times=1, reset_in=2.5, match="/v6/deployments")
    delivering = asyncio.create_task(delivered_to_target(store, config, intent))
    stored = None
    for _ in range(2000):  # the wait stored, as a backoff's is (a restart waits it too)
        stored = await store.get_rollback(intent.window_id)
        if stored is not None and stored.next_attempt_at is not None:
            break
        await asyncio.sleep(0.005)
    done = await delivering
    listed = fake.seen("/v6/deployments")
    reset = math.ceil(listed[0].at + 2.5)  # X-RateLimit-Reset, as the fake answered it
    assert stored is not None and stored.next_attempt_at is not None
    assert stored.next_attempt_at >= reset - 0.05
    assert (done.state, done.last_error) == ("delivered", None), done.last_error
    assert [a["deployment"] for a in fake.accepted] == [OLD]  # 0 before: failed at once
    assert len(listed) == 2
    assert listed[1].at >= reset - 0.05  # the reset waited for, not asked inside it
    (sent,) = fake.seen("/rollback/")
    assert sent.at >= listed[1].at


async def test_a_look_up_vercel_never_answers_is_asked_within_the_rollbacks_attempts(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """Vercel's list answering 503 on every ask: asked `max_attempts` times (3 here), then
    failed saying Vercel could not say, not "nothing to roll back to"; nothing sent."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW})
    fake.fail("503", match="/v6/deployments")
    done = await delivered_to_target(store, config, intent, backoff=0.01, max_backoff=0.01)
    error = done.last_error or ""
    assert done.state == "failed"
    assert "Vercel could not say which production deployment to roll back to" in error, error
    assert "asked 3 times" in error and "HTTP 503" in error, error
    assert "nothing to roll back to" not in error
    assert len(fake.seen("/v6/deployments")) == 3 * 2  # the look-up's own two attempts each
    assert fake.seen("/rollback/") == [] and fake.accepted == []


async def v3_deployed(store: SqliteStore) -> DeployWindow:
    """v3 of production, deployed now (after the rollback was requested): the fix."""
    now = time.time()
    newer = DeployWindow(
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8V3", "production", "v3", "v2", None, {}, "watching",
        now, now + 60, now,
    )  # fmt: skip
    await store.create_window(newer)
    return newer


async def test_a_look_up_waiting_out_a_rate_limit_is_given_up_when_a_newer_deploy_comes(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """Vercel's list of production deployments (what to roll back to) rate limited for
    30 s; v3 deploys meanwhile: Vercel is not asked again (its answer would no longer be
    what to roll back to, v3 serving), and the rollback fails naming v3 within seconds,
    where the look-up waited out the 30 s, asked again, then gave the rollback up."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW})
    fake.fail("rate_limit", reset_in=30, match="/v6/deployments")
    delivering = asyncio.create_task(delivered_to_target(store, config, intent))
    for _ in range(2000):  # waiting out the reset, its wait stored
        stored = await store.get_rollback(intent.window_id)
        if stored is not None and stored.next_attempt_at is not None:
            break
        await asyncio.sleep(0.005)
    newer = await v3_deployed(store)

    done = await asyncio.wait_for(delivering, 5.0)

    assert done.state == "failed" and newer.id in (done.last_error or ""), done.last_error
    assert len(fake.seen("/v6/deployments")) == 1  # once: the reset is past its own wait
    assert fake.seen("/rollback/") == [] and fake.accepted == []


async def test_a_newer_deploy_before_the_look_up_gives_the_rollback_up_with_vercel_unasked(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """v3 deployed before the rollback's sender asked Vercel what to roll back to: the
    rollback is given up naming v3, and Vercel is not asked (its answer no longer
    matters), where it was asked once and the rollback then given up."""
    intent = await rollback_requested(store, {"vercel.deployment": NEW})
    newer = await v3_deployed(store)
    done = await asyncio.wait_for(delivered_to_target(store, settings(fake), intent), 5.0)
    assert done.state == "failed" and newer.id in (done.last_error or ""), done.last_error
    assert fake.seen("/v6/deployments") == []
    assert fake.seen("/rollback/") == [] and fake.accepted == []


async def test_a_restart_in_the_look_ups_wait_after_a_newer_deploy_gives_up_at_once(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """Stopped while it waited 20 s to ask Vercel again (the wait stored), and v3 deployed
    meanwhile: the restart gives the rollback up at once, naming v3, not after the wait,
    and asks Vercel nothing."""
    intent = await rollback_requested(store, {"vercel.deployment": NEW})
    intent.next_attempt_at = time.time() + 20
    await set_rollback(store, intent)
    newer = await v3_deployed(store)
    done = await asyncio.wait_for(delivered_to_target(store, settings(fake), intent), 5.0)
    assert done.state == "failed" and newer.id in (done.last_error or ""), done.last_error
    assert fake.seen("/v6/deployments") == []
    assert fake.seen("/rollback/") == [] and fake.accepted == []


async def asked_3_times_by_a_dead_process(store: SqliteStore) -> RollbackIntent:
    """A Vercel rollback of a deploy naming no previous deployment, as stored after its
    sender (replica "a") counted 3 asks of Vercel and was killed: its lease lapsed."""
    intent = await rollback_requested(store, {"vercel.deployment": NEW})
    dead = await store.take_rollback(intent.window_id, "a", time.time(), time.time() + 0.2)
    assert dead is not None
    for counted in (1, 2, 3):
        asked = await store.count_look_up(
            dead.window_id, dead.fence, time.time(), time.time() + 0.2
        )
        assert asked == counted
    await asyncio.sleep(0.3)
    stored = await store.get_rollback(intent.window_id)
    assert stored is not None and stored.look_ups == 3
    return stored


async def test_a_restart_finding_the_look_ups_spent_fails_without_asking_again(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """Its last ask (of `max_attempts`, 3 here) out when its process was killed: stored
    as counted, so the restart asks no more, and fails saying the last answer was lost,
    where each process began its count at zero and asked 3 times more."""
    stored = await asked_3_times_by_a_dead_process(store)
    done = await delivered_to_target(store, settings(fake), stored)
    assert done.state == "failed"
    error = done.last_error or ""
    assert "asked 3 times, the last answer lost to a restart" in error, error
    assert fake.seen("/v6/deployments") == []  # 3 GETs' worth more before
    assert fake.seen("/rollback/") == [] and fake.accepted == []


async def test_a_restart_finds_the_deployment_an_earlier_ask_found_on_the_windows_labels(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """Its third ask (of 3) found the deployment, kept on the window's labels, and its
    process was killed before the rollback went out: the restart sends it there, not
    asking Vercel again, where the spent count would have failed it unasked."""
    stored = await asked_3_times_by_a_dead_process(store)
    await store.add_labels(stored.window_id, {"vercel.previous": OLD})
    done = await delivered_to_target(store, settings(fake), stored)
    assert (done.state, done.last_error) == ("delivered", None), done.last_error
    assert fake.seen("/v6/deployments") == []
    assert [a["deployment"] for a in fake.accepted] == [OLD]


class LongWindedVercel(FakeVercel):
    """Vercel refusing the rollback with its error shape, its message far longer than any
    message should quote, and more fields beside it."""

    def failure_response(self, failure: Failure, request: web.Request) -> web.StreamResponse:
        if failure.kind != "long":
            return super().failure_response(failure, request)
        said = {"code": "bad_request", "message": "Cannot roll back: " + "x" * 5000}
        return web.json_response({"error": {**said, "action": "Learn More"}}, status=400)


async def test_a_vercel_refusal_quotes_vercels_own_message_and_code_not_its_body(
    fake: FakeVercel, store: SqliteStore
) -> None:
    """A rollback Vercel refused said `Vercel answered HTTP 400: {"error": {"code": …`,
    the raw JSON of Vercel's answer, cut at 200 bytes: its `last_error` (the deploy page,
    the CLI, the failed rollback's alert) is Vercel's own message and code."""
    config = settings(fake)
    intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
    fake.fail("400", match="/rollback/")
    done = await delivered_to_target(store, config, intent)
    assert (done.state, done.last_status) == ("failed", 400)
    assert done.last_error == "Vercel answered HTTP 400: fake failure 400 (fake_failure)"


async def test_a_long_vercel_message_is_quoted_bounded(store: SqliteStore) -> None:
    async with LongWindedVercel(token=TOKEN, team_id="team_1") as fake:
        config = settings(fake)
        intent = await rollback_requested(store, {"vercel.deployment": NEW, "vercel.previous": OLD})
        fake.fail("long", match="/rollback/")
        done = await delivered_to_target(store, config, intent)
    said = done.last_error or ""
    assert said.startswith("Vercel answered HTTP 400: Cannot roll back: xxx"), said
    assert said.endswith("… (bad_request)"), said
    assert len(said) < 300 and "{" not in said and "Learn More" not in said, said


async def test_a_github_refusal_quotes_githubs_message_not_its_body(store: SqliteStore) -> None:
    """GitHub's 422 for a workflow that takes none of the inputs sent: its body (the
    message, then `documentation_url`) is past 200 bytes, and `last_error` quoted the
    JSON cut mid-way; it is GitHub's message."""
    async with FakeGitHub(token="gh") as github:
        github.declared_inputs = {}
        config = github_rollback_config(github.url)
        intent = await rollback_requested(store, {})
        done = await delivered_to_target(store, config, intent)
    assert (done.state, done.last_status) == ("failed", 422)
    said = done.last_error or ""
    assert said.startswith("GitHub answered HTTP 422: Unexpected inputs provided: ["), said
    assert "documentation_url" not in said and "{" not in said, said
