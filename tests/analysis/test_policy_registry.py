"""Policies are pluggable: a new one is one class plus one `register` line, accepted by the
configuration and judging windows exactly as the built-ins do; unknown names are exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.analysis import Observation, Rule, policies
from agent.analysis.judge import Judge, judge
from agent.analysis.policies import BasePolicy
from agent.analysis.sequential import Kind
from agent.analysis.types import Policy
from agent.analysis.verdicts import Judged, State, rule_verdict
from agent.settings_file import load_settings_text
from agent.windows.foresight import policy_of
from tests.config.test_validate_config import MINIMAL, run_validate


class MajorityPolicy(BasePolicy):
    """Toy: a rule fails once most of its rounds (at least 3) were past its `max`."""

    def start(self, rule: Rule) -> State:
        return {"seen": 0, "past": 0, "failed_at": None}

    def step(self, rule: Rule, st: State, obs: Observation, kind: Kind, index: int) -> None:
        st["seen"] += 1
        st["past"] += int(rule.max is not None and (obs.value or 0.0) > rule.max)
        if st["failed_at"] is None and st["seen"] >= 3 and 2 * st["past"] > st["seen"]:
            st["failed_at"] = index

    def judge(self, rule: Rule, st: State, kind: Kind, final: bool) -> Judged:
        detail = f"{st['past']} of {st['seen']} rounds past max"
        if st["failed_at"] is not None:
            verdict = rule_verdict(rule, "fail", st["last_value"], None, detail, {})
            return Judged(verdict, st["failed_at"], f"{rule.name}: most rounds past max")
        return Judged(rule_verdict(rule, "pass", st["last_value"], None, detail, {}))


@pytest.fixture
def majority() -> Iterator[None]:
    policies.register("majority", MajorityPolicy)  # the one registration line
    yield
    policies.unregister("majority")


RULE = Rule("probe-errors", "checks", "error_rate", max=0.05)
# past max in rounds 0, 2, 3: never 3 in a row (threshold passes), but 3 of 4 (majority fails)
RATES = (0.5, 0.0, 0.5, 0.5)
ROUNDS = [{RULE.name: Observation(r, count=int(r * 10), total=10)} for r in RATES]


def test_a_registered_policy_is_accepted_by_the_config_and_decides(majority: None) -> None:
    config = MINIMAL.replace("    window: 10m", "    window: 10m\n    analysis: {policy: majority}")
    env = load_settings_text(config).environments["production"]
    policy = policy_of(env)
    assert policy.name == "majority"
    verdict = judge([RULE], {}, ROUNDS, policy, final=True)
    assert verdict.decision == "fail"
    assert verdict.reason == "probe-errors: most rounds past max"
    assert verdict.rules[0].detail == "3 of 4 rounds past max"
    # the same rounds under a built-in: the registered policy, not the judge, decided
    assert judge([RULE], {}, ROUNDS, Policy("threshold"), final=True).decision == "pass"


def test_the_judge_resumes_a_registered_policy_from_its_stored_state(majority: None) -> None:
    compiled = Judge([RULE], {}, Policy("majority"))
    state = compiled.start()
    for round_ in ROUNDS:  # a fresh judge per round, from the state as the store keeps it
        state, _ = Judge([RULE], {}, Policy("majority")).step(state, round_, final=False)
        state = json.loads(json.dumps(state))
    assert compiled.failed_round(state) == 2  # 2 of 3 rounds past max
    assert compiled.verdict(state, final=True).decision == "fail"


def test_an_unknown_policy_is_exit_2_at_its_field_listing_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = MINIMAL.replace("    window: 10m", "    window: 10m\n    analysis: {policy: majority}")
    code, out = run_validate(tmp_path, config, capsys)
    assert code == 2, out
    assert "environments.production.analysis.policy" in out
    assert "unknown policy 'majority' (one of: threshold, sequential, fixed)" in out


def test_the_builtins_are_registered_like_any_other() -> None:
    assert policies.names()[:3] == ("threshold", "sequential", "fixed")
    with pytest.raises(policies.UnknownPolicy, match="known policies: threshold"):
        judge([RULE], {}, ROUNDS, Policy("nope"), final=True)
