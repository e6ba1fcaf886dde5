"""A rollback attempt that got no answer may have been taken: before sending again the
delivery asks the target whether it took effect (`RollbackTargets.already_done`). A look
the target cannot answer (a 503, a timeout) was read as "not taken", and the rollback went
out a second time: a second Vercel rollback, a second workflow run. It is asked again
within the rollback's looks, and if it still cannot tell, the rollback ends failed, its
page saying that whether it went out is unknown and where to look: never a blind second
send. Counted at the fakes, with the real daemon."""

from __future__ import annotations

import html
import itertools
from typing import Any

import pytest

from tests.e2e.conftest import SECRET
from tests.e2e.integrations_support import (  # noqa: F401 (fixture)
    Integrated,
    integrated,
    rolled_back_by_hand,
)
from tests.e2e.test_integrations_e2e import eventually
from tests.fakes._server import FakeServer

pytestmark = pytest.mark.e2e

LOOK = "/v9/projects/"
"""Vercel's project, whose production deployment says whether the rollback took effect."""
SEND = "/rollback/"
"""Vercel's rollback call (`POST /v1/projects/{project}/rollback/{deployment}`)."""
VERCEL = f"{{target: vercel, secret: {SECRET}, timeout: 1s, backoff: 50ms}}"
"""The rollback's YAML: to Vercel, a 1 s timeout, a 50 ms backoff."""


def unanswered(fake: FakeServer, path: str) -> None:
    """`fake` acts on the first POST to `path` and never answers it, until the agent has let
    go (`fail("unanswered")`, seen at the fake: `let_go`): the attempt times out whatever
    the load. An answer 0.3-0.6 s past the timeout, as these tests gave, was read on a
    loop that met its deadline 0.25 s late (`agent.rollback.delivery.answered_within`'s
    look): the rollback delivered with no look at all."""
    fake.fail("unanswered", times=1, match=lambda r: r.method == "POST" and path in r.path)


def _settled(d: dict) -> bool:  # type: ignore[type-arg]
    return (d.get("rollback") or {}).get("state") not in (None, "pending")


async def _rolled_back(
    integrated: Integrated,  # noqa: F811
    rollback: str,
    within: float,
) -> dict[str, Any]:
    """A window of a daemon rolling back by `rollback` (its YAML), rolled back by hand:
    the window once its rollback has settled."""
    agent = await integrated.start(integrated.environments(rollback=rollback))
    deploy_id = await rolled_back_by_hand(agent)
    return await agent.wait_until(deploy_id, _settled, within=within)


@pytest.mark.timeout(60)
async def test_a_look_that_cannot_tell_twice_is_asked_again_and_the_rollback_not_sent_again(
    integrated: Integrated,  # noqa: F811
) -> None:
    """Vercel acts on the rollback and never answers it (`unanswered`); its first two looks
    answer 503. One look, then the rollback sent again: two at Vercel."""
    vercel = integrated.vercel
    unanswered(vercel, SEND)
    vercel.fail("503", times=2, match=lambda r: r.method == "GET" and LOOK in r.path)
    final = await _rolled_back(integrated, VERCEL, within=30)
    assert final["rollback"]["state"] == "delivered", final
    # a second send came before the delivery ended: counted as it arrived, then acted on
    assert len(vercel.seen(SEND)) == 1, vercel.seen(SEND)
    await eventually(lambda: vercel.in_flight == 0)
    assert vercel.let_go == vercel.seen(SEND)  # the premise: the attempt got no answer
    assert len(vercel.accepted) == 1, vercel.accepted
    assert len(vercel.seen(LOOK)) == 3  # 503, 503, then production is the one rolled back to


