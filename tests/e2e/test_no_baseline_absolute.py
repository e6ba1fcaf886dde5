"""The registration's "no baseline" warning is not given for a rule that also has `max`:
the judge reads `max` without a baseline (`needs_baseline`), so "ends inconclusive (no
baseline) whatever the release does" would be false for it."""

from __future__ import annotations

import pytest

from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.foresight import registration_warnings
from tests.config.test_validate_config import MINIMAL
from tests.e2e.test_no_baseline_warning import NOW, no_baseline

BOTH = (
    "      - {name: p95, source: checks, check: api-health, metric: latency_p95,"
    " max: 2s, max_increase: 50%}\n"
)


@pytest.mark.parametrize("analysis", ["", "    analysis: {policy: threshold}\n"])
async def test_a_relative_rule_with_a_max_is_not_warned_it_ends_inconclusive(
    store: SqliteStore, analysis: str
) -> None:
    text = MINIMAL.replace("        max: 0.05\n", "        max: 0.05\n" + BOTH)
    text = text.replace("    rules:\n", f"{analysis}    rules:\n")
    env = load_settings_text(text).environments["production"]
    said = await registration_warnings(store, env, "production", NOW, NOW + 600, now=NOW)
    assert no_baseline(said) == [], said
