"""The threaded target leaves nothing running at its stop: a slow answer whose client
hung up first (a probe's timeout) was left pending in its closed loop by aiohttp, and
logged 'Task was destroyed but it is pending!' at a later collection (a full run printed
six such lines at a worker's end, from test_agent_lag's 5 s target)."""

from __future__ import annotations

import asyncio
import socket
import threading

from tests.thread_target import ThreadTarget, thread_target


def _turns(target: ThreadTarget, n: int = 3) -> None:
    """Wait for `n` turns of the target's loop: a close already in the kernel (loopback)
    is read on the first, its connection_lost runs on the next."""
    for _ in range(n):
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), target.loop).result(10)


def test_a_slow_answer_whose_client_hung_up_is_cancelled_at_stop() -> None:
    asked = threading.Event()
    with thread_target() as target:
        target.delay_s = 600.0
        target.on_request = asked.set
        with socket.create_connection(("127.0.0.1", target.port), timeout=10) as client:
            client.sendall(b"GET /health HTTP/1.1\r\nHost: target\r\n\r\n")
            assert asked.wait(10)
        _turns(target)  # the target has seen its client go
    assert not target.thread.is_alive()
    assert target.loop.is_closed()
    assert not asyncio.all_tasks(target.loop), asyncio.all_tasks(target.loop)
