"""Each environment's and provider's series exist at 0 from the start: a counter first
seen at 1 is a rise Prometheus' `increase()` and `rate()` never see (the shipped alert on
failed rollbacks missed the first after every start)."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

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
        'postflight_samples_dropped_total{environment="production",result="agent_lag"} 0.0',
        'postflight_deploy_events_total{provider="github",result="rejected"} 0.0',
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
