"""A stop while a GitHub deployment protection rule's answer waits to retry (GitHub down:
503 with `Retry-After`) or is in flight (GitHub hanging) hands the gate back to the next
start, which answers it once: at once, or, in a wait GitHub asked for, as that ends (the
stop keeps it in the gate's claim; it answered at once, inside it).

The answer's wait (`call`'s sleep between attempts) was waited out within the stop's
grace, its next attempt sent inside the stop when the wait ended within the grace, and
cut off ('did not finish within …') when not; an answer in flight was cut off at the
grace too. Either way its claim stayed held (`GATE_CLAIM_S`: 300 s), so the next start
(or the other replica) answered only once it lapsed, and the job behind the protection
rule waited that long. Counted at the fake GitHub, which takes one answer per request
(`ask_gate`) and refuses a second (422)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.e2e.integrations_support import GATE_PATH, Integrated, integrated  # noqa: F401 (fixture)
from tests.e2e.test_integrations_e2e import eventually, github_hook

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(90)
@pytest.mark.parametrize("github", ["503 retry-after 1", "503 retry-after 6", "hangs"], ids=str)
async def test_a_stop_in_a_gates_answer_hands_it_to_the_next_start(
    integrated: Integrated,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    github: str,
) -> None:
    """The staging window of the sha passed; GitHub meets the gate's first answer with a
    503 (`Retry-After` within the stop's grace or past it) or holds it; the agent stops;
    the next start on the same store answers the gate, at once and once."""
    if github == "hangs":
        integrated.github.fail("hang", times=1, match=GATE_PATH)
    else:
        retry_after = float(github.rsplit(" ", 1)[1])
        integrated.github.fail("unavailable", times=1, reset_in=retry_after, match=GATE_PATH)
    env = integrated.environments(staging_window="1500ms")
    server = "shutdown_timeout: 5s"  # a 2 s grace: a 1 s wait ended within it
    agent = await integrated.start(env, server=server, owner="replica-a")
    good = "b" * 40
    assert (await agent.settled((await agent.register("staging", good))["id"]))["state"] == "passed"
    rule = integrated.github.ask_gate(sha=good, run_id=7)
    status, _ = await github_hook(agent, "deployment_protection_rule", rule, "gate-stop")
    assert status == 202
    await eventually(lambda: len(integrated.github.seen(GATE_PATH)) >= 1)
    await asyncio.sleep(0.3)  # its answer read: in the wait (or still held by GitHub)
    with caplog.at_level(logging.INFO, logger="postflight"):
        await agent.stop()
    said = [r.getMessage() for r in caplog.records]
    assert len(integrated.github.seen(GATE_PATH)) == 1, said  # none inside the stop
    assert integrated.github.gate_answers == []
    cut_off = [m for m in said if "cut off" in m or "leaving it" in m]
    if github == "hangs":
        assert cut_off and "protection rule" in cut_off[0], said
    else:
        assert not cut_off, said
        left = [m for m in said if "left pending to the next start" in m]
        assert left and "protection rule" in left[0], said

    await integrated.start(env, server=server, owner="replica-a")
    # at once, or as GitHub's wait ends: not once the claim lapsed (`GATE_CLAIM_S`, 300 s)
    await eventually(lambda: len(integrated.github.gate_answers) >= 1, within=15)
    await asyncio.sleep(1.0)  # and no second answer
    assert [(a["run"], a["state"]) for a in integrated.github.gate_answers] == [("7", "approved")]
    _answered_again_after_the_wait(integrated, github)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("github", ["503 retry-after 6", "hangs"], ids=str)
async def test_a_stop_in_a_gates_answer_hands_it_to_the_other_replica(
    integrated: Integrated,  # noqa: F811
    pg_url: str,
    github: str,
) -> None:
    """Two replicas on one PostgreSQL store: the one answering the gate stops in its
    answer; the other, which found the gate claimed, answers it at once, and once."""
    if github == "hangs":
        integrated.github.fail("hang", times=1, match=GATE_PATH)
    else:
        integrated.github.fail("unavailable", times=1, reset_in=6, match=GATE_PATH)
    env = integrated.environments(staging_window="1500ms")
    server = "shutdown_timeout: 5s"
    store = f"url: {pg_url}"
    first = await integrated.start(env, server=server, store=store, owner="replica-a")
    good = "b" * 40
    assert (await first.settled((await first.register("staging", good))["id"]))["state"] == "passed"
    rule = integrated.github.ask_gate(sha=good, run_id=9)
    status, _ = await github_hook(first, "deployment_protection_rule", rule, "gate-replicas")
    assert status == 202
    await eventually(lambda: len(integrated.github.seen(GATE_PATH)) >= 1)
    await integrated.start(env, server=server, store=store, owner="replica-b")
    await asyncio.sleep(1.0)  # the other replica's scans find the gate claimed
    assert len(integrated.github.seen(GATE_PATH)) == 1
    await first.stop()
    # at once, or as GitHub's wait ends: not once the claim lapsed (`GATE_CLAIM_S`, 300 s)
    await eventually(lambda: len(integrated.github.gate_answers) >= 1, within=15)
    await asyncio.sleep(1.0)  # and no second answer
    assert [(a["run"], a["state"]) for a in integrated.github.gate_answers] == [("9", "approved")]
    _answered_again_after_the_wait(integrated, github)


def _answered_again_after_the_wait(trial: Integrated, github: str) -> None:
    """Two answers in all, the second not inside the wait GitHub's 503 asked for: the stop
    kept it in the gate's claim, where the next claimer answered at once, inside it."""
    sent = trial.github.seen(GATE_PATH)
    assert len(sent) == 2, sent
    if github != "hangs":
        asked = float(github.rsplit(" ", 1)[1])
        assert sent[1].at >= sent[0].at + asked - 0.1, (sent[0].at, sent[1].at)
