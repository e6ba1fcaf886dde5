"""`name_what_broke`: a breached check-backed rule's detail names what its checks saw."""

from __future__ import annotations

from agent.analysis.types import Rule, RuleVerdict, Verdict
from agent.windows.evidence import WhatBroke, name_what_broke
from checks.base import CheckResult, Sample

STEP = "step 'profile' (2/2) GET /api/me: status: expected 200, got 500"


def verdict(*rules: RuleVerdict) -> Verdict:
    return Verdict(decision="fail", reason="", rules=rules)


def judged(name: str, outcome: str = "fail", detail: str = "3 of 10 probes failed") -> RuleVerdict:
    return RuleVerdict(name, "checks", "error_rate", outcome, 0.3, None, "max 0.05", detail)  # type: ignore[arg-type]


def result(check: str, kind: str, ok: bool, message: str) -> CheckResult:
    return CheckResult(check, kind, ok, (Sample(check=check, ok=ok),), message)


RULES = [
    Rule(name="smoke-errors", source="checks", metric="error_rate", max=0.05, check="flow"),
    Rule(name="all-errors", source="checks", metric="error_rate", max=0.05),
    Rule(name="feed-p95", source="checks", metric="latency_p95", max=0.3, check="feed"),
]


def test_failing_rules_name_the_step_and_the_load_figures() -> None:
    broke = WhatBroke()
    broke.note(
        [
            result("flow", "smoke", False, STEP),
            result("health", "http", True, "200 in 3ms"),
            result("feed", "load", True, "200 requests at 20/s over 10s: p50 9ms p99 80ms"),
        ]
    )
    out = name_what_broke(
        verdict(judged("smoke-errors"), judged("all-errors"), judged("feed-p95")),
        RULES,
        broke,
        breached=lambda r: r.outcome == "fail",
    )
    details = {r.name: r.detail for r in out.rules}
    assert details["smoke-errors"] == f"3 of 10 probes failed — {STEP}"
    assert details["all-errors"] == f"3 of 10 probes failed — flow: {STEP}"
    assert details["feed-p95"].endswith("— 200 requests at 20/s over 10s: p50 9ms p99 80ms")


def test_a_passing_rule_keeps_its_detail() -> None:
    broke = WhatBroke()
    broke.note([result("flow", "smoke", False, STEP)])
    out = name_what_broke(
        verdict(judged("smoke-errors", "pass", "0 of 10 probes failed")),
        RULES,
        broke,
        breached=lambda r: r.outcome == "fail",
    )
    assert out.rules[0].detail == "0 of 10 probes failed"


def test_a_restart_resumes_from_the_stored_round_summaries() -> None:
    broke = WhatBroke()
    broke.note_summary(
        {
            "flow": {"runs": 10, "failed": 3, "message": STEP, "type": "smoke"},
            "feed": {"runs": 1, "failed": 0, "message": "200 requests at 20/s", "type": "load"},
            "health": {"runs": 10, "failed": 0, "message": "", "type": "http"},
        }
    )
    assert broke.account(RULES[0]) == STEP
    assert broke.account(RULES[2]) == "200 requests at 20/s"
    assert broke.account(RULES[1]) == f"flow: {STEP}"


LATENCY = Rule(name="p95", source="checks", metric="latency_p95", max=0.1)
"""A latency rule over every check (no `check:`), as a user writes one beside an error rule."""


def failed_http(message: str, kind: str) -> CheckResult:
    return CheckResult(
        "health",
        "http",
        False,
        (Sample(check="health", ok=False),),
        message,
        details={"error": kind},
    )


def test_a_latency_rule_does_not_name_a_status_failure_as_what_broke() -> None:
    """A 2x slower release that also answers a few 500s: its latency breach is the
    slowness, not "status: expected 200, got 500" (the audit's rollback said so)."""
    broke = WhatBroke()
    broke.note([failed_http("GET /health: status: expected 200, got 500", "status")])
    assert broke.account(LATENCY) == ""
    assert broke.account(RULES[1]) == "health: GET /health: status: expected 200, got 500"
    broke.note([failed_http("GET /health: no response within 2s", "timeout")])
    assert broke.account(LATENCY) == "health: GET /health: no response within 2s"
    broke.note([failed_http("GET /health: latency: expected <= 300ms, got 412ms", "latency")])
    assert broke.account(LATENCY) == "health: GET /health: latency: expected <= 300ms, got 412ms"


def test_a_restart_keeps_a_latency_rule_to_latency_failures() -> None:
    broke = WhatBroke()
    broke.note_summary(
        {
            "health": {
                "runs": 10,
                "failed": 1,
                "message": "GET /health: status: expected 200, got 500",
                "type": "http",
                "failure": {"status": 500, "error": "status"},
            }
        }
    )
    assert broke.account(LATENCY) == ""
    assert broke.account(RULES[1]) == "health: GET /health: status: expected 200, got 500"
