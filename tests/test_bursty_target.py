"""The bursty A/A test's target (`tests.fakes.bursty`) is A/A under load by construction:
a stall of the agent's process does not silence it, and which requests fail depends on
their count, not on when the agent sends them."""

from __future__ import annotations

import socket

import pytest

from tests.fakes.bursty import BurstyProcess, BurstyService

pytestmark = pytest.mark.timeout(60)


def answer_while_stalled(port: int) -> bytes:
    """A request sent, then the caller's event loop blocked until the answer is in the
    socket (or 10 s): what a stalled agent finds when it looks."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /api/health HTTP/1.0\r\nHost: target\r\n\r\n")
        try:
            return sock.recv(65536)
        except TimeoutError:
            return b""


async def test_a_stall_of_the_agents_process_does_not_silence_the_target() -> None:
    target = BurstyProcess(seed=0, error_rate=0.0, burst=0.1, block=20)
    await target.start()
    try:
        assert answer_while_stalled(target.port).startswith(b"HTTP/1.0 200")
    finally:
        await target.stop()


def test_its_bursts_follow_the_request_count_not_the_clock() -> None:
    one, other = BurstyService(3, 0.03, 0.1, 20), BurstyService(3, 0.03, 0.1, 20)
    paced = [one.fails() for _ in range(2000)]
    seen = []
    for _ in range(2000):
        seen.append(other.fails())
    assert paced == seen and any(paced)
    # failures cluster in blocks of 20: a bad block fails 30% of its requests
    failed_blocks = {i // 20 for i, failed in enumerate(paced) if failed}
    assert len(failed_blocks) < sum(paced)
