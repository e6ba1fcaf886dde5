"""Values that validated yet did something other than what their writer meant: a
percentage without its `%`, a duration with a unit twice, alerts routed nowhere."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from agent.cli.stop_signals import STOP_SIGNALS
from agent.settings_file import load_settings_text
from tests.config.test_validate_config import MINIMAL, run_validate

RULE = "        max: 0.05\n"


def with_rule_bound(bound: str) -> str:
    """MINIMAL with the probe-errors rule bounded by `bound` instead of `max: 0.05`."""
    return MINIMAL.replace(RULE, f"        {bound}\n")


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        (
            "max_increase: 50",
            "rules[0].max_increase (line 17): max_increase 50 is +5000%: a bare number is a"
            " fraction (0.5 = 50%); write 50% for 50 percent (or 5000% if you mean it)",
        ),
        ("max_increase: .inf", "rules[0].max_increase (line 17): max_increase must be finite"),
        ("max_increase: inf", "rules[0].max_increase (line 17): max_increase must be finite"),
        ("max_increase: inf%", "rules[0].max_increase (line 17): max_increase must be finite"),
        ("max_increase: .nan", "rules[0].max_increase (line 17): max_increase must be finite"),
        (
            "max: 5",
            "rules[0].max (line 17): error_rate is a fraction from 0 to 1: max 5 is 500%;"
            " write 0.05 for 5 percent",
        ),
    ],
)
def test_a_percentage_missing_its_percent_sign_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bound: str, expected: str
) -> None:
    code, out = run_validate(tmp_path, with_rule_bound(bound), capsys)
    assert code == 2, out
    assert "1 configuration error (exit 2)\n" in out
    assert f"environments.production.{expected}" in out


@pytest.mark.parametrize(
    ("metric", "bound", "expected"),
    [
        (
            "error_rate",
            "max: -1",
            "rules[0].max (line 17): error_rate is never below 0: max -1 fails every round"
            " (every deploy rolled back)",
        ),
        (
            "error_rate",
            "min: -0.5",
            "rules[0].min (line 17): error_rate is never below 0: min -0.5 never fails",
        ),
        (
            "throughput",
            "min: -5",
            "rules[0].min (line 17): throughput is never below 0: min -5 never fails",
        ),
    ],
)
def test_a_negative_bound_of_a_metric_never_below_zero_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metric: str, bound: str, expected: str
) -> None:
    """A rate or a throughput is 0 or more: `max: -1` validated and failed every round of
    every deploy (each one rolled back), `min: -0.5` judged nothing."""
    text = with_rule_bound(bound).replace("metric: error_rate", f"metric: {metric}")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert "1 configuration error (exit 2)\n" in out
    assert f"environments.production.{expected}\n" in out


@pytest.mark.parametrize(
    ("bound", "fraction"),
    [
        ("max_increase: 0.5", 0.5),
        ("max_increase: 10", 10.0),  # +1000%: the largest bare number taken as a fraction
        ("max_increase: 50%", 0.5),
        ("max_increase: 5000%", 50.0),  # written with its %: meant
        ("max_increase: 0", 0.0),
    ],
)
def test_fractions_and_explicit_percentages_of_any_size_are_accepted(
    bound: str, fraction: float
) -> None:
    rule = load_settings_text(with_rule_bound(bound)).environments["production"].rules[0]
    assert rule.max_increase == pytest.approx(fraction)


def test_a_load_checks_error_rate_bound_is_a_percentage_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = "      - {name: feed, type: load, path: /, rate: 5/s, max_error_rate: 20}\n"
    text = MINIMAL.replace("        path: /health\n", "        path: /health\n" + line)
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert (
        "checks[1].max_error_rate (line 13): max_error_rate 20 is 2000%: a bare number is a"
        " fraction (0.5 = 50%); write 20% for 20 percent\n"
    ) in out


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("30s30s", "'30s30s' gives s twice: write 1m (each unit once, largest first)"),
        ("1m1h", "'1m1h' has its units out of order: write 1h1m (each unit once, largest first)"),
        ("500ms1s", "'500ms1s' has its units out of order: write 1.5s"),
        ("1m30m", "'1m30m' gives m twice: write 31m"),
        # YAML 1.1 reads 1:30 as the number 90 (base 60): silently 90 s, or 1h30m meant?
        ("1:30", "'1:30' is not a duration: write 1m30s, or 1h30m for hours and minutes"),
        ("0:05:00", "'0:05:00' is not a duration: write 5m"),
        ("1:02:03", "'1:02:03' is not a duration: write 1h2m3s"),
        ("-5m", "'-5m' is negative: a duration is zero or more"),
        # 0s, not below it: "is negative" was wrong
        ("-0s", "'-0s' has a minus sign, which a duration does not take: write 0s"),
    ],
)
def test_a_duration_with_a_unit_twice_or_out_of_order_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str, expected: str
) -> None:
    code, out = run_validate(tmp_path, MINIMAL.replace("window: 10m", f"window: {written}"), capsys)
    assert code == 2, out
    assert f"environments.production.window (line 7): {expected}" in out


def test_a_clock_reading_in_a_text_value_stays_the_text_written() -> None:
    """YAML 1.1 reads `10:30` as 37800 (base 60); the header is the text 10:30."""
    text = MINIMAL.replace("path: /health\n", "path: /health\n        headers: {X-At: 10:30}\n")
    check = load_settings_text(text).environments["production"].checks[0]
    assert check.model_dump()["headers"] == {"X-At": "10:30"}


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("0.5s", 0.5),
        (".5s", 0.5),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("1d2h", 93600.0),
        ("1h30m15s500ms", 5415.5),
        ("1m 30s", 90.0),
        ("45", 45.0),
    ],
)
def test_durations_as_documented_are_accepted(written: str, seconds: float) -> None:
    settings = load_settings_text(f"store:\n  retention:\n    rounds: {written}\n" + MINIMAL)
    assert settings.store.retention.rounds == pytest.approx(seconds)


def test_a_latency_bound_that_is_not_a_duration_is_reported_at_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = MINIMAL.replace(
        "metric: error_rate\n        max: 0.05", "metric: latency_p95\n        max: 1s1s"
    )
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert "rules[0].max (line 17): '1s1s' gives s twice: write 2s" in out


UNROUTED = MINIMAL + (
    "    alerts:\n"
    "      tags: [on-call]\n"  # line 22; the channel's tag is `oncall`
    "alerting:\n"
    "  channels:\n"
    "    - url: json://127.0.0.1:9/alerts\n"
    "      tags: [oncall]\n"
)
UNROUTED_WARNING = (
    "warning: environments.production.alerts.tags (line 22): no alert channel has any of"
    " the tags on-call (the channels' tags: oncall): this environment's alerts are sent nowhere"
)


def test_alert_tags_that_match_no_channel_are_a_warning_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_validate(tmp_path, UNROUTED, capsys)
    assert code == 0, out
    assert "valid" in out
    assert out.count("warning:") == 1
    assert UNROUTED_WARNING in out


@pytest.mark.parametrize(
    "alerts",
    [
        "    alerts:\n      tags: [oncall, pager]\n",  # one shared tag is enough
        "",  # no tags: every channel
    ],
)
def test_alerts_that_reach_a_channel_warn_of_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], alerts: str
) -> None:
    text = UNROUTED.replace("    alerts:\n      tags: [on-call]\n", alerts)
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 0, out
    assert "warning" not in out


def test_no_channels_at_all_is_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_validate(tmp_path, MINIMAL, capsys)
    assert code == 0, out
    assert out.count("warning:") == 1
    assert "warning: alerting.channels" in out
    assert "no alert channels are configured: every environment's alerts" in out


def test_the_settings_warn_exactly_when_the_notifier_would_send_nowhere() -> None:
    from agent.alert_channels import routed

    for tags in ([], ["oncall"], ["on-call"], ["email", "x"]):
        text = UNROUTED.replace("[on-call]", f"[{', '.join(tags)}]" if tags else "[]")
        settings = load_settings_text(text)
        channels = [c.tags for c in settings.alerting.channels]
        warned = bool(settings.alert_routing_warnings())
        assert warned == (not routed(channels, settings.environments["production"].alerts.tags))


def test_run_logs_the_warning_once_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    logged = start_log_warnings(tmp_path, monkeypatch, caplog, UNROUTED)
    said = [message for message in logged if "sent nowhere" in message]
    assert said == ["configuration: " + UNROUTED_WARNING.removeprefix("warning: ")]


def start_log_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, text: str
) -> list[str]:
    """The WARNING lines `postflight run` logs at start on a config of `text` (the daemon
    itself is not started)."""
    import agent.app
    import agent.logs
    from agent.cli.main import main

    async def serve(*args: object) -> None:  # the daemon itself is not under test
        return None

    monkeypatch.setattr(agent.app, "serve", serve)
    monkeypatch.setattr(agent.logs, "setup_logging", lambda *args: None)  # keep caplog's
    path = tmp_path / "postflight.yaml"
    path.write_text(text)
    # `run` makes SIGTERM/SIGINT/SIGHUP exit 0 for its process: this one is pytest's
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        with caplog.at_level("WARNING"):
            assert main(["run", "--config", str(path)]) == 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_the_shortest_interval_and_background_interval_are_accepted() -> None:
    text = MINIMAL.replace("interval: 30s", "interval: 100ms\n    background_interval: 100ms")
    env = load_settings_text(text).environments["production"]
    assert (env.interval, env.background_interval) == (0.1, 0.1)


def test_an_interval_below_the_floor_from_a_variable_names_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__PRODUCTION__BACKGROUND_INTERVAL", "1ms")
    code, out = run_validate(tmp_path, MINIMAL, capsys)
    assert code == 2, out
    assert (
        "  environments.production.background_interval (from"
        " $POSTFLIGHT__ENVIRONMENTS__PRODUCTION__BACKGROUND_INTERVAL): must be at least 10ms"
        " (got 1ms)"
    ) in out, out


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            "  api_tokens:",
            "  shutdown_timeout: 30s\n  api_tokens:",
            "server.shutdown_timeout (line 3): must be at most 10s (got 30s)",
        ),
        (
            "interval: 30s",
            "interval: 0s",
            "environments.production.interval (line 8): must be at least 10ms (got 0s): a"
            " shorter period only keeps the agent busy running checks and storing what they"
            " found",
        ),
        # no floor before: a round every millisecond, each window's, each stored
        (
            "interval: 30s",
            "interval: 0.001s",
            "environments.production.interval (line 8): must be at least 10ms (got 1ms): a"
            " shorter period only keeps the agent busy running checks and storing what they"
            " found",
        ),
        (
            "interval: 30s",
            "interval: 30s\n    background_interval: 0.00001",
            "environments.production.background_interval (line 9): must be at least 10ms"
            " (got 0.01ms): a shorter period only keeps the agent busy running checks and"
            " storing what they found",
        ),
        (
            "interval: 30s",
            "interval: 20m",
            "environments.production.window (line 7): window (10m) must be at least one"
            " interval (20m)",
        ),
    ],
)
def test_a_duration_bound_is_said_as_a_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], before: str, after: str, expected: str
) -> None:
    code, out = run_validate(tmp_path, MINIMAL.replace(before, after), capsys)
    assert code == 2, out
    assert f"  {expected}\n" in out


def test_a_load_checks_bounds_are_said_in_its_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = (
        "      - {name: feed, type: load, path: /, rate: 5/s, duration: 0s, max_error_rate: 150%}\n"
    )
    text = MINIMAL.replace("        path: /health\n", "        path: /health\n" + line)
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert "checks[1].duration (line 13): must be more than 0s\n" in out
    assert "checks[1].max_error_rate (line 13): must be at most 100% (got 150%)\n" in out


LACKING = """\
# Postflight

