"""Two end alerts as the person paged at 3 a.m. reads them, sent by the real daemon.

A failed deploy in an environment with no `rollback` said "No rollback webhook is
configured": a Vercel or GitHub target is a rollback too, and the words sent the reader to
configure a webhook rather than say that nothing was asked. An inconclusive window was
titled "inconclusive, not shown within bounds": what was not shown, and why, was left to
the body.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment, held_as_overloaded
from tests.receivers import JsonSink, alert_titled

pytestmark = pytest.mark.e2e


def channel(sink: JsonSink) -> str:
    return f"alerting:\n  channels:\n    - url: {sink.url()}\n"


@pytest.mark.timeout(60)
async def test_a_failed_deploy_with_no_rollback_says_nothing_was_asked(
    start_agent: AgentFactory, flip_target: FlipTarget, json_sink: JsonSink
) -> None:
    agent = await start_agent(environment("production", flip_target.url), channel(json_sink))
    flip_target.bad = True
    for _ in range(3):  # a fail the loaded machine's own stall held is registered again
        final = await agent.settled((await agent.register("production", "v2"))["id"])
        if not held_as_overloaded(final):
            break
    assert final["state"] == "failed", final
    note = await alert_titled(json_sink, "deploy failed")
    assert note.message.startswith(
        "**Deploy failed.** This environment has no `rollback` configured (no webhook,"
        " Vercel or GitHub target), so nothing was asked to roll back: roll back by hand."
    ), note.message
    assert "this environment has no rollback configured" in note.message, note.message
    assert "webhook is configured" not in note.message, note.message


@pytest.mark.timeout(60)
async def test_an_inconclusive_window_is_titled_by_what_it_lacked(
    start_agent: AgentFactory, flip_target: FlipTarget, json_sink: JsonSink
) -> None:
    """25 clean probes cannot show an error rate within 0.05 on evidence: inconclusive."""
    analysis = "{policy: sequential, pass_on: evidence}"
    agent = await start_agent(
        environment("production", flip_target.url, analysis=analysis), channel(json_sink)
    )
    deploy = await agent.register("production", "v2")
    assert (await agent.settled(deploy["id"]))["state"] == "inconclusive"
    note = await alert_titled(json_sink, "inconclusive")
    assert note.title == (
        "[postflight] production v2: inconclusive, not enough data or evidence to pass"
    ), note.title
