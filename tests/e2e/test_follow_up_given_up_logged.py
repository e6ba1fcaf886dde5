"""A `rollback.then` follow-up given up on (its attempts spent, or refused with a 4xx) is
said in the agent's log: one warning naming the follow-up, its receiver, the deploy and
why, without the receiver's token or password. Before, its outcome was stored and paged
(`rollback_failed`), and the log said nothing: an on-call reading the agent's log could
not tell it never arrived. Counted at the follow-up's receiver."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.e2e.conftest import (
    SECRET,
    AgentFactory,
    FlipTarget,
    RefusingReceiver,
    environment,
    rollback_then_migrations,
)
from tests.receivers import JsonSink, RollbackReceiver, alert_titled

pytestmark = pytest.mark.e2e

TOKEN_IN_PATH = "T0123ABCDxyz987654"
PASSWORD = "s3cret-pass-word"


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("script", "posts", "why"),
    [([503, 503, 503], 3, "HTTP 503"), ([422], 1, "HTTP 422")],
    ids=["attempts-spent", "refused"],
)
async def test_a_follow_up_given_up_on_is_logged_once_with_its_receiver_deploy_and_reason(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    caplog: pytest.LogCaptureFixture,
    script: list[int],
    posts: int,
    why: str,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    path = f"/hooks/{TOKEN_IN_PATH}/then"
    follow: RollbackReceiver = await rollback_receiver(SECRET, script=script, path=path)
    url = follow.url.replace("http://", f"http://ops:{PASSWORD}@")
    delivery = "timeout: 1s, max_attempts: 3, backoff: 50ms, max_backoff: 100ms"
    rollback = rollback_then_migrations(receiver.url, SECRET, url, delivery)
    caplog.set_level(logging.INFO, logger="postflight")
    agent = await start_agent(environment("production", flip_target.url, extra=rollback))
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    final = await agent.wait_until(
        deploy["id"],
        lambda d: (d.get("rollback") or {}).get("then", [{}])[0].get("state") == "failed",
        30,
    )
    assert final["state"] == "rolled_back"
    assert final["rollback"]["then"] == [{"name": "migrations", "state": "failed"}]
    assert len(follow.attempts) == posts, follow.attempts  # counted at the receiver
    given_up = [
        r
        for r in caplog.records
        if r.name.startswith("postflight")
        and "migrations" in r.getMessage()
        and r.levelno >= logging.WARNING
    ]
    assert len(given_up) == 1, [r.getMessage() for r in given_up]
    (line,) = given_up
    said = line.getMessage()
    assert line.levelno == logging.WARNING
    assert deploy["id"] in said and why in said and f"{posts} attempt(s)" in said, said
    assert f"127.0.0.1:{follow.port}" in said, said  # which receiver
    assert getattr(line, "deploy_id", None) == deploy["id"]
    every = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in every and TOKEN_IN_PATH not in every, said


@pytest.mark.timeout(90)
async def test_a_follow_up_refusal_that_quotes_its_url_is_logged_and_paged_without_its_token(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    caplog: pytest.LogCaptureFixture,
    json_sink: JsonSink,
) -> None:
    """A receiver whose 404 quotes the path it was sent (as Express answers "Cannot POST
    /hooks/<token>/then"): the follow-up's line and page say the refusal, not the token."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    follow = RefusingReceiver(404, lambda request: f"Cannot POST {request.path}")
    await follow.start()
    try:
        url = f"{follow.url}/hooks/{TOKEN_IN_PATH}/then"
        rollback = rollback_then_migrations(receiver.url, SECRET, url, "max_attempts: 3")
        caplog.set_level(logging.INFO, logger="postflight")
        env = environment("production", flip_target.url, extra=rollback)
        agent = await start_agent(env, f"alerting:\n  channels:\n    - url: {json_sink.url()}\n")
        deploy = await agent.register("production", "v2")
        flip_target.bad = True
        await agent.wait_until(
            deploy["id"],
            lambda d: (d.get("rollback") or {}).get("then", [{}])[0].get("state") == "failed",
            30,
        )
    finally:
        await follow.stop()
    assert follow.posts == 1  # a 404 is not tried again
    (line,) = [
        r.getMessage()
        for r in caplog.records
        if "follow-up 'migrations'" in r.getMessage() and "given up" in r.getMessage()
    ]
    assert "HTTP 404: Cannot POST /hooks/***/then" in line, line
    every = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN_IN_PATH not in every
    page = await alert_titled(json_sink, "ROLLBACK FAILED", within=20)
    assert "Cannot POST /hooks/" in page.message, page.message  # its *** escaped
    assert TOKEN_IN_PATH not in page.message
