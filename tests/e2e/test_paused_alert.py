"""Contract §4 under a pause: a real daemon stopped (SIGSTOP) past its alert's lease
while a slow `json://` channel has the alert, and answered 200 meanwhile, sends each
alert once (tests/e2e/pause_alert.py). Counted at the sink, repeats included."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.timeout(90)
def test_an_alert_answered_while_the_agent_was_stopped_past_its_lease_is_sent_once(
    tmp_path: Path,
) -> None:
    """It went out twice: apprise's deadline fired on waking and the alert was retried,
    and the agent's own scan took the other in-flight alert for a dead sender's."""
    from tests.e2e.pause_alert import run_paused_alert_trial

    trial = run_paused_alert_trial(tmp_path, answer_s=1.5, pause_s=6.0)
    assert (trial.held, trial.breaches) == (1, 1)
