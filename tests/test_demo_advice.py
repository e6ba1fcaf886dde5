"""`postflight demo` on a machine too busy for its agent to keep time: the good deploy ends
`inconclusive` ("agent overloaded: …", as designed) and the demo exits 1; it then says
plainly why and what to do, rather than leave a newcomer with "Unexpected outcome"."""

from __future__ import annotations

from typing import Any

from agent.demo import overload_advice

OVERLOADED = (
    "agent overloaded: 203 of 360 probes dropped (0 timeouts, 203 latencies) — its own"
    " event loop was stalled while they ran, so health-latency cannot"
    " be judged and nothing is rolled back (the judge alone said: inconclusive: …)"
)


def deploy(state: str, reason: str) -> dict[str, Any]:
    """The deploy object's fields the demo reads, as `GET /v1/deploys/{id}` has them."""
    return {"id": "dep_01M8SQ85EK1YRHM0VMJY0GFGR2", "state": state, "verdict": {"reason": reason}}


def test_an_overloaded_agent_is_explained_with_the_load_and_what_to_do() -> None:
    advice = overload_advice(deploy("inconclusive", OVERLOADED), 12.34, 2)
    assert advice is not None
    assert "too busy (load average 12.3 on 2 CPUs) for the agent to keep time" in advice
    assert "rather than count its own delay against the service" in advice
    assert "nothing is rolled back" in advice
    assert "run `postflight demo` again when the machine is less busy" in advice


def test_without_a_load_average_the_advice_still_says_why() -> None:
    advice = overload_advice(deploy("inconclusive", OVERLOADED), None, None)
    assert advice is not None
    assert advice.startswith("This machine was too busy for the agent to keep time:")


def test_a_good_deploy_that_ended_otherwise_gets_no_such_advice() -> None:
    assert overload_advice(deploy("passed", "no rule failed over 7 rounds"), 12.0, 2) is None
    lacked = "no rule failed over 9 rounds, but 1 of 2 lacked evidence of a pass"
    assert overload_advice(deploy("inconclusive", lacked), 12.0, 2) is None
    assert (
        overload_advice(deploy("failed", "probe-errors: error_rate 0.45 > max 0.05"), 1, 2) is None
    )
