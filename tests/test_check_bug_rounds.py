"""What a window makes of a round whose probes a check's own bug ended (`checks.bugs`: a
result with no sample, `CheckResult.bug`): neither a failure of the target nor the
agent's overload, and a rule with no other probe says the bug where it said "no
samples"."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, Literal

import aiohttp
import pytest

from agent.analysis.judge import judge
from agent.analysis.observe import observe
from agent.analysis.types import Policy, Rule, RuleOutcome, RuleVerdict, Verdict
from agent.analysis.verdicts import Glance
from agent.web.view import alert_words
from agent.windows.check_bugs import BaselineBugs, CheckBugAlerts, bug_said
from agent.windows.evidence import WhatBroke
from agent.windows.lifecycle import WindowWatch
from agent.windows.overload import DropTally
from alerting.events import check_bug_key
from checks.base import Check, CheckConfig, CheckContext, CheckResult, Sample, Target
from checks.registry import run_check


class BuggyConfig(CheckConfig):
    type: Literal["buggy"] = "buggy"


class BuggyCheck(Check):
    """Reads a field its target's answer lacks: a KeyError in every run."""

    type = "buggy"
    Config = BuggyConfig

    async def run(self, ctx: CheckContext) -> CheckResult:
        answer: dict[str, float] = {}
        return CheckResult(self.name, self.type, True, (), str(answer["latency"]))


async def _bug(name: str = "plug", target: Target = "deploy") -> CheckResult:
    async with aiohttp.ClientSession() as session:  # the check makes no request
        ctx = CheckContext(
            base_url="http://127.0.0.1:9", session=session, environment="production", target=target
        )
        return await run_check(BuggyCheck(BuggyConfig(name=name)), ctx)


def _answered(check: str) -> CheckResult:
    sample = Sample(check=check, ok=True, latency_s=0.02, status=200)
    return CheckResult(check, "http", True, (sample,), f"{check}: 200", 0.02, {})


def _rule(check: str | None) -> Rule:
    return Rule(name="probe-errors", source="checks", metric="error_rate", max=0.1, check=check)


async def test_a_bug_is_a_run_of_its_own_in_the_round_neither_failed_nor_dropped() -> None:
    """Before, the round's summary counted such a run failed (a run not `ok`), and its
    words became what broke in the deploy."""
    bugs = [await _bug(), await _bug()]
    assert all(r.bug and not r.samples and r.result == "error" for r in bugs)
    watch = SimpleNamespace(cumulative={}, new_stand_ins=[], arrived=[], overload=DropTally())
    summary: dict[str, Any] = WindowWatch._round_summary(
        watch,  # type: ignore[arg-type]
        {},
        [*bugs, _answered("plug")],
        Glance("continue", ()),
        with_state=False,
    )
    entry = summary["checks"]["plug"]
    assert (entry["runs"], entry["failed"], entry["bug"]) == (3, 0, 2), entry
    assert entry["bug_message"].startswith("check plug (buggy) has a bug: KeyError: 'latency' at ")
    broke = WhatBroke()
    broke.note(bugs)
    assert broke.failures == {}


async def test_a_bug_is_not_the_agents_overload(caplog: pytest.LogCaptureFixture) -> None:
    """No drop of the agent's, no warning of its overload, and no run of the check in the
    share of its probes the overload rule weighs (before, 3 runs: the bugs counted as
    probes measured)."""
    tally = DropTally()
    with caplog.at_level(logging.WARNING):
        tally.note(
            [await _bug(), await _bug(), _answered("plug")],
            logging.LoggerAdapter(logging.getLogger("test")),
        )
    assert (tally.samples, tally.latency, tally.runs) == (0, 0, 1)
    assert not tally.lost(_rule("plug"))
    assert "dropped" not in caplog.text


