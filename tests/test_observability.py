"""The agent's own logs, Sentry and New Relic: on only when asked, never leaking secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest

from agent.logs import JsonFormatter, setup_logging
from agent.observability import _scrub, init_newrelic, init_sentry
from agent.redact import Redactor


def test_sentry_stays_off_without_a_dsn() -> None:
    assert init_sentry(Redactor(), environ={}) is False


def test_newrelic_stays_off_without_a_license_key() -> None:
    assert init_newrelic(environ={}) is False


def test_sentry_events_are_scrubbed_of_secrets() -> None:
    redact = Redactor(["hunter2-secret-value"])
    event = {
        "message": "failed calling https://user:pw@hooks.example/x with hunter2-secret-value",
        "extra": {"headers": ["Authorization: Bearer abc.def"]},
    }
    scrubbed = json.dumps(_scrub(event, redact))
    assert "hunter2-secret-value" not in scrubbed
    assert "user:pw" not in scrubbed
    assert "abc.def" not in scrubbed


def test_json_logs_carry_deploy_and_environment_and_redact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("json", "info", Redactor(["s3cr3t-token-value"]))
    logging.getLogger("postflight.test").warning(
        "rollback to %s failed",
        "https://x/?t=s3cr3t-token-value",
        extra={"deploy_id": "dep_1", "environment": "production"},
    )
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["deploy_id"] == "dep_1"
    assert line["environment"] == "production"
    assert line["level"] == "warning"
    assert "s3cr3t-token-value" not in line["msg"]
    logging.getLogger().handlers.clear()


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad", None, True)
        import sys

        record.exc_info = sys.exc_info()
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    data = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in data["exc"]
