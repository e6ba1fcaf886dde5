"""The README's walkthrough (`alerting.channels`), at the daemon's own retry schedule: "A
channel that fails an alert ... is retried in the background 5 s, 30 s and 2 min after
each failure ..., to the failed channels only: one that took the alert never gets it
again", "A retry's alert ends with a line saying so (`Sent late, on retry N: …`)", and
`postflight_alerts_total{result="failed"}` "counts a channel failing an alert once, at its
first failure; a retry that delivers counts `sent`". The other tests shorten the schedule
(`alert_retry_delays`); here a real `postflight run` keeps its own, counted at the sinks."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from agent.windows.alert_once import ALERT_RETRY_DELAYS_S
from tests.e2e.crash import TOKEN, end_all, free_port, request_json, start_site
from tests.e2e.crash import start_agent as start_process
from tests.receivers import JsonSink

pytestmark = pytest.mark.e2e


def config(tmp_path: Path, port: int, site: str, failing: JsonSink, healthy: JsonSink) -> Path:
    """One environment whose short window passes (a healthy site), its alerts to both
    sinks."""
    path = tmp_path / "postflight.yaml"
    path.write_text(
        f"""\
server: {{listen: "127.0.0.1:{port}", api_tokens: [{TOKEN}]}}
store: {{url: "sqlite:///{tmp_path / "postflight.db"}"}}
alerting:
  channels:
    - {{url: "{failing.url()}", tags: [oncall]}}
    - {{url: "{healthy.url()}", tags: [oncall]}}
environments:
  production:
    base_url: {site}
    window: 1s
    interval: 500ms
    probes_per_round: 2
    checks: [{{name: api-health, type: http, path: /health}}]
    analysis: {{policy: threshold, pass_on: no_failure}}
    rules: [{{name: probe-errors, source: checks, metric: error_rate, max: 0.5}}]
    rollback: {{url: "http://127.0.0.1:9/rollback", secret: shh-secret, dry_run: true}}
    alerts: {{tags: [oncall]}}
"""
    )
    return path


def alerts_total(port: int) -> dict[str, float]:
    """`postflight_alerts_total` by result, read from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("postflight_alerts_total{"):
            labels, value = line.rsplit(" ", 1)
            result = labels.split('result="', 1)[1].split('"', 1)[0]
            found[result] = float(value)
    return found


@pytest.mark.timeout(90)
async def test_a_failed_channel_is_retried_at_5_s_that_channel_only_saying_so(
    tmp_path: Path,
) -> None:
    assert ALERT_RETRY_DELAYS_S[:1] == (5.0,)  # the README's first step, the daemon's default
    failing, healthy = JsonSink([500]), JsonSink()  # the first send refused, then taken
    arrivals: list[float] = []

    def arrived(_: web.Request) -> None:
        arrivals.append(time.monotonic())

    failing.sender_of = arrived
    await failing.start()
    await healthy.start()
    site, site_url = await asyncio.to_thread(start_site, tmp_path)
    port, log = free_port(), tmp_path / "agent.log"
    agent = None
    try:
        path = config(tmp_path, port, site_url, failing, healthy)
        agent = await asyncio.to_thread(start_process, path, port, log)
        deploy = await asyncio.to_thread(
            request_json,
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": "v2.4.1"},
        )
        await healthy.wait_for(1, within=30)
        await failing.wait_for(1, within=30)  # its retry, delivered
        assert len(arrivals) == 2, arrivals  # refused once, then the retry
        waited = arrivals[1] - arrivals[0]
        assert ALERT_RETRY_DELAYS_S[0] - 0.1 <= waited < ALERT_RETRY_DELAYS_S[1], waited

        (first,) = healthy.notifications
        (retried,) = failing.notifications
        # the verdict's alert: `passed`, or `inconclusive` where a starved agent dropped
        # its probes as its own stall (a 1 s window at load 38), as its state says
        ended = await asyncio.to_thread(
            request_json, "GET", f"http://127.0.0.1:{port}/v1/deploys/{deploy['id']}"
        )
        assert ended["state"] in ("passed", "inconclusive"), ended
        assert ended["state"] in first.title.lower() and retried.title == first.title, first.title
        assert deploy["id"] in retried.message
        assert "Sent late, on retry 1" in retried.message, retried.message
        assert "Sent late" not in first.message

        # one an alert a channel: the healthy channel's send, the retry that delivered
        # (counted once apprise has the sink's answer, after the sink kept the alert)
        for _ in range(100):
            counted = await asyncio.to_thread(alerts_total, port)
            if counted.get("sent", 0) >= 2:
                break
            await asyncio.sleep(0.05)
        assert counted == {"sent": 2, "failed": 1}, counted
        await asyncio.sleep(1.0)  # nothing more to either: the channel that took it is done
        assert (len(arrivals), healthy.arrived) == (2, 1)
        records = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
        said = [(r.get("level"), r.get("message", r.get("msg", ""))) for r in records]
        assert any("delivered on retry 1" in str(m) for _, m in said), said[-20:]
    finally:
        end_all(agent, site)
        await failing.stop()
        await healthy.stop()
