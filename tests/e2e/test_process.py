"""The daemon as a real process: graceful SIGTERM, and kill -9 during rollback delivery."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.crash import (
    TrialResult,
    free_port,
    request_json,
    run_trial,
    start_agent,
    write_config,
)

pytestmark = pytest.mark.e2e


def assert_rolled_back_once(result: TrialResult) -> None:
    """Contract §3's promise, counted at the receiver: one rollback acted on, every
    request with the deploy's key and one body, signed, and sent again after a 2xx only
    by an agent restarted after a kill (the gap between the receiver acting and the
    agent's record of it, which no webhook without a status query can close)."""
    assert result.final_state == "rolled_back", (result.rollback, result.attempts)
    assert result.acted_on == 1, result.attempts
    assert result.same_key_and_body
    assert all(a["signature_ok"] for a in result.attempts)
    assert result.resent_only_after_a_kill, (result.killed_at, result.attempts)
    assert result.duplicates <= result.kills


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_during_delivery_still_rolls_back_exactly_once(tmp_path: Path, seed: int) -> None:
    result = run_trial(tmp_path, random.Random(seed))
    assert result.kills >= 1, "the trial never killed the agent mid-delivery"
    assert_rolled_back_once(result)


@pytest.mark.timeout(120)
def test_kill_9_after_the_receiver_accepted_sends_it_again_once_with_the_same_key(
    tmp_path: Path,
) -> None:
    """The receiver kills the agent the instant it accepts the rollback (before its 2xx
    goes out, so the agent cannot have recorded it): the restarted agent sends the same
    request again, once, and a receiver that honours Idempotency-Key acts on it once."""
    result = run_trial(tmp_path, random.Random(4), max_kills=0, kill_on_accept=True)
    assert result.kills == 1
    assert_rolled_back_once(result)
    assert (result.accepted, result.duplicates) == (2, 1), result.attempts


@pytest.mark.timeout(60)
def test_sigterm_stops_within_ten_seconds_and_keeps_the_window(tmp_path: Path) -> None:
    port = free_port()
    # a receiver URL nobody answers: the window is long and stays watching
    config = write_config(tmp_path, port, f"http://127.0.0.1:{free_port()}/rollback")
    text = config.read_text().replace("max: 0.05", "max: 1.0").replace("min: ", "min: ")
    config.write_text(text)  # an error rate can never exceed 1.0: this window keeps watching
    log = tmp_path / "agent.log"
    agent = start_agent(config, port, log)
    try:
        deploy = request_json(
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": "v-term"},
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
    # --log-format json: one JSON object a line, carrying the deploy id and environment
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    about = [r for r in records if r.get("deploy_id") == deploy["id"]]
    assert about and all(r["environment"] == "production" for r in about)
    agent = start_agent(config, port, log)
    try:
        seen = request_json("GET", f"http://127.0.0.1:{port}/v1/deploys/{deploy['id']}")
        assert seen["state"] == "watching"
        before = seen["rounds"]
        for _ in range(100):
            seen = request_json("GET", f"http://127.0.0.1:{port}/v1/deploys/{deploy['id']}")
            if seen["rounds"] > before:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert seen["rounds"] > before, "the restarted agent did not resume the window"
        # the daemon tuned its collector once up: that full collection's pause is counted
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        full = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("postflight_gc_full_pause_seconds_count ")
        ]
        assert full and full[0] >= 1
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [3])
def test_kill_9_during_a_vercel_rollback_still_rolls_back_exactly_once(
    tmp_path: Path, seed: int
) -> None:
    from tests.e2e.crash_vercel import OLD, run_vercel_trial

    result = run_vercel_trial(tmp_path, random.Random(seed))
    assert result.kills >= 1, "the trial never killed the agent mid-delivery"
    assert result.final_state == "rolled_back"
    assert [a["deployment"] for a in result.accepted] == [OLD]  # counted at the fake


@pytest.mark.timeout(120)
def test_a_gate_pending_at_kill_9_is_answered_once_after_restart(tmp_path: Path) -> None:
    from tests.e2e.crash_gate import run_gate_trial

    trial = run_gate_trial(tmp_path)
    assert trial.answers_before_restart == []  # killed while staging still ran
    assert trial.staging_state == "passed"
    assert [(a["run"], a["state"]) for a in trial.answers] == [("77", "approved")]
    assert trial.answers[0]["environment_name"] == "Production"


@pytest.mark.timeout(150)
def test_a_restart_answers_the_gate_its_killed_process_was_answering_before_its_claim_lapses(
    tmp_path: Path,
) -> None:
    """GitHub held the protection rule's answer unanswered when the agent was killed; the
    gate's claim (`GATE_CLAIM_S`, 300 s) runs past the trial's 30 s wait: the restart,
    holding the store its killed process held, takes the claim at once and answers once."""
    from tests.e2e.crash_gate import run_gate_trial

    trial = run_gate_trial(tmp_path, mid_answer=True, wait_s=30.0)
    assert trial.answers_before_restart == []  # held by the fake, never taken
    assert trial.staging_state == "passed"
    assert [(a["run"], a["state"]) for a in trial.answers] == [("77", "approved")]


@pytest.mark.timeout(90)
def test_an_alert_held_at_kill_9_is_sent_once_after_restart(tmp_path: Path) -> None:
    """Contract §4 across a crash: the channel had not taken the window's last alert
    when the agent died; the restarted agent sends it, once (it lost it for good)."""
    from tests.e2e.crash_alert import run_alert_trial

    trial = run_alert_trial(tmp_path, "never")
    assert trial.held_arrivals == 1
    assert 1 <= trial.breaches <= 2


