"""kill -9 the instant a rollback's outcome is stored, its alerts not yet sent, then
restart: the order the restarted agent's recovery sends them in, read at a `json://`
sink (contract §4).

A deploy fails at its first round (nothing listens at its target): its round's breach
is claimed, then the window's end with its "rollback requested", then the webhook's
answer settles the rollback with its outcome's alert ("ROLLBACK FAILED" or "rollback
delivered"). The first agent (`postflight run`) sends none of them (a hook of its own
process, `sitecustomize` on its `PYTHONPATH`, holds every alert's send, as a kill an
instant sooner would have cut them) and is killed with SIGKILL right after the outcome
commits (`SqlStore.settle_rollback` with its alert claimed). The restarted agent takes
the three claims over once their lease lapses. The sink is slow (`SLOW_S`) on the
breach and the request, so alerts sent side by side reach it outcome first.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.crash import (
    bad_environment,
    for_at_most,
    free_port,
    read_attempts,
    request_json,
    server_and_store,
)
from tests.e2e.crash_end import _Receivers
from tests.e2e.crash_end import start_agent as start_hooked
from tests.receivers import RollbackReceiver, SlowOnTitles

KILL_AFTER_SETTLED = "POSTFLIGHT_TEST_KILL_AFTER_SETTLED"
"""The agent's environment: a path; the first agent to store a rollback's outcome with
its alert creates it and is killed there (a restart, which finds it, is neither killed
nor held)."""

SITECUSTOMIZE = f'''\
import os

_MARK = os.environ.get("{KILL_AFTER_SETTLED}")
if _MARK and not os.path.exists(_MARK):
    import asyncio
    import signal

    from agent.store.sql import SqlStore
    from agent.windows.alert_once import WindowAlerts

    async def _held(self, *args, **kwargs):
        await asyncio.Event().wait()  # cut by the kill before any channel took it

    WindowAlerts._send = _held

    _settle = SqlStore.settle_rollback

    async def _killed_after(self, intent, attempt=None, alerts=()):
        settled = await _settle(self, intent, attempt, alerts)
        if settled and alerts:
            open(_MARK, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return settled

    SqlStore.settle_rollback = _killed_after
'''

SECRET = "crash-settled-rollback-secret"
SLOW_S = 1.0
"""The sink's wait over a breach or a request: well past a send's few ms, well within
the notifier's timeout (`alerting.timeout`)."""
SLOW_ON = ("breached", "rollback requested")


def start_agent(workdir: Path, config: Path, port: int) -> subprocess.Popen[bytes]:
    """`postflight run`, killed by its own hook the first time a rollback settles."""
    return start_hooked(
        workdir, config, port, sitecustomize=SITECUSTOMIZE, mark_var=KILL_AFTER_SETTLED
    )


def write_config(workdir: Path, port: int, *, sink: str, receiver: str) -> Path:
    alerting = f"""\
alerting:
  timeout: 3s
  channels:
    - {{url: "{sink}", tags: [oncall]}}
"""
    rollback = f"""\
url: {receiver}
secret: {SECRET}
backoff: 50ms
max_backoff: 200ms
max_attempts: 1
"""
    environment = bad_environment(
        rollback, more="alerts:\n  tags: [oncall]\n", interval="500ms", probes=3
    )
    path = workdir / "postflight.yaml"
    path.write_text(server_and_store(workdir, port) + alerting + environment)
    return path


@dataclass
class SettledTrial:
    killed: bool
    """Whether the first agent was killed at the outcome (else the trial says nothing)."""
    state: str
    alerts: list[str]
    """The sink's titles, in the order it took them, repeats included."""

    def order(self, *texts: str) -> list[str]:
        """Which of `texts` each alert's title holds, in the sink's order."""
        return [t for title in self.alerts for t in texts if t in title]


def run_settled_trial(workdir: Path, answer: int) -> SettledTrial:
    """A failed deploy's rollback answered `answer`, killed as its outcome is stored."""
    workdir.mkdir(parents=True, exist_ok=True)
    sink_log = workdir / "sink.jsonl"
    helpers = _Receivers()
    agent: subprocess.Popen[bytes] | None = None
    try:
        sink_url = helpers.start(SlowOnTitles(SLOW_ON, SLOW_S, log=sink_log))
        receiver_url = helpers.start(RollbackReceiver(SECRET, [answer]))
        port = free_port()
        config = write_config(
            workdir, port, sink=sink_url.replace("http://", "json://", 1), receiver=receiver_url
        )
        agent = start_agent(workdir, config, port)
        deploys = f"http://127.0.0.1:{port}/v1/deploys"
        deploy = request_json(
            "POST",
            deploys,
            {"environment": "production", "version": "v1.0.1", "previous_version": "v1.0.0"},
        )
        agent.wait(timeout=60)  # killed by its hook as the rollback's outcome is stored
        killed = (workdir / "killed").exists()
        agent = start_agent(workdir, config, port)
        url = f"{deploys}/{deploy['id']}"

        def told() -> bool:
            return sum(1 for line in read_attempts(sink_log) if line) >= 3

        for_at_most(told, 60)  # the trial returns what came; its tests count it
        state = str(request_json("GET", url)["state"])
        agent.send_signal(signal.SIGTERM)  # what it still had in flight goes out
        agent.wait(timeout=60)
        return SettledTrial(
            killed=killed,
            state=state,
            alerts=[
                str((line.get("payload") or {}).get("title", ""))
                for line in read_attempts(sink_log)
            ],
        )
    finally:
        if agent is not None and agent.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                agent.send_signal(signal.SIGKILL)
            agent.wait()
        helpers.close()
