"""kill -9 while an alert channel holds the alert, then restart (contract §4).

The deploy fails at its first round (nothing listens at its target) and has no
rollback configured, so it alerts `deploy failed` and its window ends: nothing will
emit that alert again. The sink (a thread of the test process, so it outlives the
agent) holds that alert's request; the agent is killed while it is held, then
restarted. Counted at the sink, repeats included.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

from tests.e2e.crash import free_port, request_json, server_and_store, start_agent, store_rows

HELD_TITLE = "deploy failed"
"""The alert the sink holds: the window's last, which nothing re-emits."""

Accept = Literal["before_kill", "never"]


@dataclass
class HoldingSink:
    """An apprise `json://` target that holds the first `HELD_TITLE` request until
    released; `accept` says whether that request counts as taken (the sink acted on it
    before the agent could hear so) or is answered 503 after the kill."""

    accept: Accept
    accepted: list[str] = field(default_factory=list)
    in_flight: int = 0
    """Requests being answered now (the held one included)."""
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> ThreadingHTTPServer:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                title = str(json.loads(body or b"{}").get("title", ""))
                status = sink.answer(title)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def answer(self, title: str) -> int:
        with self.lock:
            self.in_flight += 1
        try:
            return self._answer(title)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, title: str) -> int:
        with self.lock:
            hold = HELD_TITLE in title and not self.held.is_set()
            if hold:
                self.held.set()
            if not hold or self.accept == "before_kill":
                self.accepted.append(title)
        if hold:
            self.release.wait(30)
            return 200 if self.accept == "before_kill" else 503
        return 200

    def count(self, text: str) -> int:
        with self.lock:
            return sum(1 for title in self.accepted if text in title)

    def idle(self) -> bool:
        with self.lock:
            return self.in_flight == 0


def write_config(
    workdir: Path, agent_port: int, sink_port: int, channel_timeout: str = "1s"
) -> Path:
    text = (
        server_and_store(workdir, agent_port)
        + f"""\
alerting:
  timeout: {channel_timeout}
  channels:
    - {{url: "json://127.0.0.1:{sink_port}/alerts", tags: [oncall]}}
environments:
  production:
    base_url: http://127.0.0.1:{free_port()}
    window: 60s
    interval: 300ms
    probes_per_round: 3
    checks:
      - {{name: api-health, type: http, path: /health, timeout: 200ms}}
    analysis: {{policy: threshold, failure_limit: 1}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
"""
    )
    path = workdir / "postflight.yaml"
    path.write_text(text)
    return path


@dataclass
class AlertTrial:
    held_arrivals: int
    """`HELD_TITLE` requests the sink took, the one held at the kill included if taken."""
    breaches: int
    """The window's other alert (sent at the same round): never lost, at most twice."""


def alerts_settled(workdir: Path, deploy_id: str) -> bool:
    """Whether the store holds every alert of the deploy as done: an outcome recorded (no
    claim left for a recovery scan to take over) and no retry due. Until then a scan of the
    restarted agent may send one again; after it, none does."""
    found = store_rows(
        workdir, "SELECT result, retry_at FROM alerts WHERE window_id = ?", deploy_id
    )
    return bool(found) and all(result != "claimed" and retry is None for result, retry in found)


def run_alert_trial(workdir: Path, accept: Accept, channel_timeout: str = "1s") -> AlertTrial:
    """Kill -9 the agent while the sink holds the alert, restart it, and count what the
    sink took once the alert is in and the store says the restarted agent is done with the
    deploy's alerts (nothing left that its scans would send again), or 30 s passed.
    `channel_timeout` (`alerting.timeout`) sets the claim's lease: twice it and more."""
    sink = HoldingSink(accept)
    server = sink.serve()
    agent: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        config = write_config(workdir, port, server.server_address[1], channel_timeout)
        log = workdir / "agent.log"
        agent = start_agent(config, port, log)
        deploy = request_json(
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": "v-alert"},
        )
        assert sink.held.wait(30), "the agent never sent the alert"
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        sink.release.set()
        agent = start_agent(config, port, log)
        expected = 2 if accept == "before_kill" else 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            settled = alerts_settled(workdir, deploy["id"])  # read before the sink
            if settled and sink.count(HELD_TITLE) >= expected and sink.idle():
                break
            time.sleep(0.1)
        return AlertTrial(sink.count(HELD_TITLE), sink.count("breached"))
    finally:
        sink.release.set()
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        server.shutdown()
