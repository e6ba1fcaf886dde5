"""A GitHub status, or a Vercel Rolling Release approval, that gives up on a long rate
limit (a reset past the call's retries) is tried again no earlier than the provider asked:
by this process, by its restart, or by another replica taking its claim over. It was tried
again after `STATUS_RETRY_S` (60 s) whatever was asked, and a restart or a replica took
the claim over once its lease lapsed from the claim's time (`_status_lease`,
`_approval_lease`), inside the asked wait too: GitHub may ban an integration that goes on
calling while limited. Counted at the fakes, with `STATUS_RETRY_S` and the lease made
short so that their retry would come within the test: not a wait "long enough" but the
integrations' scan that would have tried it, seen to end with nothing of it in hand."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.api.hooks import INTEGRATIONS
from agent.store.base import StoreUnreachable
from agent.store.sql import SqlStore
from agent.windows import integrations as module
from common.durations import parse_duration
from tests.e2e.conftest import AgentFactory, FlipTarget, RunningAgent
from tests.e2e.integrations_support import GATE_PATH, scanned
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
    vercel_hook,
)
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

pytestmark = pytest.mark.e2e

ASKED_S = 100.0
"""GitHub's reset: past the call's retries (`call` gives up at once, not waiting it)."""
RETRY_S = 0.2
"""`STATUS_RETRY_S` here: the retry it made inside the asked wait."""
LEASE_S = 0.3
"""`_status_lease` and `_approval_lease` here: a take-over once the claim's stamp is older."""


