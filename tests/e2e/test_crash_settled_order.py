"""kill -9 the instant a rollback's outcome is stored, before its alerts go out, then
restart: the restarted agent's recovery tells the breach, the request and the outcome
once each, in that order (contract §4). The trial: `tests/e2e/crash_settled.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.crash_settled import run_settled_trial

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.mark.parametrize(
    ("answer", "state", "outcome"),
    [(400, "failed", "ROLLBACK FAILED"), (200, "rolled_back", "rollback delivered")],
    ids=["refused", "delivered"],
)
def test_a_crashs_rollback_alerts_are_told_again_in_the_order_they_happened(
    tmp_path: Path, answer: int, state: str, outcome: str
) -> None:
    """Sent side by side on restart, the outcome reached the sink before the request
    (and the request before the breach) on a channel slow on those: the newest alert said
    a rollback was under way that had failed, or done."""
    trial = run_settled_trial(tmp_path, answer)
    assert trial.killed, "the agent was not killed as the rollback's outcome was stored"
    assert trial.state == state, trial
    order = trial.order("breached", "rollback requested", outcome)
    assert order == ["breached", "rollback requested", outcome], trial.alerts
