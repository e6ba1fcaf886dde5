"""SIGSTOP of the agent while a slow alert channel holds the alert, past the alert's
lease, then SIGCONT (contract §4: one notification per deploy and event).

The deploy fails at its first round (nothing listens at its target), with no rollback
configured: it alerts `deploy failed` and its window ends, so nothing emits that alert
again. The sink (a thread of the test process) stops the agent as that alert arrives,
answers it 200 after `answer_s` (while the agent cannot read it), and wakes the agent
`pause_s` after the arrival. Counted at the sink, repeats included.
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

from tests.e2e.crash import free_port, request_json, start_agent
from tests.e2e.crash_alert import HELD_TITLE, alerts_settled, write_config


@dataclass
class PausingSink:
    """An apprise `json://` target: the first `HELD_TITLE` request stops `agent` (SIGSTOP),
    is answered 200 after `answer_s`, and the agent is woken `pause_s` after it came."""

    answer_s: float
    pause_s: float
    agent: subprocess.Popen[bytes] | None = None
    arrivals: list[str] = field(default_factory=list)
    in_flight: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)
    woken: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> ThreadingHTTPServer:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                title = str(json.loads(body or b"{}").get("title", ""))
                with sink.lock:
                    sink.in_flight += 1
                try:
                    sink.take(title)
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    with sink.lock:
                        sink.in_flight -= 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def take(self, title: str) -> None:
        with self.lock:
            self.arrivals.append(title)
            stop = HELD_TITLE in title and not self.stopped.is_set()
            if stop:
                self.stopped.set()
        if stop and self.agent is not None:
            self.agent.send_signal(signal.SIGSTOP)
            threading.Timer(self.pause_s, self._wake).start()
            time.sleep(self.answer_s)

    def _wake(self) -> None:
        if self.agent is not None:
            self.agent.send_signal(signal.SIGCONT)
        self.woken.set()

    def count(self, text: str) -> int:
        with self.lock:
            return sum(1 for title in self.arrivals if text in title)

    def idle(self) -> bool:
        with self.lock:
            return self.in_flight == 0


@dataclass
class PausedTrial:
    held: int
    """`HELD_TITLE` requests the sink took (each answered 200)."""
    breaches: int
    """The window's other alert, sent at the same round: in flight at the stop too."""


def run_paused_alert_trial(
    workdir: Path, *, answer_s: float = 1.5, pause_s: float = 6.0, settle_s: float = 30.0
) -> PausedTrial:
    """What the sink took: the agent stopped as the first `HELD_TITLE` request came
    (answered 200 after `answer_s`), woken `pause_s` later; counted once the store says
    the deploy's alerts are done (no claim, no retry owed) or `settle_s` passed."""
    sink = PausingSink(answer_s, pause_s)
    server = sink.serve()
    agent: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        config = write_config(workdir, port, server.server_address[1])
        agent = start_agent(config, port, workdir / "agent.log")
        sink.agent = agent
        deploy = request_json(
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": "v-alert"},
        )
        assert sink.stopped.wait(30), "the agent never sent the alert"
        assert sink.woken.wait(pause_s + 10)
        time.sleep(1.0)  # a retry is never due sooner
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            settled = alerts_settled(workdir, deploy["id"])  # read before the sink
            if settled and sink.idle():
                break
            time.sleep(0.1)
        return PausedTrial(sink.count(HELD_TITLE), sink.count("breached"))
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGCONT)
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        server.shutdown()