store:
  url: sqlite:///x.db
environments:
  production:
    base_url: http://127.0.0.1:9
    checks:
      - name: api-health
        type: http
        path: /health
    rules:
      - name: probe-errors
        metric: error_rate
        max: 0.05
  staging:
    base_url: http://127.0.0.1:9
    checks:
      - {name: x, path: /}
"""


def test_a_missing_key_is_at_the_line_of_the_mapping_that_lacks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from checks.registry import check_types

    code, out = run_validate(tmp_path, LACKING, capsys)
    assert code == 2, out
    assert out.splitlines()[1:] == [
        "  environments.production.rules[0].source (line 13): required, but missing",
        "  environments.staging.checks[0].type (line 19): required, but missing"
        f" (one of: {', '.join(sorted(check_types()))})",
        # a top-level section the file lacks has no line: not the first key's (`store:`)
        "  server: required, but missing (the file has no top-level `server:`)",
    ]


def test_a_provider_plugins_missing_key_is_at_its_own_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import BaseModel, ConfigDict

    import agent.providers.plugins as plugins
    import agent.providers.provider_settings as provider_settings
    from agent.settings_file import ConfigError

    class DatadogSettings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        site: str
        api_key: str

    builtin = plugins.config_model_for  # the one provider_settings imported, replaced there
    monkeypatch.setattr(
        provider_settings,
        "config_model_for",
        lambda name: DatadogSettings if name == "datadog" else builtin(name),
    )
    text = MINIMAL + "providers:\n  datadog:\n    site: datadoghq.eu\n"
    with pytest.raises(ConfigError) as caught:
        load_settings_text(text)
    assert [str(p) for p in caught.value.problems] == [
        "providers.datadog.api_key (line 22): required, but missing"
    ]


SMOKE_ONLY = MINIMAL.replace(
    "        type: http\n        path: /health\n",
    "        type: smoke\n        steps: [{name: home, method: GET, path: /}]\n",
).replace(
    "        max: 0.05\n",
    "        max: 0.05\n"
    "      - {name: flow-p95, source: checks, metric: latency_p95, max_increase: 50%}\n",
)


def test_a_relative_rule_no_background_check_feeds_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A smoke scenario runs only during windows: a `max_increase` rule over it never has a
    baseline and ends inconclusive in every window. Said at validation (exit 0); not with
    a canary's `baseline_url`, whose stable side is its baseline, nor over an http check."""
    code, out = run_validate(tmp_path, SMOKE_ONLY, capsys)
    assert code == 0, out
    assert out.count("max_increase (line") == 1, out
    assert (
        "warning: environments.production.rules[1].max_increase (line 18): rule 'flow-p95' is"
        " relative (max_increase) but no check it reads probes between windows (api-health"
        " (smoke) runs only during windows), so it has no baseline and ends inconclusive in"
        " every window; give it an absolute bound (max or min), point it at an http or load"
        " check, or set baseline_url"
    ) in out
    canary = SMOKE_ONLY.replace(
        "    window: 10m\n", "    window: 10m\n    baseline_url: http://127.0.0.1:10\n"
    )
    code, out = run_validate(tmp_path, canary, capsys)
    assert code == 0 and "max_increase (line" not in out, out
    http = MINIMAL.replace(
        "        max: 0.05\n",
        "        max: 0.05\n"
        "      - {name: p95, source: checks, metric: latency_p95, max_increase: 50%}\n",
    )
    code, out = run_validate(tmp_path, http, capsys)
    assert code == 0 and "max_increase (line" not in out, out


