"""What a window ended as a bug says (`agent.windows.broken`): which part raised, from
where its code is, and the exception with the configuration's secrets hidden."""

from __future__ import annotations

import pytest

from agent.analysis.judge import Judge
from agent.analysis.types import Observation, Policy, Rule
from agent.windows.broken import MESSAGE_LIMIT, bug_reason, part_of
from common.redaction import Redactor


def judged_on_garbage() -> TypeError:
    rule = Rule(name="q", source="checks", metric="error_rate", max=0.5)
    judge = Judge([rule], {"q": Observation(value=0.01)}, Policy(name="threshold"), horizon=3)
    with pytest.raises(TypeError) as raised:
        judge.advance(judge.start(), {"q": Observation(value="n/a")})  # type: ignore[arg-type]
    return raised.value


def test_the_part_is_named_by_where_its_code_raised() -> None:
    assert part_of(judged_on_garbage()) == "the judge"
    assert part_of(ValueError("never raised: no traceback")) == "the window's watch"


def test_the_reason_names_the_exception_with_secrets_hidden_and_its_message_bounded() -> None:
    redact = Redactor(["hunter2-secret-value"])
    exc = RuntimeError("login as admin:hunter2-secret-value failed " + "x" * 1000)
    reason = bug_reason("the store", exc, redact, "at round 4")
    assert reason.startswith("the store raised RuntimeError: login as admin:*** failed xxx")
    assert "hunter2" not in reason
    assert "… at round 4: a bug in the agent (or a plugin), not evidence" in reason
    assert len(reason) < MESSAGE_LIMIT + 200
    assert bug_reason("the judge", KeyError(), redact).startswith(
        "the judge raised KeyError: a bug"
    )
