"""The suite's one `free_port()`: a loopback port for a daemon, a fake or a server the
test starts itself, or for a "nothing listens here" (connection refused) case.

Binding port 0, reading the port and closing hands out a port from the kernel's
ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 here), the range
every outgoing connection's source port and every other xdist worker's `bind(0)` take
from: between the close and the user's own bind another test could be handed the same
port, and its daemon then failed to bind, or a CLI talked to the other test's daemon (a
401: another token). 5 processes doing that while making outgoing connections saw 3
EADDRINUSE in 10,000.

Here each xdist worker (`PYTEST_XDIST_WORKER`, gw0..gwN) has its own block of ports
below the ephemeral range, the controller (or a run without xdist) another, so neither
the kernel nor another worker hands out a port of this one's block. A process hands out
its block's ports in turn, starting at a random place in it (another clone's suite or a
subprocess with the same worker name starts elsewhere), so one port comes back only
once the block wrapped; each is checked free by a bind first (a port still held by an
earlier test's daemon, or by another program, is passed over).
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading

HOST = "127.0.0.1"
FIRST_PORT = 20000
"""The first port of the controller's block; the workers' blocks follow it."""
BLOCK_SIZE = 1000
BLOCKS = 12
"""Blocks from 20000 up to 31999, below the ephemeral range's 32768."""


def worker_block(worker: str | None) -> range:
    """The ports of one xdist worker (`gw3`), or of the controller (None or not `gwN`)."""
    index = 0
    if worker and worker.startswith("gw") and worker[2:].isdigit():
        index = 1 + int(worker[2:]) % (BLOCKS - 1)
    start = FIRST_PORT + index * BLOCK_SIZE
    return range(start, start + BLOCK_SIZE)


class PortBlock:
    """One process's turn through its block: each port once until the block wraps."""

    def __init__(self, ports: range, start: int) -> None:
        self._ports = ports
        self._turn = itertools.count(start)
        self._lock = threading.Lock()

    def next_free(self) -> int:
        for _ in range(len(self._ports)):
            with self._lock:
                port = self._ports[next(self._turn) % len(self._ports)]
            if is_free(port):
                return port
        raise RuntimeError(f"no free port in {self._ports.start}-{self._ports.stop - 1}")


def is_free(port: int) -> bool:
    """Nothing holds the port: a bind without SO_REUSEADDR (stricter than a server's
    own bind, so a port with connections still in TIME_WAIT is passed over too)."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


_block: PortBlock | None = None
_block_pid = 0
_block_lock = threading.Lock()


def _this_process_block() -> PortBlock:
    global _block, _block_pid
    with _block_lock:
        if _block is None or _block_pid != os.getpid():  # a forked child starts anew
            ports = worker_block(os.environ.get("PYTEST_XDIST_WORKER"))
            _block = PortBlock(ports, random.randrange(len(ports)))
            _block_pid = os.getpid()
        return _block


def free_port() -> int:
    """A loopback port nothing listens on, that no other worker of this run hands out."""
    return _this_process_block().next_free()
