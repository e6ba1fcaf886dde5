"""What on-call reads of a settled rollback: an HTTP status said as one."""

from __future__ import annotations

import json

from agent.records import RollbackIntent, RollbackState
from agent.windows.lifecycle import settled_alert
from alerting.templates import body
from tests.alerting.test_templates import window

BODY = json.dumps({"reason": "probe-errors: error_rate 0.475 > max 0.1", "breaches": []})


def settled(state: RollbackState, status: int) -> str:
    done = RollbackIntent(
        window_id="dep_1",
        state=state,
        body=BODY,
        requested_at=0.0,
        attempts=3 if state == "failed" else 1,
        last_status=status,
    )
    return body(settled_alert(window(), None, done, unconfigured=True))


def test_a_rollbacks_last_answer_is_said_as_an_http_status() -> None:
    """The delivered alert ended on a bare `last status 200`; a failed one without an
    error's words read `rollback NOT delivered after 3 attempts: 503`."""
    assert "The last answer was HTTP 200." in settled("delivered", 200)
    failed = settled("failed", 503)
    assert "after 3 attempts: HTTP 503." in failed, failed


def test_the_evidence_names_its_p_value() -> None:
    """`likelihood ratio 294, p 0.0068`: a bare `p` on-call has to guess at."""
    from alerting.templates import evidence_text

    text = evidence_text({"test": "t", "likelihood_ratio": 294.0, "p_value": 0.0068})
    assert text == "t, likelihood ratio 294, p-value 0.0068"
