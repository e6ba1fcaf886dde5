"""A channel's failure is one log line, from `postflight.alerting`, secrets hidden: apprise's
own warning of it (which that line quotes) was a second line for each failure."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from agent.logs import setup_logging
from agent.metrics import Metrics
from agent.settings import AlertChannel
from alerting.notifier import Notifier
from common.redaction import Redactor
from tests.alerting.test_notifier import alert
from tests.fakes.prometheus import free_port

SECRET = "chat-token-0123456789"


@pytest.fixture
def daemon_logging() -> Iterator[None]:
    """The daemon's own logging (`agent.logs.setup_logging`), put back as it was after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    apprise_level = logging.getLogger("apprise").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("apprise").setLevel(apprise_level)


@pytest.mark.parametrize("retry", [0, 1])
async def test_a_failed_channel_is_logged_once_by_postflight_without_its_secret(
    daemon_logging: None, capsys: pytest.CaptureFixture[str], metrics: Metrics, retry: int
) -> None:
    port = free_port()  # nothing listens: refused at once
    urls = [
        f"json://bot:{SECRET}@127.0.0.1:{port}/alerts",
        f"mailto://127.0.0.1:{port}?from=postflight@example.com&to=oncall@example.com",
    ]
    redact = Redactor(urls)
    setup_logging("text", "info", redact)
    channels = [AlertChannel(url=u, tags=[]) for u in urls]
    notify = Notifier(channels, timeout=5.0, redact=redact, metrics=metrics)
    outcome = await notify.send(alert(), [], retry=retry)
    assert outcome.result == "failed"
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "rror" in line]
    assert SECRET not in err, err
    # one line a channel, each from postflight.alerting, saying apprise's reason
    assert len(lines) == 2, err
    assert all("postflight.alerting" in line for line in lines), err
    assert any("A Connection error occurred sending JSON notification" in ln for ln in lines), err
    assert any("Connection error while submitting email" in line for line in lines), err