@pytest.mark.timeout(60)
async def test_a_vercel_rollback_whose_looks_never_tell_fails_saying_so_sent_once(
    integrated: Integrated,  # noqa: F811
) -> None:
    """The rollback unanswered (`unanswered`), every look answers 503 with a Retry-After:
    the rollback is not sent again, and fails saying Vercel could not tell, and where to
    check by hand."""
    vercel = integrated.vercel
    unanswered(vercel, SEND)
    vercel.fail("unavailable", reset_in=0.2, match=lambda r: r.method == "GET" and LOOK in r.path)
    final = await _rolled_back(integrated, VERCEL, within=40)
    assert len(vercel.seen(SEND)) == 1, vercel.seen(SEND)
    await eventually(lambda: vercel.in_flight == 0)
    assert vercel.let_go == vercel.seen(SEND)  # the premise: the attempt got no answer
    assert len(vercel.accepted) == 1, vercel.accepted
    assert final["rollback"]["state"] == "failed", final
    said = final["rollback"]["last_error"]
    assert "Vercel could not say whether it took the rollback" in said, said
    assert "not sent again" in said and "unknown" in said, said
    assert "https://vercel.com/d?to=" in said, said
    looks = vercel.seen(LOOK)
    assert len(looks) == 5, looks  # at once, then after each of the 4 waits
    gaps = [b.at - a.at for a, b in itertools.pairwise(looks)]
    assert min(gaps) >= 0.9, gaps  # Retry-After: 1 (0.2 s rounded up), not the 50 ms backoff


@pytest.mark.timeout(60)
async def test_a_github_dispatch_whose_looks_time_out_is_not_dispatched_again(
    integrated: Integrated,  # noqa: F811
) -> None:
    """GitHub takes the dispatch and never answers it (`unanswered`), and its list of runs
    is not answered either until the agent lets go (where both answered at 0.8 s, 0.3 s
    past the timeout): each look times out. It was dispatched again after one look."""
    github = integrated.github
    unanswered(github, "/dispatches")
    github.fail("unanswered", match=lambda r: r.method == "GET" and "/runs" in r.path)
    rollback = (
        "{target: github, github: {workflow: rollback.yml, ref: main},"
        " timeout: 500ms, backoff: 50ms}"
    )
    final = await _rolled_back(integrated, rollback, within=40)
    sent = [r for r in github.seen("/dispatches") if r.method == "POST"]
    assert len(sent) == 1, sent  # counted as it arrived, before its delay
    await eventually(lambda: github.in_flight == 0)
    looks = github.seen("/runs")
    assert looks and github.let_go == sent + looks  # the premise: none got an answer
    assert len(github.dispatches) == 1, github.dispatches
    assert final["rollback"]["state"] == "failed", final
    said = final["rollback"]["last_error"]
    assert "GitHub could not say whether it took the dispatch" in said, said
    assert "/actions/workflows/rollback.yml" in said, said


@pytest.mark.timeout(60)
async def test_a_rollback_whose_looks_cannot_tell_is_not_held_once_the_fix_registers(
    integrated: Integrated,  # noqa: F811
) -> None:
    """The rollback unanswered (`unanswered`), every look answers 503; the fix registers
    after the first look: the rollback ends within seconds, failed, Vercel asked at most
    once more and sent nothing more, where its looks went on over their waits (2+4+8+16 s
    with a 2 s backoff), each a wait stored under its lease, which another replica's sweep
    takes over to give it up, then a third from that one, as long as Vercel could not
    tell."""
    vercel = integrated.vercel
    unanswered(vercel, SEND)
    vercel.fail("503", match=lambda r: r.method == "GET" and LOOK in r.path)
    rollback = f"{{target: vercel, secret: {SECRET}, timeout: 1s, backoff: 2s}}"
    agent = await integrated.start(integrated.environments(rollback=rollback))
    deploy_id = await rolled_back_by_hand(agent)
    await eventually(lambda: vercel.seen(LOOK), within=20)
    fix = await agent.register("production", "v3")  # the fix

    final = await agent.wait_until(deploy_id, _settled, within=5)
    assert final["rollback"]["state"] == "failed", final
    assert len(vercel.seen(LOOK)) <= 2, vercel.seen(LOOK)
    assert len(vercel.seen(SEND)) == 1, vercel.seen(SEND)
    # given up for the fix, named in its words (`replaced_words`), as its alert and page
    # say: "check by hand" named none, and its alert said ROLLBACK FAILED
    said = final["rollback"]["last_error"]
    assert said.startswith(f"v3 ({fix['id']}) was deployed to production at "), said
    assert "Vercel could not say whether it took the rollback (asked" in said, said
    async with agent.http.get(f"{agent.url}/deploys/{deploy_id}", headers=agent.headers) as r:
        page = html.unescape(await r.text())
    assert f"Rollback given up: v3 ({fix['id']}) was deployed since." in page, page
    assert ">ROLLBACK GIVEN UP, v3 deployed since: 1 attempt sent, its answer never" in page
