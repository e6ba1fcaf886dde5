"""Registrations whose `deployed_at` is before a deploy the environment already has,
against the real daemon. Contract §2: "A new deploy to an environment with an active
window supersedes it", whatever the `deployed_at` order: a late or retried registration
of an older deploy supersedes the live one, and its 201 and a WARNING log name that
newer deploy (the pipeline's author learns it; nothing the contract promises changes).
A registration with a past `deployed_at` after a window of the environment ended is
watched as any other (the version before recorded both `superseded` at once)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from agent.appkeys import STORE
from agent.windows import pace
from common.times import rfc3339
from tests.e2e.conftest import SECRET, TOKEN, AgentFactory, FlipTarget, environment
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
async def test_an_older_deploy_registered_late_supersedes_the_live_one_and_says_so(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    caplog: pytest.LogCaptureFixture,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
) -> None:
    caplog.set_level(logging.WARNING, logger="postflight.api")
    receiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(
            "production",
            flip_target.url,
            window="30s",
            extra=f"rollback: {{url: '{receiver.url}', secret: {SECRET}}}",
        )
    )
    live = await agent.register("production", "v2")
    deployed = time.time() - 60
    late_body = {
        "environment": "production",
        "version": "v1",
        "window": "10m",
        "deployed_at": rfc3339(deployed, millis=False),
    }
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "run-41"}
    async with agent.http.post(f"{agent.url}/v1/deploys", json=late_body, headers=headers) as r:
        late = await r.json()
        assert r.status == 201, late
        assert r.headers["Location"] == f"/v1/deploys/{late['id']}"
    assert late["state"] == "watching", late
    [warning] = late["warnings"]
    assert warning.startswith("production v1 (deployed at"), warning
    assert f"registered after v2 ({live['id']}, deployed at" in warning, warning
    assert ", live): a late or retried registration of an older deploy supersedes it" in (warning)
    assert warning.endswith("if v2 is what serves, register it again"), warning
    logged = [r for r in caplog.records if r.getMessage() == warning]
    assert [r.levelno for r in logged] == [logging.WARNING]
    # the pipeline's retry of it, its time written with another offset: the same answer
    again_body = {**late_body, "deployed_at": rfc3339(deployed, millis=False)[:-1] + "+00:00"}
    async with agent.http.post(f"{agent.url}/v1/deploys", json=again_body, headers=headers) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == late
    assert (await agent.get(live["id"]))["state"] == "superseded"
    assert (
        agent.metric("postflight_windows_total", environment="production", outcome="superseded")
        == 1.0
    )
    # what it registered is watched: a bad deploy is rolled back, the old one fires nothing
    flip_target.bad = True
    final = await agent.settled(late["id"])
    assert final["state"] == "rolled_back", final
    assert list(receiver.delivered) == [late["id"]]
    assert (await agent.get(live["id"]))["state"] == "superseded"


@pytest.mark.timeout(60)
async def test_a_deploy_registered_before_a_scheduled_one_goes_live_supersedes_it_quietly(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """A `scheduled` window is not live yet: a deploy that went live before its time is
    what serves now, and supersedes it as any new deploy does (README, States), with no
    warning."""
    agent = await start_agent(environment("production", flip_target.url, window="30s"))
    scheduled = await agent.register(
        "production", "v3", deployed_at=rfc3339(time.time() + 1800, millis=False)
    )
    assert scheduled["state"] == "watching" and scheduled["scheduled"] is True
    now_live = await agent.register(
        "production", "v2", deployed_at=rfc3339(time.time() - 10, millis=False)
    )
    assert now_live["state"] == "watching" and not now_live.get("warnings"), now_live
    assert (await agent.get(scheduled["id"]))["state"] == "superseded"
    await agent.cancel(now_live["id"])


@pytest.mark.timeout(60)
async def test_a_past_deployed_at_after_a_window_of_the_environment_ended_is_watched(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """A test, or a pipeline, that takes its time at its start and registers with it
    after another deploy of the environment was watched and ended: the new deploy is
    watched (the version before recorded it `superseded` at once by the ended one), and
    a bad one is judged and rolled back as any other."""
    started = time.time()
    agent = await start_agent(environment("production", flip_target.url, window="30s"))
    earlier = await agent.register("production", "v2", window="2s")
    ended = await agent.settled(earlier["id"])
    assert ended["state"] in ("passed", "inconclusive"), ended
    mine = await agent.register(
        "production", "v3", window="10m", deployed_at=rfc3339(started, millis=False)
    )
    assert mine["state"] == "watching" and not mine.get("warnings"), mine
    assert (await agent.get(earlier["id"]))["state"] == ended["state"]
    flip_target.bad = True
    final = await agent.settled(mine["id"])
    assert final["state"] in ("failed", "rolled_back"), final
    # deployed 2 min ago, its window of 10m not over: watched too, after v3's failure
    flip_target.bad = False
    ago = await agent.register(
        "production", "v4", window="10m", deployed_at=rfc3339(time.time() - 120, millis=False)
    )
    assert ago["state"] == "watching" and not ago.get("warnings"), ago
    await agent.cancel(ago["id"])


@pytest.mark.timeout(90)
async def test_register_wait_exits_3_when_a_late_registration_supersedes_its_window(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """The real CLI, as a pipeline runs it: `postflight register --wait` of v2 follows
    its window; a late registration of v1 (deployed before v2) supersedes it, as the
    contract has any new deploy do, and the wait ends with exit 3, the README's "no
    verdict to act on: … superseded" (contract §1's 3; neither 0 nor 1: nobody judged
    v2, so the pipeline must not read it as a pass nor roll back for it)."""
    from tests.cli_process import awaited_cli

    agent = await start_agent(environment("production", flip_target.url, window="1m"))
    auth = ("--url", agent.url, "--token", TOKEN)
    waiting = asyncio.create_task(
        awaited_cli(
            "register",
            "--env",
            "production",
            "--version",
            "v2",
            "--wait",
            "--timeout",
            "45s",
            *auth,
        )
    )
    store = agent.app[STORE]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not (await store.list_windows(environment="production")).items:
        assert not waiting.done(), waiting.result()
        assert loop.time() < deadline, "the CLI registered nothing"
        await asyncio.sleep(0.05)
    [v2] = (await store.list_windows(environment="production")).items
    late = await agent.register(
        "production", "v1", deployed_at=rfc3339(time.time() - 30, millis=False)
    )
    assert late["state"] == "watching" and len(late["warnings"]) == 1, late
    code, said = await waiting
    assert code == 3, said
    assert f"registered v2 in production: {v2.id}" in said, said
    # v1 was deployed before v2: it superseded v2 by registering later, not as a newer deploy
    assert "superseded by a later registration: no verdict (exit 3)" in said, said
    assert "newer deploy" not in said, said
    assert (await agent.get(v2.id))["state"] == "superseded"
    await agent.cancel(late["id"])


SKEW_S = 60.0
"""How far replica-a's clock runs ahead of replica-b's."""


@pytest.mark.timeout(60)
async def test_the_warning_of_a_late_registration_is_the_stores_order_not_a_replicas_clock(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """v2, registered without a `deployed_at` on replica-a whose clock runs a minute
    ahead, was live (deployed as registered, before v1's registration in the store's
    order); v1's late registration on replica-b, deployed 30 s ago, names it, where it
    read v2's stamp as a minute ahead, `scheduled`, and said nothing. v3, registered on
    replica-b without a `deployed_at` after v2 on replica-a, is the newest: no warning
    Replicas share a PostgreSQL store too far away to follow its clock (every reading's
    round trip over `MAX_ROUND_TRIP_S`): each stamps registrations by its own."""
    monkeypatch.setattr(pace, "MAX_ROUND_TRIP_S", -1.0)
    config = environment("production", flip_target.url, window="10m")
    store = f"url: {pg_url}"
    ahead = await start_agent(
        config, store=store, owner="replica-a", clock=lambda: time.time() + SKEW_S
    )
    behind = await start_agent(config, store=store, owner="replica-b")
    live = await ahead.register("production", "v2")
    late = await behind.register(
        "production", "v1", deployed_at=rfc3339(time.time() - 30, millis=False)
    )
    [warning] = late.get("warnings") or [None]
    assert warning is not None and f"registered after v2 ({live['id']}," in warning, late
    again = await ahead.register("production", "v2")
    newest = await behind.register("production", "v3")
    assert not newest.get("warnings"), newest
    assert (await behind.get(again["id"]))["state"] == "superseded"
    await behind.cancel(newest["id"])