@pytest.mark.parametrize("bound", ["max_increase: 100%", "max_increase: 1.5"])
def test_a_fall_of_all_or_more_is_refused_on_a_decrease_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bound: str
) -> None:
    """A `direction: decrease` rule's max_increase is the fall it allows: 100% or more
    leaves a bound of zero or below, one the rule can never cross (and the judge's
    scale would be log 0)."""
    text = with_rule_bound(f"{bound}\n        direction: decrease")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert "1 configuration error (exit 2)\n" in out
    assert "environments.production.rules[0].max_increase (line 17): " in out
    assert "a decrease rule's max_increase is the fall it allows" in out


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (
            "1ms",
            "alerting.timeout (line 6): must be at least 1s (got 1ms): no channel answers"
            " sooner (a chat webhook, a mail server's exchange), so every alert would fail",
        ),
        (
            "5000",
            "alerting.timeout (line 6): must be at most 1m (got 1h23m20s): a hung channel"
            " would hold each alert that long, and an alert its crashed sender left is taken"
            " over only after twice it",
        ),
    ],
)
def test_an_alert_timeout_no_channel_can_meet_or_on_call_would_wait_on_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], timeout: str, expected: str
) -> None:
    """`alerting.timeout: 1ms` validated and failed every alert on every channel;
    `timeout: 5000` (meant as ms) held a hung channel's alert 83 minutes."""
    text = MINIMAL.replace(
        "environments:",
        f"alerting:\n  channels: [{{url: 'json://127.0.0.1:9/a'}}]\n  timeout: {timeout}\n"
        "environments:",
    )
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert f"  {expected}\n" in out, out
