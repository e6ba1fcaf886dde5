"""`common.words.closest`: the one name a typo meant, which each "did you mean" asks (an
unknown environment, a config key, a command or flag, a variable's environment), where
each called difflib itself. The messages themselves are tested where users meet them:
tests/api/test_errors.py, tests/config/test_validate_config.py,
tests/config/test_env_overrides.py, tests/cli/test_cli_parsing.py."""

from __future__ import annotations

from common.words import closest


def test_a_near_miss_names_the_one_meant() -> None:
    assert closest("regster", ["register", "status", "rollback"]) == "register"


def test_nothing_alike_names_none() -> None:
    assert closest("zzz", ["register", "status"]) is None
    assert closest("anything", []) is None


def test_a_caller_sets_how_far_a_slip_may_stray() -> None:
    """`stag` is 0.57 alike `staging-eu`: a variable's environment (0.5) names it, a
    command's typo (0.6) does not."""
    assert closest("stag", ["staging-eu"], cutoff=0.5) == "staging-eu"
    assert closest("stag", ["staging-eu"]) is None
