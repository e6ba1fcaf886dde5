"""The longest a probe waits before it is a timeout, and the latency bounds no wait passes.

A timeout's latency is what it waited, a lower bound on the target's time (`checks.
exchange`). A probe waits its own timeout, in a window too: one still in flight at its
round's end is carried to the round it ends in (`agent.windows.carried`). So a target that
stops answering gives waits of at most that long, and a latency rule whose `max` is at or
above it can never fail on them (the judge reads a round mostly of waits within the bound as no
data, `agent.analysis.judge`): only an error rule catches a dead target. Said at config
time (validate-config, and `run`'s start log), as `Settings`' own warnings are.

Not said of `max_increase`: its bound is the stored baseline moved by it (and never by
less than a floor), unknown until a window opens.

Pure: no I/O.
"""

from __future__ import annotations

from agent.analysis.describe import format_value, quantile_of
from agent.settings import CheckSettings, EnvironmentSettings, RuleSettings, Settings
from agent.settings_units import Loc
from common.durations import format_duration


def longest_wait(check: CheckSettings) -> float:
    """How long a request of `check` waits at most before it is a timeout: its timeout (a
    smoke step's own when longer), in a window's rounds as between them. Before probes were
    carried past their round's end, a round shorter than the timeout cut it to what the
    round left (`what a 1s round leaves it`)."""
    return check.longest_request_s()


def latency_bound_warnings(settings: Settings) -> list[tuple[Loc, str]]:
    """(loc, message) of each checks latency rule whose `max` is at or above the longest
    wait of every check it reads: a target that stops answering never fails it."""
    warnings: list[tuple[Loc, str]] = []
    for name, env in settings.environments.items():
        for index, rule in enumerate(env.rules):
            message = _unfailable(env, rule)
            if message is not None:
                warnings.append((("environments", name, "rules", index, "max"), message))
    return warnings


def _unfailable(env: EnvironmentSettings, rule: RuleSettings) -> str | None:
    metric = rule.metric
    if rule.source != "checks" or rule.max is None or not metric or quantile_of(metric) is None:
        return None
    reads = [c for c in env.checks if rule.check in (None, c.name)]
    if not reads:
        return None  # a check the rule names that is not there: an error of its own
    wait, check = max((longest_wait(check), check.name) for check in reads)
    if rule.max < wait:
        return None
    return (
        f"rule {rule.name!r}: {metric} max {format_value(metric, rule.max)} is at or above the"
        f" longest a probe of {check} waits before it is a timeout ({format_duration(wait)}:"
        " its timeout), and a timeout's latency is what it waited, so the rule can never fail"
        f" on a target that stops answering; only an error_rate rule catches it (or a max"
        f" below {format_duration(wait)})"
    )