@pytest.fixture(params=["sqlite", "postgres"])
def store_yaml(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        return f"url: {request.getfixturevalue('pg_url')}"
    return f"url: sqlite:///{request.getfixturevalue('tmp_path') / 'asked.db'}"


async def _given_up(agent: RunningAgent, caplog: pytest.LogCaptureFixture, words: str) -> float:
    """When `agent` gave the call up: its integrations' clock once a warning with `words`
    is logged."""
    await eventually(lambda: any(words in r.getMessage() for r in caplog.records))
    return float(agent.app[INTEGRATIONS].clock())


def _waits_the_asked(caplog: pytest.LogCaptureFixture, words: str) -> None:
    """The first warning with `words` names a wait of the asked reset (`ASKED_S`)."""
    said = [r.getMessage() for r in caplog.records if words in r.getMessage()]
    wait = parse_duration(said[0].rsplit("tried again in ", 1)[1].split(")")[0])
    assert wait >= ASKED_S - 2, said


async def _gate_asked(agent: RunningAgent, fake_github: FakeGitHub) -> None:  # noqa: F811
    """GitHub asks `agent` to answer a protection rule (run 41) for a staging deploy that
    passed: its answer is then due."""
    good = "b" * 40
    staging = await agent.register("staging", good)
    rule = fake_github.ask_gate(sha=good, run_id=41)
    assert (await github_hook(agent, "deployment_protection_rule", rule, "gate-41"))[0] == 202
    assert (await agent.settled(staging["id"]))["state"] == "passed"


def _statuses_posted(fake_github: FakeGitHub) -> Any:  # noqa: F811
    """What the fake GitHub was asked to post as commit or deployment statuses, as asked."""
    return lambda: [r for r in fake_github.seen("/statuses") if r.method == "POST"]


async def _status_rate_limited(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    fake_vercel: FakeVercel,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    store_yaml: str,
) -> tuple[RunningAgent, str, str]:
    """replica-a started on `store_yaml` and a deployment's status event opening its window,
    GitHub answering the status's first post with a rate limit whose reset is `ASKED_S`
    away: the agent, its environments and its integrations, to start it again with."""
    fake_github.fail(
        "rate_limit",
        times=1,
        reset_in=ASKED_S,
        match=lambda r: r.method == "POST" and "/statuses" in r.path,
    )
    env = environments(flip_target, window="60s")
    extra = integrations(fake_github, fake_vercel)
    caplog.set_level(logging.WARNING, logger="postflight.integrations")
    first = await start_agent(env, extra=extra, store=store_yaml, owner="replica-a")
    status, opened = await github_hook(first, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    return first, env, extra


async def _taken_over(
    first: RunningAgent,
    start_agent: AgentFactory,  # noqa: F811
    env: str,
    extra: str,
    store_yaml: str,
    *,
    at: float,
) -> None:
    """`first` stopped and replica-b started on the same store: one scan of it at `at` or
    later on its integrations' clock has ended."""
    await first.stop()
    second = await start_agent(env, extra=extra, store=store_yaml, owner="replica-b")
    await scanned(second, 1, at=at)


@pytest.mark.timeout(90)
async def test_a_status_given_up_on_a_long_rate_limit_is_not_tried_before_the_asked_wait(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    store_yaml: str,
) -> None:
    monkeypatch.setattr(module, "STATUS_RETRY_S", RETRY_S)
    monkeypatch.setattr(module.Integrations, "_status_lease", lambda self: LEASE_S)
    posted = _statuses_posted(fake_github)
    first, env, extra = await _status_rate_limited(
        start_agent, flip_target, fake_github, fake_vercel, caplog, store_yaml
    )
    given_up = await _given_up(first, caplog, "tried again in")
    _waits_the_asked(caplog, "tried again in")  # the reset GitHub named, not STATUS_RETRY_S
    await scanned(first, 1, at=given_up + RETRY_S)  # its own retry: in that scan
    assert len(posted()) == 1, posted()

    # a restart (SQLite), or the other replica (PostgreSQL) taking over once it lapsed
    await _taken_over(first, start_agent, env, extra, store_yaml, at=given_up + LEASE_S)
    assert len(posted()) == 1, posted()
    assert fake_github.statuses == []


@pytest.mark.timeout(90)
async def test_a_rate_limits_wait_is_kept_by_the_restart_of_a_killed_process(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    store_yaml: str,
) -> None:
    """A restart under the same replica id takes a killed process's status claim at once
    (`orphaned`), but not one that waits a rate limit's reset: its wait is kept. The kill
    is what it leaves in the store, its claims' run still said (the stop's
    `_let_claims_lapse` skipped), with the lease long, so only the kept wait holds it."""
    monkeypatch.setattr(module, "STATUS_RETRY_S", RETRY_S)
    posted = _statuses_posted(fake_github)
    first, env, extra = await _status_rate_limited(
        start_agent, flip_target, fake_github, fake_vercel, caplog, store_yaml
    )
    given_up = await _given_up(first, caplog, "tried again in")
    assert len(posted()) == 1, posted()

    async def killed(self: SqlStore) -> None:  # kill -9: nothing said at the end
        return None

    monkeypatch.setattr(SqlStore, "_let_claims_lapse", killed)
    await first.stop()
    restart = await start_agent(env, extra=extra, store=store_yaml, owner="replica-a")
    await scanned(restart, 2, at=given_up + RETRY_S)
    assert len(posted()) == 1, posted()
    assert fake_github.statuses == []


@pytest.mark.timeout(90)
async def test_an_approval_given_up_on_a_long_rate_limit_is_not_tried_before_the_asked_wait(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    store_yaml: str,
) -> None:
    """Vercel's 429 on a Rolling Release approval, its `X-RateLimit-Reset` 100 s away."""
    monkeypatch.setattr(module, "STATUS_RETRY_S", RETRY_S)
    monkeypatch.setattr(module.Integrations, "_approval_lease", lambda self: LEASE_S)
    fake_vercel.fail("rate_limit", times=1, reset_in=ASKED_S, match="approve-stage")
    env = environments(flip_target, window="1500ms", rolling_release=True)
    extra = integrations(fake_github, fake_vercel)
    caplog.set_level(logging.WARNING, logger="postflight.integrations")
    first = await start_agent(env, extra=extra, store=store_yaml, owner="replica-a")
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    status, opened = await vercel_hook(first, vc.event(event_id="rr-wait", deployment=vc.NEW))
    assert status == 202
    assert (await first.settled(opened["deploy"]["id"]))["state"] == "passed"
    given_up = await _given_up(first, caplog, "tried again in")
    await scanned(first, 1, at=given_up + RETRY_S)  # its own retry: in that scan
    assert len(fake_vercel.seen("/approve-stage")) == 1

    await _taken_over(first, start_agent, env, extra, store_yaml, at=given_up + LEASE_S)
    assert len(fake_vercel.seen("/approve-stage")) == 1
    assert fake_vercel.approvals == []


@pytest.mark.timeout(90)
async def test_a_gate_answer_given_up_on_a_rate_limit_past_its_claim_waits_the_asked_wait(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    store_yaml: str,
) -> None:
    """A protection rule's answer met GitHub's rate limit, its reset past the gate's claim
    (`GATE_CLAIM_S`, 300 s; 0.3 s here): every claimer, the same process included, answered
    it again once the claim lapsed, inside the asked wait. The claim is moved on to it."""
    monkeypatch.setattr(module, "GATE_CLAIM_S", LEASE_S)
    fake_github.fail("rate_limit", times=1, reset_in=ASKED_S, match="deployment_protection_rule")
    env = environments(flip_target, staging_window="1500ms")
    extra = integrations(fake_github, fake_vercel)
    caplog.set_level(logging.WARNING, logger="postflight.integrations")
    first = await start_agent(env, extra=extra, store=store_yaml, owner="replica-a")
    await _gate_asked(first, fake_github)
    given_up = await _given_up(first, caplog, "not answered yet")
    _waits_the_asked(caplog, "not answered yet")  # the reset GitHub named, not the claim's end
    await scanned(first, 1, at=given_up + LEASE_S)  # its claim's end
    assert len(fake_github.seen(GATE_PATH)) == 1

    await _taken_over(first, start_agent, env, extra, store_yaml, at=given_up + LEASE_S)
    assert len(fake_github.seen(GATE_PATH)) == 1
    assert fake_github.gate_answers == []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("claim", ["shorter", "longer"], ids=lambda c: f"claim-{c}")
async def test_a_gates_rate_limit_wait_is_kept_by_the_restart_of_a_killed_process(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    store_yaml: str,
    claim: str,
) -> None:
    """As a status's: the gate's claim moved on to the asked wait (`extend_gate`) is not
    taken at once by the restart under the same replica id, though its claimer was
    killed (its claims' run still said: the stop's `_let_claims_lapse` skipped). Nor is
    one whose end (`GATE_CLAIM_S`, 300 s) is past the asked wait already: its run said,
    the restart took it at once, inside the wait."""
    if claim == "shorter":
        monkeypatch.setattr(module, "GATE_CLAIM_S", LEASE_S)
    fake_github.fail("rate_limit", times=1, reset_in=ASKED_S, match="deployment_protection_rule")
    env = environments(flip_target, staging_window="1500ms")
    extra = integrations(fake_github, fake_vercel)
    caplog.set_level(logging.WARNING, logger="postflight.integrations")
    first = await start_agent(env, extra=extra, store=store_yaml, owner="replica-a")
    await _gate_asked(first, fake_github)
    given_up = await _given_up(first, caplog, "not answered yet")
    assert len(fake_github.seen(GATE_PATH)) == 1

    async def killed(self: SqlStore) -> None:  # kill -9: nothing said at the end
        return None

    monkeypatch.setattr(SqlStore, "_let_claims_lapse", killed)
    await first.stop()
    restart = await start_agent(env, extra=extra, store=store_yaml, owner="replica-a")
    await scanned(restart, 2, at=given_up + LEASE_S)
    assert len(fake_github.seen(GATE_PATH)) == 1
    assert fake_github.gate_answers == []


@pytest.mark.timeout(90)
async def test_a_gate_claim_the_store_failed_to_claim_back_is_not_said_taken_over(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A protection rule's answer met GitHub's secondary rate limit (1 s, waited inside
    the call, the claim moved on to its end), and the store did not answer the claim back
    after it: the log said "taken over by another claimer", though none was. It says the
    store did not answer, and the gate is answered once, by a later scan."""
    fake_github.fail("secondary_rate_limit", times=1, reset_in=1, match=GATE_PATH)
    claim_gate = SqlStore.claim_gate
    failed: list[bool] = []

    async def away_at_the_claim_back(self: SqlStore, *args: Any, **kwargs: Any) -> bool:
        if len(fake_github.seen(GATE_PATH)) == 1 and not kwargs and not failed:
            failed.append(True)  # the claim back after the wait: no `orphaned`, once
            raise StoreUnreachable("connection refused")
        return await claim_gate(self, *args, **kwargs)

    monkeypatch.setattr(SqlStore, "claim_gate", away_at_the_claim_back)
    env = environments(flip_target, staging_window="1500ms")
    extra = integrations(fake_github, fake_vercel)
    caplog.set_level(logging.INFO, logger="postflight.integrations")
    agent = await start_agent(env, extra=extra, owner="replica-a")
    await _gate_asked(agent, fake_github)
    await eventually(lambda: len(fake_github.gate_answers) >= 1, within=20)
    said = [r.getMessage() for r in caplog.records]
    assert failed, said
    assert not [m for m in said if "taken over by another claimer" in m], said
    (away,) = [m for m in said if "not claimed back after waiting" in m]
    assert "the store does not answer" in away, away
    assert len(fake_github.gate_answers) == 1
