"""A relative rule that also has an absolute bound is judged on that bound without a
baseline (`agent.analysis.verdicts.needs_baseline`): it does not "end inconclusive in
every window", so neither warning says it does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.test_config_traps import SMOKE_ONLY
from tests.config.test_validate_config import run_validate


def test_a_relative_rule_with_an_absolute_bound_is_not_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = SMOKE_ONLY.replace("max_increase: 50%}", "max: 2s, max_increase: 50%}")
    assert both != SMOKE_ONLY
    code, out = run_validate(tmp_path, both, capsys)
    assert code == 0, out
    assert "max_increase (line" not in out, out
