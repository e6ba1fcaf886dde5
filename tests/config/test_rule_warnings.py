"""An environment without rules is judged by nothing: each of its windows ends
`inconclusive` and nothing is rolled back but by hand. The configuration says so (a warning,
exit 0: its checks still run), and so does the verdict, in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.analysis.judge import Judge
from agent.analysis.types import Policy
from tests.config.test_validate_config import MINIMAL, run_validate


def test_an_environment_without_rules_is_warned_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = MINIMAL.index("    rules:\n")
    end = MINIMAL.index("        max: 0.05\n") + len("        max: 0.05\n")
    bare = MINIMAL[:start] + MINIMAL[end:]
    assert "rules:" not in bare, bare
    code, out = run_validate(tmp_path, bare, capsys)
    assert code == 0, out
    assert "warning: environments.production.rules (line " in out, out
    assert "ends inconclusive whatever the release does" in out, out
    code, out = run_validate(tmp_path, MINIMAL, capsys)
    assert code == 0 and "environments.production.rules" not in out, out


def test_a_window_without_rules_ends_inconclusive_saying_why() -> None:
    judge = Judge([], {}, Policy(), horizon=3)
    state = judge.start()
    for k in range(3):
        state = judge.advance(state, {}, final=k == 2)
    assert judge.verdict(state, final=False).decision == "continue"
    verdict = judge.verdict(state, final=True)
    assert verdict.decision == judge.glance(state, final=True).decision == "inconclusive"
    assert verdict.reason == "no rules to judge: this environment has none"


@pytest.mark.parametrize(
    ("bound", "analysis", "warned"),
    [
        ("max: 0", "", "environments.production.rules[0].max"),
        ("max: 0.0", "    analysis: {policy: sequential, pass_on: evidence}\n", "rules[0].max"),
        ("max: 0", "    analysis: {pass_on: no_failure}\n", None),
        ("max: 0", "    analysis: {policy: threshold}\n", None),
        ("max: 0.001", "", None),
    ],
)
def test_a_rate_bound_that_can_only_fail_is_warned_on_evidence(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bound: str,
    analysis: str,
    warned: str | None,
) -> None:
    """`max: 0` fails at the first error and never passes on evidence: said, exit 0."""
    text = MINIMAL.replace("        max: 0.05\n", f"        {bound}\n")
    text = text.replace("    rules:\n", f"{analysis}    rules:\n")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 0, out
    if warned is None:
        assert "can only fail" not in out, out
        return
    assert f"{warned} (line " in out, out
    assert (
        "error_rate max 0 can only fail: no number of probes shows a rate of exactly 0, so with"
        " pass_on: evidence every window it does not fail ends inconclusive, however good the"
        " release; use a bound such as max 0.001, or pass_on: no_failure"
    ) in out, out
