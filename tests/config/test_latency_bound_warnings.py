"""A latency rule's `max` at or above the longest a probe waits before it is a timeout can
never fail on timeouts: a target that stops answering gives waits within it (h4's judge
reads a round mostly of such waits as no data), so only an error rule catches a dead
target. The configuration says so (a warning at the rule's `max`, exit 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.test_config_traps import start_log_warnings
from tests.config.test_validate_config import MINIMAL, run_validate

SAID = "can never fail on a target that stops answering"


def with_latency_rule(bound: str, *, interval: str = "30s", check: str = "") -> str:
    """MINIMAL (an http check on its default 5s timeout, 30s rounds) with a second rule,
    `latency_p95` bounded by `max: {bound}`, and `check` (a YAML list item) as well."""
    rule = f"      - {{name: p95, source: checks, metric: latency_p95, max: {bound}}}\n"
    text = MINIMAL.replace("        max: 0.05\n", "        max: 0.05\n" + rule)
    text = text.replace("    interval: 30s\n", f"    interval: {interval}\n")
    return text.replace("        path: /health\n", "        path: /health\n" + check)


SMOKE = (
    "      - {name: journey, type: smoke, timeout: 2s, steps: [{name: a, path: /, timeout: 8s}]}\n"
)
LOAD = "      - {name: feed, type: load, path: /, rate: 5/s, duration: 500ms, timeout: 3s}\n"


@pytest.mark.parametrize(
    ("bound", "interval", "check", "wait"),
    [
        # the check's timeout is the shorter: 5s of a 30s round
        ("5s", "30s", "", "5s: its timeout"),
        ("6s", "30s", "", "5s: its timeout"),
        ("4990ms", "30s", "", None),
        # however short the round: a window's probe waits its own timeout, carried past its
        # round's end (`agent.windows.carried`); before, a 1s round left it 900ms, warned
        ("5s", "1s", "", "5s: its timeout"),
        ("900ms", "1s", "", None),
        # a smoke step's own timeout, longer than the check's
        ("7s", "30s", SMOKE, None),
        # a load check's requests wait their timeout whatever the round
        ("2s", "1s", LOAD, None),
    ],
    ids=[
        "timeout",
        "past-timeout",
        "below-timeout",
        "short-round",
        "below-short-round",
        "smoke",
        "load",
    ],
)
def test_a_latency_max_no_timeout_can_pass_is_warned_at_its_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bound: str,
    interval: str,
    check: str,
    wait: str | None,
) -> None:
    text = with_latency_rule(bound, interval=interval, check=check)
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 0, out
    if wait is None:
        assert SAID not in out, out
        return
    assert "warning: environments.production.rules[1].max (line " in out, out
    assert f"the longest a probe of api-health waits before it is a timeout ({wait})" in out, out
    assert f"rule 'p95': latency_p95 max {bound}" in out, out
    assert SAID in out and "only an error_rate rule catches it" in out, out


def test_a_rule_of_one_check_reads_that_checks_wait(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule naming its check is judged on that check's waits alone: the load check's 3s
    timeout, not the http check's 5s (a rule over both is not warned at 3s)."""
    text = with_latency_rule("3s", interval="1s", check=LOAD)
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 0 and SAID not in out, out
    text = text.replace("metric: latency_p95, max", "check: feed, metric: latency_p95, max")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 0, out
    assert "rules[1].max (line " in out and "a probe of feed waits" in out, out
    assert "(3s: its timeout)" in out, out


def test_run_logs_it_once_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    logged = start_log_warnings(tmp_path, monkeypatch, caplog, with_latency_rule("5s"))
    said = [message for message in logged if SAID in message]
    assert len(said) == 1, logged
    assert said[0].startswith("configuration: environments.production.rules[1].max (line "), said
