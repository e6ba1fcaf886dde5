"""A check plugin's bug met only in a canary's baseline runs (the stable side, probed side
by side: `baseline_url`), in the real daemon: those runs are the baseline of the deploy's
relative rules, so a bug that ends them leaves the rule no baseline and the window cannot
judge it. On-call gets the check's one `check_bug` alert of the deploy, saying the runs
were the baseline's, where nothing but a log line said why the rule had no baseline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.test_check_plugin_bugs_e2e import (
    BUG_TITLE,
    PLUGIN_SECRET,
    _bug_alerts,
    ended,
    running,
    target,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.e2e


P95_RULE = "[{name: p95, source: checks, check: plug, metric: latency_p95, max_increase: 50%}]"
"""A relative rule: judged against the canary's baseline runs."""


@pytest.mark.timeout(90)
async def test_a_bug_in_a_canarys_baseline_runs_alone_is_alerted_once(
    tmp_path: Path,
    target: str,  # noqa: F811
) -> None:
    async with running(tmp_path, target, "baseline", canary=True, rules=P95_RULE) as run:
        code, said, _ = await run.registered("--wait", "--timeout", "30s")
        await ended(run.sink)
    receiver, sink = run.receiver, run.sink
    assert code == 3, said  # inconclusive: the rule had no baseline
    assert receiver.attempts == [], said
    (bug,) = _bug_alerts(sink.notifications)  # before: none, the end's "no baseline" alone
    assert bug.title == BUG_TITLE and bug.payload["type"] == "warning", bug.payload
    # all its round's baseline runs (but one its round cut short under load: a timeout)
    assert re.search(
        r"(all \d+|\d+ of \d+) of the canary's baseline runs \(baseline_url\) of round \d+"
        r" ended so, left out of the baseline",
        bug.message,
    ), bug.message
    assert "KeyError" in bug.message and "flaky_check.py:" in bug.message, bug.message
    assert "a canary's baseline runs: against a smaller baseline" in bug.message, bug.message
    assert PLUGIN_SECRET not in bug.message
    # the verdict register --wait shows names the bug too, not "no baseline" alone
    # (before: "no baseline to compare with (N rounds with data)")
    # (its detail cut at the table's width, and said in full below it)
    (line,) = [x for x in said.splitlines() if x.startswith("  p95: no baseline to compare")]
    assert "KeyError" in line and "flaky_check.py:" in line, said
    assert "(baseline_url) were left out, ended by the check's bug" in line, said
    assert PLUGIN_SECRET not in said, said
    # and the verdict's reason, where it had "p95: no baseline" alone
    assert "p95: no baseline (check plug's bug ended its baseline runs)" in said, said