async def test_a_rule_whose_every_probe_was_a_bug_names_it() -> None:
    bugs = [await _bug(), await _bug(target="baseline"), await _bug("other")]
    samples = [s for r in bugs for s in r.samples]
    lone = observe(_rule("plug"), samples, 1.0)
    assert lone.error == "no samples"
    said = bug_said(_rule("plug"), lone, bugs)
    assert said.value is None and said.error == bugs[0].message
    assert "has a bug: KeyError: 'latency' at test_check_bug_rounds.py:" in said.error
    # the rule reads another check's probes, or has probes left: left as it is
    assert bug_said(_rule("another"), lone, bugs) is lone
    kept = observe(_rule(None), [*samples, *_answered("plug").samples], 1.0)
    assert bug_said(_rule(None), kept, bugs) is kept and kept.value == 0.0


@pytest.mark.parametrize("policy", [Policy(), Policy("threshold")], ids=["sequential", "threshold"])
async def test_a_round_with_no_run_of_the_check_leaves_the_bug_named_in_the_verdict(
    policy: Policy,
) -> None:
    """A round that ran nothing of the rule's check (the window's last, cut at its end; one a
    stalled agent ran nothing in) is no news about the bug: the verdict names it still,
    where the window's reason said "no data (no samples)" (a shared agent at load 20: 11
    rounds of the bug, then a last round with no run). Nor is a run without the bug or
    its sample (dropped as the agent's), nor another check's bug; data since the bug is."""
    rule = _rule("plug")
    first = await _bug()
    dropped = CheckResult("plug", "http", True, (), "plug: dropped", 0.02, {})

    def verdict_of(rounds: list[list[CheckResult]]) -> RuleVerdict:
        observed = [
            {rule.name: bug_said(rule, observe(rule, [s for r in rs for s in r.samples], 1.0), rs)}
            for rs in rounds
        ]
        return judge([rule], {}, observed, policy, final=True).rules[0]

    for after in ([], [await _bug("other")], [dropped], [dropped], []):
        said = verdict_of([[first], after])
        assert said.outcome == "inconclusive", said
        assert said.detail == f"no data ({first.message})", said.detail
    assert first.message not in verdict_of([[first], [_answered("plug")], []]).detail


async def test_a_rounds_bugs_are_each_checks_one_alert_naming_the_runs_it_took() -> None:
    """Each check whose bug ended runs of a round gets one `check_bug` alert from a watch
    (the store's claim keeps it to one a deploy), whose reason quotes the bug and counts
    the runs of the round it took; a check without the bug, and a later round, none."""
    round_1 = [await _bug(), _answered("plug"), await _bug(), _answered("plug"), _answered("ok")]
    alerts = CheckBugAlerts()
    (plug,) = alerts.new(round_1)
    assert (plug.check, plug.bugs, plug.runs) == ("plug", 2, 4)
    reason = plug.reason(1)
    assert reason.startswith("check plug (buggy) has a bug: KeyError: 'latency' at ")
    assert "its run left out of it" not in reason  # said once, for the round's runs
    assert "2 of 4 runs of round 1 ended so, left out of the evidence" in reason, reason
    assert "judged on the check's 2 other probes" in reason, reason
    assert alerts.new([await _bug(), _answered("plug")]) == []  # told already
    (other,) = alerts.new([await _bug("other"), await _bug("other")])
    assert "all 2 runs of round 3 ended so" in other.reason(3), other.reason(3)
    assert "gave its rules no probe that round" in other.reason(3)
    assert alerts.new([_answered("third")]) == []