@pytest.mark.timeout(90)
def test_a_restart_sends_the_alert_its_killed_process_held_before_its_lease_lapses(
    tmp_path: Path,
) -> None:
    """The claim's lease is long (a 60 s channel timeout: over two minutes), past the
    trial's 30 s wait after the restart: the restarted agent holds the store its killed
    process held (SQLite: the file's lock, one agent at a time), which proves that process
    gone, so it takes the claim over at once, not as a live replica's, and sends it once."""
    from tests.e2e.crash_alert import run_alert_trial

    trial = run_alert_trial(tmp_path, "never", channel_timeout="60s")
    assert trial.held_arrivals == 1
    assert 1 <= trial.breaches <= 2


@pytest.mark.timeout(120)
def test_a_restart_sends_the_status_its_killed_process_held_before_its_lease_lapses(
    tmp_path: Path,
) -> None:
    """GitHub held the `in_progress` status unanswered when the agent was killed; its
    claim's lease (a 60 s GitHub timeout: over five minutes) is past the trial's 30 s
    wait: the restart holds the store (SQLite: the file's lock), which proves its killed
    process gone, so it takes the claim at once and posts the status once more, once."""
    from tests.e2e.crash_status import run_status_trial

    trial = run_status_trial(tmp_path)
    assert len(trial.before_kill) == 1  # the held one, never answered
    assert [p["body"]["state"] for p in trial.posted] == ["in_progress", "in_progress"]


@pytest.mark.timeout(150)
def test_a_restart_keeps_the_wait_github_asked_for_when_killed_inside_it(
    tmp_path: Path,
) -> None:
    """GitHub answered the `in_progress` status with a secondary rate limit (`Retry-After`
    10 s, one call's wait) and the agent was killed while it waited: the restart takes the
    claim over (its killed process's) but sends no earlier than GitHub asked, counted by
    when the fake received each. It sent at once, inside the wait: the wait was kept
    only in the killed process's memory."""
    from tests.e2e.crash_status import run_asked_wait_trial

    trial = run_asked_wait_trial(tmp_path)
    first, *again = trial.posted
    # each status by its state and when it came after the first (a window that ended
    # meanwhile posts its verdict's at once: another status, not the one waited on)
    seen = [(p["body"]["state"], round(p["at"] - first["at"], 2)) for p in trial.posted]
    assert [state for state, _ in seen] == ["in_progress", "in_progress"], seen
    # the fake's Retry-After is whole seconds from its own clock (the agent's may be
    # a few ms behind in reading it)
    assert again[0]["at"] >= first["at"] + trial.asked_s - 0.5, seen


@pytest.mark.timeout(150)
def test_a_restart_sends_the_approval_its_killed_process_held_before_its_lease_lapses(
    tmp_path: Path,
) -> None:
    """Vercel held the passing canary's Rolling Release approval unanswered when the agent
    was killed; its claim's lease (a 60 s Vercel timeout: over ten minutes) is past the
    trial's 30 s wait: the restart takes the claim at once, reads the release (still at
    its stage) and approves it once more, once: the release moves on one stage."""
    from tests.e2e.crash_approval import run_approval_trial

    trial = run_approval_trial(tmp_path)
    assert len(trial.before_kill) == 1  # the held one, never answered
    assert len(trial.approvals) == 2, trial.approvals
    assert trial.release["activeStage"]["index"] == 1, trial.release


@pytest.mark.timeout(150)
def test_a_restart_sends_the_follow_up_its_killed_process_held_before_its_lease_lapses(
    tmp_path: Path,
) -> None:
    """The receiver held the `rollback.then` follow-up unanswered when the agent was
    killed; its claim's lease (a 60 s timeout, 50 attempts) is past the trial's 30 s wait:
    the restart, holding the store its killed process held, takes the claim at once and
    the receiver takes the follow-up once."""
    from tests.e2e.crash_follow_up import run_follow_up_trial

    trial = run_follow_up_trial(tmp_path)
    assert trial.claimed_at_kill == [("claimed",)]
    assert len(trial.accepted) == 1, trial.accepted


@pytest.mark.timeout(150)
def test_a_follow_ups_attempts_made_before_a_kill_count_against_its_budget(
    tmp_path: Path,
) -> None:
    """The receiver refuses every attempt of the `rollback.then` follow-up; the agent is
    killed after two of its `max_attempts: 3`: the restart makes the one left, where the
    count lived only in the killed process (handed back by a stop alone) and the restart
    made three more, five in all."""
    from tests.e2e.crash_follow_up import run_follow_up_budget_trial

    trial = run_follow_up_budget_trial(tmp_path, max_attempts=3)
    assert trial.at_kill == 2, trial.sent
    assert len(trial.sent) == 3, [a["at"] for a in trial.sent]


@pytest.mark.timeout(90)
def test_an_alert_taken_just_before_kill_9_is_sent_again_at_most_once(tmp_path: Path) -> None:
    """The one duplicate left: the channel took the alert and the agent died before it
    heard so; the restarted agent cannot know, and sends it once more, not again."""
    from tests.e2e.crash_alert import run_alert_trial

    trial = run_alert_trial(tmp_path, "before_kill")
    assert trial.held_arrivals == 2
    assert 1 <= trial.breaches <= 2
