"""kill -9 the instant a window's end is stored, then restart: every effect the end
calls for reaches its receiver, once (at most the documented duplicate). The trial:
`tests/e2e/crash_end.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.crash_end import run_end_trial, run_resolve_trial

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_a_kill_at_a_failed_windows_end_loses_nothing_it_called_for(tmp_path: Path) -> None:
    trial = run_end_trial(tmp_path)
    assert trial.killed, "the agent was not killed at the window's end"
    assert trial.state == "rolled_back", trial
    assert trial.rollbacks_acted_on == 1, trial
    # the end alert: claimed with the end (contract §4: at most once more after a kill)
    assert 1 <= trial.count("rollback requested") <= 2, trial.alerts
    # the final round's breach; Sentry's outage (its reads fail from the start)
    assert 1 <= trial.count("breached") <= 2, trial.alerts
    assert 1 <= trial.count("unreachable") <= 2, trial.alerts
    # Sentry's marker of the rollback (README: "and, if it happens, the rollback")
    assert 1 <= trial.rollback_markers <= 2, trial
    assert trial.deployment_statuses.count("failure") == 1, trial
    assert trial.commit_statuses.count("failure") == 1, trial


def test_a_kill_at_the_end_of_a_window_whose_last_round_cleared_a_breach(tmp_path: Path) -> None:
    """The last round's resolve (its breach told a round before) is claimed before the
    end is stored: a kill then lost it, 3 trials in 3, where one not killed sends it."""
    trial = run_resolve_trial(tmp_path)
    assert trial.killed, "the agent was not killed at the window's end"
    assert trial.state == "passed", trial
    assert 1 <= trial.count("breached") <= 2, trial.alerts
    assert 1 <= trial.count("resolved") <= 2, trial.alerts
    assert 1 <= trial.count("deploy passed") <= 2, trial.alerts


def test_a_kill_at_the_end_a_rollback_asked_by_hand_made_loses_nothing(tmp_path: Path) -> None:
    """A rollback asked through the API ends the watching window as a failed verdict
    does, and is marked at the providers as one (README: markers record "the rollback"),
    where it was never marked."""
    trial = run_end_trial(tmp_path, manual=True)
    assert trial.killed, "the agent was not killed at the window's end"
    assert trial.state == "rolled_back", trial
    assert trial.rollbacks_acted_on == 1, trial
    assert 1 <= trial.count("rollback requested") <= 2, trial.alerts
    assert 1 <= trial.rollback_markers <= 2, trial
    assert trial.deployment_statuses.count("failure") == 1, trial
    assert trial.commit_statuses.count("failure") == 1, trial


def test_a_kill_at_the_end_of_a_window_whose_cleared_breach_is_still_being_sent(
    tmp_path: Path,
) -> None:
    """The breach's channel has not answered when the last round clears it (the sink holds
    it): the resolve's claim waited on that send, so the end did not wait for it, and a
    kill then lost the resolve (2 trials in 7 beside four CPU hogs, where the breach's send
    outlasted the last round). Claimed before that wait, the restart sends it after the
    breach."""
    trial = run_resolve_trial(tmp_path, breach_held=True)
    assert trial.killed, "the agent was not killed at the window's end"
    assert trial.state == "passed", trial
    assert trial.count("breached") == 1, trial.alerts  # the held send was never answered
    assert trial.count("resolved") == 1, trial.alerts
    assert 1 <= trial.count("deploy passed") <= 2, trial.alerts
    rules = [a for a in trial.alerts if "breached" in a or "resolved" in a]
    assert ["breached" in rules[0], "resolved" in rules[1]] == [True, True], trial.alerts


def test_a_kill_at_the_end_while_github_holds_the_watchs_status_loses_nothing(
    tmp_path: Path,
) -> None:
    """GitHub holds the deployment's `in_progress` unanswered when the agent is killed at
    the window's end: the restart owes the verdict's `failure`, not the watch's status
    (which would come after it), so that claim stays without an outcome; the trial waited
    on it and gave up after 60 s. GitHub sees the one `failure`, after the held status."""
    trial = run_end_trial(tmp_path, in_progress_held=True)
    assert trial.killed, "the agent was not killed at the window's end"
    assert trial.state == "rolled_back", trial
    assert trial.rollbacks_acted_on == 1, trial
    assert trial.deployment_statuses == ["in_progress", "failure"], trial
    assert trial.commit_statuses.count("failure") == 1, trial