async def test_a_bugs_alert_counts_the_deploys_runs_as_its_rules_do() -> None:
    """A canary's baseline runs are not the deploy's probes: `bug_said` reads the deploy's
    only, and so does the alert's "N of M runs" (before, it counted the baseline's runs and
    bugs too: "2 of 4 runs", "judged on 2 other probes", where the deploy's rule had none,
    and a bug of the baseline's runs alone was alerted as the deploy's); the baseline's
    are counted apart, said as the baseline's."""
    baseline = Sample(check="plug", ok=True, latency_s=0.02, status=200, target="baseline")
    answered_baseline = CheckResult("plug", "http", True, (baseline,), "plug: 200", 0.02, {})
    round_1 = [await _bug(), await _bug(target="baseline"), answered_baseline, await _bug()]
    (plug,) = CheckBugAlerts().new(round_1)
    assert (plug.bugs, plug.runs) == (2, 2)
    assert "all 2 runs of round 1 ended so" in plug.reason(1), plug.reason(1)
    lone = observe(_rule("plug"), [], 1.0)  # the deploy's probes of the rule: none
    assert bug_said(_rule("plug"), lone, round_1).error == plug.said[0]  # they agree
    # the baseline's runs alone: alerted as the baseline's (they are its rules' baseline)
    (alone,) = CheckBugAlerts().new([await _bug(target="baseline"), _answered("plug")])
    assert (alone.bugs, alone.runs, alone.baseline_bugs, alone.baseline_runs) == (0, 1, 1, 1)
    assert "its 1 of the canary's baseline run (baseline_url) of round 2 ended so" in (
        alone.reason(2)
    ), alone.reason(2)
    assert "of round 1 ended so, left out of the evidence" in plug.reason(1)
    assert "canary" in plug.reason(1)  # and its baseline run's, said after the deploy's


def test_the_deploy_page_names_a_checks_bug_alert() -> None:
    """Its stored key (`check_bug:<check>`) is worded, listed after the breaches as a
    window sends it, where the page showed the bare key."""
    assert alert_words(check_bug_key("plug")) == "check plug has a bug (its runs not evidence)"


async def test_a_canary_rule_without_a_baseline_for_a_bug_says_so_in_its_verdict() -> None:
    """Its detail and the reason's "p95: no baseline" name the bug of the baseline's runs
    (before: "no baseline to compare with" alone); another rule whose name ends alike
    keeps its words, and a baseline with data again forgets the bug."""
    rule = Rule(name="p95", source="checks", metric="latency_p95", max_increase=0.5, check="plug")
    results = [await _bug("plug", "baseline"), _answered("plug")]
    baseline = observe(rule, [s for r in results for s in r.samples], 1.0, target="baseline")
    bugs = BaselineBugs()
    bugs.note(rule, baseline, results)

    def verdict(outcome: RuleOutcome = "inconclusive", base: float | None = None) -> Verdict:
        def one(name: str) -> RuleVerdict:
            return RuleVerdict(
                name, "checks", "latency_p95", outcome, 0.02, base, "max_increase 50%",
                "no baseline to compare with (3 rounds with data)", {},
            )  # fmt: skip

        return Verdict(
            "inconclusive",
            "no rule could be judged over 3 rounds: p95: no baseline; xp95: no baseline",
            (one("p95"), one("xp95")),
        )

    said = bugs.said(verdict())
    assert said.reason == (
        "no rule could be judged over 3 rounds: p95: no baseline (check plug's bug ended its"
        " baseline runs); xp95: no baseline"
    ), said.reason
    p95, xp95 = said.rules
    assert "ended by the check's bug: check plug (buggy) has a bug: KeyError" in p95.detail
    assert "not evidence about the target" not in p95.detail, p95.detail
    assert xp95.detail == "no baseline to compare with (3 rounds with data)"
    assert bugs.said(verdict(base=0.01)).rules[0].detail == xp95.detail  # it has one
    bugs.note(rule, observe(rule, [], 1.0, target="baseline"), [])  # a round without
    assert bugs.said(verdict()).rules[0].detail != xp95.detail
    probe = Sample("plug", True, 0.02, 200, target="baseline")
    data = observe(rule, [probe], 1.0, target="baseline")
    bugs.note(rule, data, [])
    assert bugs.said(verdict()) == verdict()
