"""`load_turns` orders the first runs of every load check, whatever its period:
environments whose periods differ (another `lookback`, or a `background_interval` above
lookback / 6) all started their first load run at 0, together, when only those of one
period took turns."""

from __future__ import annotations

import itertools

from agent.metrics import Metrics
from agent.windows.probing import EnvironmentProbe, background_every, load_turns
from checks.sessions import TargetSessions
from tests.test_background_probing import CONFIG, settings


def test_load_checks_of_environments_with_other_periods_take_turns_at_the_start() -> None:
    hourly = settings().environments["production"]
    half = settings().environments["production"].model_copy(update={"lookback": 1800.0})
    loads = []
    budgets = {}
    for name, env in (("prod-a", hourly), ("prod-b", half)):
        probe = EnvironmentProbe(name, env, TargetSessions(), Metrics())
        feed = next(c for c in probe.checks if c.name == "feed")
        every = background_every(feed, env)
        assert every is not None
        loads.append((name, feed, every))
        budgets[name] = feed.budget_s()
    assert len({every for *_, every in loads}) == 2 and "feed" in CONFIG
    turns = load_turns(loads)
    firsts = sorted((turns[(name, "feed")], name) for name, *_ in loads)
    for (a, name_a), (b, _) in itertools.pairwise(firsts):
        assert b - a >= budgets[name_a], firsts  # the first runs overlap
