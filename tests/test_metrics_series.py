"""Each environment's and provider's series exist at 0 from the start: a counter first
seen at 1 is a rise Prometheus' `increase()` and `rate()` never see (the shipped alert on
failed rollbacks missed the first after every start)."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import get_args

import pytest
from prometheus_client import generate_latest

from agent import metrics as m
from agent.app import build_app
from agent.appkeys import METRICS
from agent.records import WindowState
from agent.rollback.delivery import AttemptResult
from agent.settings_file import load_settings_text
from checks.lag import Dropped

CONFIG = """\
server: {{api_tokens: [tok-1234567890abcdef]}}
store: {{url: "sqlite:///{db}"}}
providers:
  prometheus: {{url: "http://127.0.0.1:9"}}
integrations:
  github: {{token: t, webhook_secret: s}}
environments:
  production:
    base_url: http://127.0.0.1:9
    checks: [{{name: health, type: http, path: /health}}]
    rules:
      - {{name: errors, source: checks, metric: error_rate, max: 0.05}}
      - {{name: five, source: prometheus, query: "sum(up)", max: 5}}
"""


def test_a_started_agent_exposes_every_possible_series_at_zero(tmp_path: Path) -> None:
    app = build_app(load_settings_text(CONFIG.format(db=tmp_path / "x.db")))
    exposed = generate_latest(app[METRICS].registry).decode()
    for line in (
        'postflight_rollbacks_total{environment="production",result="failed"} 0.0',
        'postflight_rollbacks_total{environment="production",result="delivered"} 0.0',
        'postflight_windows_total{environment="production",outcome="rolled_back"} 0.0',
        'postflight_rollback_attempts_total{environment="production",result="rejected"} 0.0',
        'postflight_alerts_total{result="failed"} 0.0',
        'postflight_provider_requests_total{provider="prometheus",result="error"} 0.0',
        'postflight_round_overruns_total{environment="production"} 0.0',
        'postflight_round_overrun_causes_total{environment="production",outcome="host"} 0.0',
        'postflight_samples_dropped_total{environment="production",result="agent_lag"} 0.0',
        'postflight_deploy_events_total{provider="github",result="rejected"} 0.0',
        'postflight_integration_calls_total{provider="github",result="failed"} 0.0',
    ):
        assert line in exposed, line
    assert 'provider="checks"' not in exposed
    assert 'provider="vercel"' not in exposed  # not configured: no hook to count


def test_the_expected_label_values_are_the_ones_the_code_counts() -> None:
    """The lists `Metrics.expect` fills from follow the types the counters are fed from."""
    assert set(m.ATTEMPT_RESULTS) == set(get_args(AttemptResult))
    assert set(m.DROP_REASONS) == set(get_args(Dropped))
    ended = set(get_args(WindowState)) - {"watching", "scheduled"}
    assert set(m.WINDOW_OUTCOMES) == ended


def _helps() -> dict[str, str]:
    """Each series' HELP text, as `/metrics` (and Prometheus' metadata) shows it."""
    return {
        line.split(" ")[2]: line.split(" ", 3)[3]
        for line in generate_latest(m.Metrics().registry).decode().splitlines()
        if line.startswith("# HELP ")
    }


HELP_NAMES = {
    "postflight_windows_total": m.WINDOW_OUTCOMES,
    "postflight_check_runs_total": ("pass", "fail", "error"),
    "postflight_rule_evaluations_total": ("pass", "fail", "inconclusive", "breaching"),
    "postflight_rollbacks_total": m.ROLLBACK_RESULTS,
    "postflight_rollback_attempts_total": m.ATTEMPT_RESULTS,
    "postflight_alerts_total": m.ALERT_RESULTS,
    "postflight_provider_requests_total": m.PROVIDER_RESULTS,
    "postflight_integration_calls_total": m.INTEGRATION_RESULTS,
    "postflight_round_overrun_causes_total": m.OVERRUN_CAUSES,
}
"""Contract §5's labelled counters (and the attempts beside the rollbacks, the overruns'
causes) with the values of their outcome, result or cause label."""


def test_each_counters_help_names_every_value_of_its_outcome_or_result() -> None:
    """What an on-call reads in `/metrics` (and Prometheus' metadata) for each series:
    `Deploy windows ended, by outcome.`, `Alert notifications, by result.` named no value
    and said nothing of what `error` or `failed` counts (a failed alert is one a channel
    failed the first time, though a retry may deliver it)."""
    helps = _helps()
    # a window registered with deployed_at ahead is counted active at once (live audit)
    assert "scheduled" in helps["postflight_windows_active"], helps["postflight_windows_active"]
    for name, values in HELP_NAMES.items():
        for value in values:
            assert re.search(rf"\b{value}\b", helps[name]), (name, value, helps[name])


def test_each_loops_gauge_says_what_stops_with_it() -> None:
    """Every loop's gauge said "deploys go unwatched until a restart", the alert-recovery
    loop's too, whose stop leaves deploys watched and failed alerts unsent."""
    helps = _helps()
    assert "deploys go unwatched until a restart" in helps["postflight_watcher_up"]
    for name in ("postflight_integrations_up", "postflight_alert_recovery_up"):
        assert "deploys go unwatched" not in helps[name], helps[name]
    assert "not sent again until a restart" in helps["postflight_alert_recovery_up"]
    assert "GitHub deployment statuses" in helps["postflight_integrations_up"]


def test_the_rollback_counters_help_names_every_target_not_the_webhook_alone() -> None:
    """A rollback goes to the environment's webhook, to Vercel (a promote of the previous
    deployment) or to GitHub (a workflow dispatch), each counted in the same two series;
    their help said "the webhook took one", "Rollback webhook attempts", and an on-call
    whose environments roll back through Vercel read them as not theirs."""
    helps = _helps()
    for name in ("postflight_rollbacks_total", "postflight_rollback_attempts_total"):
        assert "webhook" in helps[name] and "Vercel" in helps[name], helps[name]
        assert "GitHub" in helps[name], helps[name]
        assert not helps[name].startswith("Rollback webhook"), helps[name]


def test_the_api_requests_help_says_every_answered_request_is_counted() -> None:
    """`API requests, by result` read as the deploy API's alone, and an on-call comparing
    it with their deploy rate found it far higher: it counts every request the server
    answered, each Prometheus scrape of `/metrics` and each `/healthz` probe among them."""
    text = _helps()["postflight_api_requests_total"]
    assert "every request" in text.lower() and "/metrics" in text and "/healthz" in text, text
    for status_class in ("2xx", "4xx", "5xx"):
        assert status_class in text, text


README = Path(__file__).resolve().parents[1] / "README.md"
LABELS = {"environment", "check", "rule", "provider", "outcome", "result", "le"}
"""The README's bounded labels (`le`: a histogram's bucket); `version` is build_info's own."""


def _scrape(url: str, accept: str | None = None) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        text: str = response.read().decode()
        return text


@pytest.mark.timeout(120)
def test_postflight_run_exports_what_the_readmes_metrics_section_names(tmp_path: Path) -> None:
    """The README's "Metrics", scraped from `postflight run` as Prometheus does: every
    family it names is exported and every exported family is named there; labels are the
    bounded ones; no `_created` series; in OpenMetrics each `_seconds` histogram says its
    unit; and each environment's series at 0 from the start add 19 lines a scrape (the
    README once said 14: `postflight_windows_active` beside the 14 counters and 4 overrun
    causes `Metrics.expect` fills)."""
    from tests.cli.test_run_start import TOKEN, free_port, listening_until_stopped

    port = free_port()
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: 127.0.0.1:{port}, api_tokens: [{TOKEN}]}}\n"
        f"store: {{url: 'sqlite:///{tmp_path / 'x.db'}'}}\n"
        "providers: {prometheus: {url: 'http://127.0.0.1:9'}}\n"
        "environments:\n"
        "  one: {base_url: 'http://127.0.0.1:9'}\n"
        "  two: {base_url: 'http://127.0.0.1:9'}\n"
    )
    with listening_until_stopped(str(config), tmp_path / "agent.log"):
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        # the watcher's first claim pass, just after "listening on", sets the active gauge
        while 'postflight_windows_active{environment="two"}' not in (text := _scrape(url)):
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        openmetrics = _scrape(url, "application/openmetrics-text; version=1.0.0")
    section = README.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\bpostflight_[a-z_]+[a-z]", section))
    exported = set(re.findall(r"^# TYPE (postflight_\S+) ", text, re.M))
    assert named == exported, (named - exported, exported - named)
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert not [line for line in series if "_created" in line]
    for line in series:
        labels = set(re.findall(r'(\w+)="', line))
        assert labels <= LABELS or line.startswith("postflight_build_info{"), line
    histograms = re.findall(r"^# TYPE (postflight_\w+_seconds) histogram$", openmetrics, re.M)
    assert len(histograms) == 9, histograms  # 4 of them the store's calls, by kind
    for family in histograms:
        assert f"# UNIT {family} seconds" in openmetrics, family
    per_environment = {
        env: [line for line in series if f'environment="{env}"' in line] for env in ("one", "two")
    }
    assert {env: len(lines) for env, lines in per_environment.items()} == {"one": 19, "two": 19}
    assert all(line.endswith(" 0.0") for line in per_environment["one"]), per_environment
    assert "add 19 an environment" in " ".join(section.split())
    # every collection's pause, the full ones' too: the full one start-up's tuning made
    counts = {
        name: float(line.rsplit(" ", 1)[1])
        for line in series
        for name in ("postflight_gc_pause_seconds", "postflight_gc_full_pause_seconds")
        if line.startswith(f"{name}_count ")
    }
    every, full = counts["postflight_gc_pause_seconds"], counts["postflight_gc_full_pause_seconds"]
    assert every >= full >= 1, counts
