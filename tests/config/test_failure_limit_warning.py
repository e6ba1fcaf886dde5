"""Under `threshold`, a rule fails after `failure_limit` consecutive rounds past its bound:
an environment whose window holds fewer rounds fails no window, however bad the release.
The configuration says so (a warning at `analysis.failure_limit`, exit 0), through the
real CLI: validate-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge
from tests.cli_process import cli_env, postflight
from tests.config.test_validate_config import MINIMAL

AT = "warning: environments.production.analysis.failure_limit (line "


def validate(tmp_path: Path, analysis: str, window: str = "2m") -> str:
    """validate-config's stderr of MINIMAL with 30s rounds in `window` and `analysis`;
    it must exit 0."""
    text = MINIMAL.replace("    window: 10m\n", f"    window: {window}\n    analysis: {analysis}\n")
    path = tmp_path / "postflight.yaml"
    path.write_text(text)
    proc = postflight("validate-config", str(path), env=cli_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_a_failure_limit_above_the_windows_rounds_is_warned(tmp_path: Path) -> None:
    """2m of 30s rounds: 4. A limit of 5 never fails a window; 4 can."""
    said = validate(tmp_path, "{policy: threshold, failure_limit: 5}")
    (line,) = [line.strip() for line in said.splitlines() if AT in line]
    assert line.endswith(
        "failure_limit 5 is more than the 4 rounds of the environment's window (2m of 30s"
        " rounds), and analysis.policy threshold fails a rule after 5 consecutive rounds past"
        " its bound, so no window ever fails and nothing is rolled back: lower failure_limit"
        " to at most 4, or lengthen window to 2m30s"
    ), line
    assert AT not in validate(tmp_path, "{policy: threshold, failure_limit: 4}")
    # the default limit, 3, in a window of 2 rounds
    assert "failure_limit 3 is more than the 2 rounds" in validate(
        tmp_path, "{policy: threshold}", window="1m"
    )
    # sequential judges no streak
    assert AT not in validate(tmp_path, "{policy: sequential, failure_limit: 5}")


@pytest.mark.parametrize("rounds", [4, 5])
def test_what_it_says_is_what_the_judge_does(rounds: int) -> None:
    """Every round at 50% errors against max 0.05: 4 rounds end inconclusive under a limit
    of 5 ("too few to fail"), 5 fail."""
    rule = Rule("probe-errors", "checks", "error_rate", max=0.05)
    bad = [{rule.name: Observation(0.5, count=10, total=20)}] * rounds
    verdict = judge([rule], {}, bad, Policy("threshold", failure_limit=5), final=True)
    assert verdict.decision == ("fail" if rounds == 5 else "inconclusive"), verdict.reason
