"""A window's probe fails on its own timeout, never because its round closed: one still in
flight then counts in the round during which it lands (`agent.windows.carried`), and no
more than a round's share of a check's probes are ever in flight.

Before, a probe was cut at its round's end: a target answering every request in 150 ms,
probed in 200 ms rounds with a 2 s timeout, read 100% `no response within …`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.windows.carried import CarriedProbes
from agent.windows.probing import EnvironmentProbe
from checks.base import CheckResult
from checks.sessions import TargetSessions

pytestmark = pytest.mark.timeout(60)

CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    interval: 200ms
    probes_per_round: 4
    checks:
      - {{name: health, type: http, path: /health, timeout: {timeout}}}
"""

ANSWER_S = 0.15
"""Slower than what a 200 ms round left a probe (its room, 100 ms, to the round's end)."""


@pytest.fixture
async def slow_target() -> AsyncIterator[tuple[str, list[float]]]:
    """Answers 200 after `ANSWER_S`; records when each request came."""
    arrivals: list[float] = []

    async def health(request: web.Request) -> web.Response:
        arrivals.append(asyncio.get_running_loop().time())
        await asyncio.sleep(ANSWER_S)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", arrivals
    await runner.cleanup()


@pytest.fixture
async def silent_target() -> AsyncIterator[tuple[str, list[float]]]:
    """Reads requests, never answers; records when each came."""
    arrivals: list[float] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                arrivals.append(asyncio.get_running_loop().time())
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", arrivals
    server.close()


def judged(results: list[CheckResult]) -> list[CheckResult]:
    """Results the agent vouches for (not dropped as its own stall, `checks.lag`)."""
    return [r for r in results if r.details.get("dropped") != "agent_lag"]


async def test_a_probe_in_flight_at_the_round_end_counts_when_it_lands(
    slow_target: tuple[str, list[float]],
) -> None:
    url, arrivals = slow_target
    env = load_settings_text(CONFIG.format(url=url, timeout="2s")).environments["production"]
    async with TargetSessions() as sessions:
        probe = EnvironmentProbe("production", env, sessions, Metrics())
        carry = CarriedProbes()
        rounds = [await probe.run_round(0.2, probes=4, carry=carry) for _ in range(3)]
        rounds.append(await carry.settle(probe.longest_probe()))  # the window's last round
        assert carry.in_flight == 0 and carry.held_back == 0
        # every answer counted, once, as what it was: 200 in 150 ms
        landed = [r for results in rounds for r in results]
        assert len(landed) == len(arrivals) == 12, (len(landed), len(arrivals))
        kept = judged(landed)
        assert kept and all(r.ok for r in kept), [r.message for r in kept if not r.ok]
        assert all(s.latency_s is None or s.latency_s >= ANSWER_S for r in kept for s in r.samples)
        # the later of each round's probes were still in flight as it closed: counted in
        # the next one (the last round's by the window's last round, which waits for them)
        sizes = [len(results) for results in rounds]
        assert sizes[0] < 4 and sizes[-1] > 0, sizes
        # a round alone (no carry) still ends its probes with itself
        alone = judged(await probe.run_round(0.2, probes=4))
        assert any("no response within" in r.message for r in alone)


async def test_no_more_than_a_rounds_share_is_in_flight(
    silent_target: tuple[str, list[float]], caplog: pytest.LogCaptureFixture
) -> None:
    """A silent target, a 1 s timeout, 200 ms rounds: the first round's 4 probes wait their
    timeout, the rounds meanwhile send none (4 a round before), and their timeouts count
    in the round they end in."""
    url, arrivals = silent_target
    caplog.set_level(logging.WARNING, logger="postflight.probing")
    env = load_settings_text(CONFIG.format(url=url, timeout="1s")).environments["production"]
    async with TargetSessions() as sessions:
        probe = EnvironmentProbe("production", env, sessions, Metrics())
        carry = CarriedProbes()
        loop = asyncio.get_running_loop()
        start = loop.time()
        rounds: list[list[CheckResult]] = []
        while loop.time() - start < 0.9:
            rounds.append(await probe.run_round(0.2, probes=4, carry=carry))
            assert carry.in_flight <= 4
        assert len(arrivals) == 4, arrivals  # counted at the target
        assert [r for results in rounds for r in results] == []  # nothing ended yet
        assert carry.held_back == 4 * (len(rounds) - 1)
        said = [r.getMessage() for r in caplog.records if "not sent" in r.getMessage()]
        assert len(said) == 1 and "a round's share (4)" in said[0], said  # once a window
        later = [await probe.run_round(0.2, probes=4, carry=carry) for _ in range(2)]
        timeouts = judged([r for results in later for r in results])
        assert timeouts and all(r.samples[0].error == "timeout" for r in timeouts)
        assert all(r.duration_s >= 0.95 for r in timeouts)  # its own timeout, waited out
        carry.close()  # the window ended: what is still in flight is cancelled
        assert carry.in_flight == 0
        await asyncio.sleep(0.05)
        assert carry.take() == []
