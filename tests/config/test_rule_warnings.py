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
