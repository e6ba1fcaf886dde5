"""The longest a probe waits before it is a timeout, and the latency bounds no wait passes.

A timeout's latency is what it waited, a lower bound on the target's time (`checks.
exchange`). A window's probe waits until its round's end, at least its room (its timeout
or half the round if less, `probing.run_round`), never past its timeout; the round's checks end
its reserve before the slot does (`schedule.round_reserve`). So a target that stops
answering gives waits of at most that long, and a latency rule whose `max` is at or above
it can never fail on them (the judge reads a round mostly of waits within the bound as no
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
from agent.windows.schedule import round_reserve
from checks.registry import check_types
from common.durations import format_duration
from common.samples import Sample


def longest_wait(check: CheckSettings, interval: float) -> tuple[float, str]:
    """How long a request of `check` waits at most before it is a timeout, in rounds of
    `interval`, and why that long: its timeout, or the round's length (a probe started as
    the round starts waits until its end). A load check's requests wait their timeout,
    whatever the round (the run fits itself to the round, not its requests' waits)."""
    timeout = check.longest_request_s()
    if getattr(check_types().get(check.type), "once_per_round", False):
        return timeout, "its timeout"
    round_s = round(interval - round_reserve(interval), 6)  # 3s less 0.3s: 2.7s, not 2.6999…
    if timeout <= round_s:
        return timeout, "its timeout"
    return round_s, f"what a {format_duration(interval)} round leaves it"


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
    waits = [(*longest_wait(check, env.interval), check.name) for check in reads]
    wait, why, check = max(waits, key=lambda w: w[0])
    if rule.max < wait:
        return None
    return (
        f"rule {rule.name!r}: {metric} max {format_value(metric, rule.max)} is at or above the"
        f" longest a probe of {check} waits before it is a timeout ({format_duration(wait)}:"
        f" {why}), and a timeout's latency is what it waited, so the rule can never fail"
        f" on a target that stops answering; only an error_rate rule catches it (or a max"
        f" below {format_duration(wait)})"
    )


CUT_SHARE = 0.01
"""The share of a check's background answers slower than a window's probe waits from which
registration warns (`cut_answers_warnings`): one in a hundred, a fifth of the example's
`probe-errors` bound, already moves an error rate a sub-second window judges."""


def round_room(check: CheckSettings, interval: float) -> float:
    """The least a window's probe of `check` waits for its answer in rounds of `interval`:
    its timeout, or half the round if less (`probing.EnvironmentProbe.run_round`'s room;
    the round's last probes wait no longer)."""
    return min(float(check.timeout), interval / 2)


def cut_answers_warnings(env: EnvironmentSettings, periods: list[list[Sample]]) -> list[str]:
    """One sentence per http check whose background runs (`periods`, which wait the whole
    timeout) answered slower than a window's probe waits in at least `CUT_SHARE` of their
    answers: in a window each such answer is a failed probe. Why: a release that changed
    nothing, 50 ms with a long tail (p95 about 260 ms), was rolled back in 6 of 6 windows of
    250 ms rounds as `error_rate 0.16-0.26` (`bench/small_windows.py`), said nowhere first."""
    out = []
    for check in env.checks:
        room = round_room(check, env.interval)
        if check.type != "http" or room >= float(check.timeout):
            continue
        times = [
            s.latency_s
            for period in periods
            for s in period
            if s.check == check.name and s.ok and s.latency_s is not None
        ]
        slow = sum(1 for t in times if t > room)
        if not times or slow < CUT_SHARE * len(times):
            continue
        wait = format_duration(room)
        out.append(
            f"check {check.name}: {slow / len(times):.1%} of its background runs' answers"
            f" ({slow:,} of {len(times):,}) took longer than {wait}, the least a probe waits"
            f" in a window's {format_duration(env.interval)} rounds (half the round), where"
            f" its timeout {format_duration(check.timeout)} is waited out only between"
            f" windows: in a window each is a failed probe (`no response within {wait}`),"
            " so an error_rate rule may fail a release that changed nothing; rounds of"
            f" {format_duration(2 * float(check.timeout))} give a probe its whole timeout,"
            f" or a timeout of {wait} makes the background runs count them alike"
        )
    return out
