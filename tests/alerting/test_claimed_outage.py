"""An alert claimed with the change that called for it (a window's end), its send begun
as the store stops answering: one warning saying the alert recovery sends it, not an
ERROR "not sent" with a 40-line traceback (false: the claim is stored, and the recovery
sent it 17 s later; `bench/ha_faults.py --faults kill,term,pg_cut,pg_restart` seed 11, a
PostgreSQL session cut as a window passed). Counted at the sink: once."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from agent.metrics import Metrics
from agent.store.base import StoreUnreachable, Taken
from agent.windows.alert_once import WindowAlerts, alert_claim
from alerting.events import Alert
from tests.alerting.test_window_alerts import (
    LEASE_S,
    AwayStore,
    make_notifier,
    restarted,
    window,
)
from tests.receivers import JsonSink

pytestmark = pytest.mark.timeout(30)


class AwayAtTheTake(AwayStore):
    async def take_alert(self, *args: Any, **kwargs: Any) -> Taken | None:
        if self.away:
            raise StoreUnreachable("cannot reach PostgreSQL store at db:5432/postflight: cut")
        return await super().take_alert(*args, **kwargs)


async def test_a_claimed_alert_the_store_cannot_take_is_a_warning_and_sent_once_by_recovery(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    path, w = tmp_path / "alerts.db", window()
    alert = Alert.for_window(w, "passed")
    store = AwayAtTheTake(path)
    await store.open()
    try:
        await store.create_window(w)
        claimed_at = time.time()
        claim = alert_claim(alert, ["oncall"])
        assert await store.claim_alert(w.id, claim.event, claimed_at, payload=claim.payload)
        alerts = WindowAlerts(store, make_notifier([json_sink.url()], metrics), lease_s=LEASE_S)
        store.away = True
        with caplog.at_level(logging.INFO, logger="postflight.alerting"):
            sent = await alerts.send_claimed(w, alert, ["oncall"], claimed_at=claimed_at)
    finally:
        await store.close()

    assert sent is False and json_sink.notifications == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    [said] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert getattr(said, "deploy_id", None) == w.id
    assert "store does not answer" in said.getMessage()
    assert said.exc_info is None
    assert await restarted(path, [json_sink], metrics, after=LEASE_S + 1) == 1
    assert [n.title for n in json_sink.notifications] == [
        "[postflight] production v2.4.1: deploy passed"
    ]
