"""Under `threshold`, a rule fails after `failure_limit` consecutive rounds past its bound:
an environment whose window holds fewer rounds fails no window, however bad the release;
under `sequential`, so does a bare value whose bound has no sequential test (a `min`, a
relative decrease, a `max` of 0 or below), judged by that streak. The configuration says
so (a warning at `analysis.failure_limit`, exit 0), through the CLI's validate-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge
from tests.cli_process import validated_here
from tests.config.test_validate_config import MINIMAL

AT = "warning: environments.production.analysis.failure_limit (line "


def validate(tmp_path: Path, analysis: str, window: str = "2m", rules: str = "") -> str:
    """validate-config's stderr of MINIMAL with 30s rounds in `window`, `analysis` and
    `rules` after its own; it must exit 0. The CLI's `main` in this process, where each
    was a process of its own (ten Python starts in the module: 29 s on -n 2 at load 15)."""
    text = MINIMAL.replace("    window: 10m\n", f"    window: {window}\n    analysis: {analysis}\n")
    text = text.replace("        max: 0.05\n", "        max: 0.05\n" + rules)
    path = tmp_path / "postflight.yaml"
    path.write_text(text)
    proc = validated_here("validate-config", str(path), env={})
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def warned(tmp_path: Path, analysis: str, rules: str = "") -> str:
    """validate()'s one warning at the failure limit, in a window of 4 rounds."""
    said = validate(tmp_path, analysis, rules=rules)
    (line,) = [line.strip() for line in said.splitlines() if AT in line]
    return line


def test_a_failure_limit_above_the_windows_rounds_is_warned(tmp_path: Path) -> None:
    """2m of 30s rounds: 4. A limit of 5 never fails a window; 4 can."""
    line = warned(tmp_path, "{policy: threshold, failure_limit: 5}")
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
    # sequential judges a rate's bound by its own test, not the streak
    assert AT not in validate(tmp_path, "{policy: sequential, failure_limit: 5}")


@pytest.mark.parametrize("rounds", [4, 5])
def test_what_it_says_is_what_the_judge_does(rounds: int) -> None:
    """Every round at 50% errors against max 0.05: 4 rounds end inconclusive under a limit
    of 5 ("too few to fail"), 5 fail."""
    rule = Rule("probe-errors", "checks", "error_rate", max=0.05)
    bad = [{rule.name: Observation(0.5, count=10, total=20)}] * rounds
    verdict = judge([rule], {}, bad, Policy("threshold", failure_limit=5), final=True)
    assert verdict.decision == ("fail" if rounds == 5 else "inconclusive"), verdict.reason


THROUGHPUT_MIN = "      - {name: traffic, source: checks, metric: throughput, min: 10}\n"


def test_a_sequential_rule_judged_by_the_streak_is_warned(tmp_path: Path) -> None:
    """A checks throughput with a `min` under sequential: 4 rounds never fail it at a limit
    of 5 (`test_the_sequential_judge_fails_such_a_rule_by_the_streak`)."""
    line = warned(tmp_path, "{policy: sequential, failure_limit: 5}", rules=THROUGHPUT_MIN)
    assert line.endswith(
        "failure_limit 5 is more than the 4 rounds of the environment's window (2m of 30s"
        " rounds), and analysis.policy sequential judges rule 'traffic' as threshold does (a"
        " bare value's min, relative decrease or max of 0 or below has no sequential test),"
        " failing one after 5 consecutive rounds past its bound, so it never fails a window:"
        " lower failure_limit to at most 4, or lengthen window to 2m30s"
    ), line
    both = THROUGHPUT_MIN + (
        "      - {name: traffic-drop, source: checks, metric: throughput, max_increase: 0.5}\n"
    )
    said = validate(tmp_path, "{policy: sequential, failure_limit: 5}", rules=both)
    assert "judges rules 'traffic', 'traffic-drop' as threshold does" in said, said
    assert "so none of them ever fails a window" in said, said
    assert AT not in validate(
        tmp_path, "{policy: sequential, failure_limit: 4}", rules=THROUGHPUT_MIN
    )
    # a throughput's max has a test of its own (the value test), as a rate's min does
    tested = (
        "      - {name: traffic, source: checks, metric: throughput, max: 100}\n"
        "      - {name: ok, source: checks, metric: error_rate, min: 0.5}\n"
    )
    assert AT not in validate(tmp_path, "{policy: sequential, failure_limit: 5}", rules=tested)
    # fixed counts no streak
    assert AT not in validate(tmp_path, "{policy: fixed, failure_limit: 5}", rules=THROUGHPUT_MIN)


@pytest.mark.parametrize("rounds", [4, 5])
@pytest.mark.parametrize(
    ("rule", "value", "baseline"),
    [
        (Rule("traffic", "checks", "throughput", min=10.0), 0.0, None),
        (Rule("drop", "checks", "throughput", max_increase=0.5, direction="decrease"), 1.0, 100.0),
        (Rule("delta", "prometheus", "query", max=0.0), 5.0, None),
        (Rule("delta", "prometheus", "query", max=-1.0), 5.0, None),
    ],
    ids=["min", "relative-decrease", "max-0", "max-below-0"],
)
def test_the_sequential_judge_fails_such_a_rule_by_the_streak(
    rule: Rule, value: float, baseline: float | None, rounds: int
) -> None:
    """Every round far past the bound under sequential with a limit of 5: 4 rounds end
    inconclusive ("short of the evidence to fail (4 of 5 rounds needed)"), 5 fail, as the
    threshold streak does."""
    base = {rule.name: Observation(baseline)} if baseline is not None else {}
    bad = [{rule.name: Observation(value)}] * rounds
    policy = Policy("sequential", failure_limit=5)
    verdict = judge([rule], base, bad, policy, final=True, horizon=rounds)
    assert verdict.decision == ("fail" if rounds == 5 else "inconclusive"), verdict.reason
    if rounds == 4:
        assert verdict.reason.endswith("short of the evidence to fail (4 of 5 rounds needed)"), (
            verdict.reason
        )
