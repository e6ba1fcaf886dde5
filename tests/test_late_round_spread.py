"""A round that starts late (a watch resumed mid-slot after a kill -9, a round after an
overrun) against the README walkthrough's staging site, `python -m http.server`, whose
listen queue holds 5 connections: its probes are spread, never written in one instant.

Found restarting the walkthrough's agent with kill -9: the round it resumed 0.7 s into a
1 s slot had less left than its probes' room, so all 40 started at once; the site's
queue overflowed (the kernel's ListenOverflows up by as many as failed) and 8-9 of 40
probes were timeouts charged to a healthy service, the window's error_rate past a 0.05
bound in that round.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.windows.probing import EnvironmentProbe
from agent.windows.schedule import probe_step
from checks.sessions import TargetSessions
from tests.ports import free_port

CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  staging:
    base_url: {url}
    interval: 2s
    probes_per_round: 40
    checks:
      - {{name: api-health, type: http, path: /api/health, timeout: 1s}}
"""


@pytest.fixture
def staging_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The walkthrough's step 1, as written there: `python -m http.server` serving
    `{"status": "ok"}` at /api/health; its stderr is its access log, a line a request."""
    (tmp_path / "site" / "api").mkdir(parents=True)
    (tmp_path / "site" / "api" / "health").write_text('{"status": "ok"}\n')
    port = free_port()
    log = tmp_path / "access.log"
    with log.open("wb") as out:
        site = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1"],
            cwd=tmp_path / "site",
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if site.poll() is not None:
                    raise
                time.sleep(0.05)
        else:
            raise AssertionError("the staging site never listened")
        yield f"http://127.0.0.1:{port}", log
    finally:
        site.terminate()
        site.wait(timeout=10)


def answered(log: Path) -> int:
    return sum('"GET /api/health' in line for line in log.read_text().splitlines())


async def test_a_late_rounds_probes_are_not_written_at_once(
    staging_site: tuple[str, Path],
) -> None:
    """2 s rounds, a 1 s room for each probe: a round left 0.8 s of its slot (less than
    the room) spreads its 40 probes over it at the on-time step (20 ms), where all 40 were
    started in one instant and the site's queue of 5 dropped the connects past it. Each
    probe reaches the site, once, and is answered 200."""
    url, log = staging_site
    env = load_settings_text(CONFIG.format(url=url)).environments["staging"]
    before = answered(log)  # the fixture's readiness connect sent no request
    async with TargetSessions() as sessions:
        probe = EnvironmentProbe("staging", env, sessions, Metrics())
        results = await probe.run_round(0.8, probes=40)
    failed = [r.message for r in results if not r.ok]
    assert not failed, f"{len(failed)} of 40 failed: {failed[:3]}"
    kept = [r for r in results if r.samples]  # a sample dropped as the agent's lag has none
    assert all(r.samples[0].status == 200 for r in kept)
    for _ in range(100):  # its access log line is written after the answer
        if answered(log) - before >= 40:
            break
        await asyncio.sleep(0.05)
    assert answered(log) - before == 40


def test_a_late_round_keeps_the_on_time_step_where_it_fits() -> None:
    """The plan behind it (`probe_step`), 1 s rounds (a 0.1 s reserve), 0.5 s rooms, 40
    probes: on time 10 ms apart; late with 0.7 s left, still 10 ms; with 0.2 s left (less
    than the room), over all of it, 5 ms, where it was 0; a lone probe as before."""
    assert probe_step(0.9, 1.0, 0.5, 40) == pytest.approx(0.01)
    assert probe_step(0.7, 1.0, 0.5, 40) == pytest.approx(0.01)
    assert probe_step(0.2, 1.0, 0.5, 40) == pytest.approx(0.005)
    assert probe_step(0.05, 1.0, 0.5, 40) == pytest.approx(0.00125)
    assert probe_step(0.2, 1.0, 0.5, 1) == 0.0
    assert probe_step(30.0, 1.0, 0.5, 40) == pytest.approx(29.5 / 40)  # longer than on time
