"""When an answer's bytes reached this machine, as the kernel stamped them: where a probe's
latency ends (`checks.wire.Parsed.done_at`: not when the agent's loop got to them), and
how long they then waited for that loop, to a few microseconds.

Why: the heartbeat (`checks.lag.LoopLag.read_delay`) bounds that wait only to its beat
(10 ms), and a service answering in 2 ms cannot be told apart, by that bound, from a loop
blocked a few ms at each answer (an A/A to hold as the agent's) and the same service at
4 ms (a latency x2 to roll back). Linux stamps each received packet when asked
(`SO_TIMESTAMPNS`) and hands the stamp of the last one a `recvmsg` consumed with the
bytes. asyncio's selector transports read with `sock.recv` on the socket they were given,
so a socket whose `recv` is a `recvmsg` keeps that stamp; uvloop reads the descriptor
itself, so the lean client reads a duplicate of it instead (`checks.wire._Conn.read_own`).
`SIOCGSTAMPNS` is not filled for TCP (ENOENT), nor is `TCP_INFO`'s last receive finer
than a jiffy (4 ms here). Elsewhere (not Linux) the heartbeat's bound stays.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = 35
"""Linux's (asm-generic, x86, arm): a `struct timespec` of the receive time with each read."""

PAD_S = 0.00005
"""Added to each wait measured, and to each arrival a latency ends at: the system clock
the stamp is on and the monotonic one the agent times with are read apart (NTP's slew
moves both alike; only a step moves one), and a measure must never be short (the agent's
delay taken for the target's, or the target's time cut)."""

STEP_S = 0.00002
"""A move of the system clock against the monotonic one by more than this, between two
reads of both, is taken for a step (an NTP step, a VM resumed, a leap second): under
`PAD_S`, so a smaller step unseen still leaves no measure short."""


TIGHT_S = 0.00001
"""A bracket of the system clock's read by the monotonic one this wide or less is taken
(a read is some 0.1 µs here; a preempted one, milliseconds)."""

LOOKS = 4
"""How many brackets `_Clocks.look` reads at most for one under `TIGHT_S`."""


class _Clocks:
    """The system clock's offset from the monotonic one (the least and the most it can be:
    `time.time()` read between two `time.perf_counter()`, narrowed by each read since the
    last step), and when it was last seen to step, back or forth (`time.perf_counter()`;
    -inf: never)."""

    offset: tuple[float, float] | None = None
    stepped_at = float("-inf")

    @classmethod
    def look(cls) -> tuple[float, float, float]:
        """(monotonic before, system, monotonic after), read now; a step since the last
        look is noted (`stepped_since`). The two monotonic reads bound when the system
        clock was read: a thread preempted between them (the CPU or the GIL lost for
        milliseconds on a loaded machine) widens the bounds, never moves an arrival to
        the wrong side of the truth; a bracket wider than `TIGHT_S` is read again (the
        tightest of `LOOKS`), or an arrival 20 ms after its request reads as before it
        (its stamp refused, a stalled loop's read time kept, CI)."""
        before = time.perf_counter()
        wall = time.time()
        after = time.perf_counter()
        for _ in range(LOOKS - 1):
            if after - before <= TIGHT_S:
                break
            again = time.perf_counter()
            wall_again = time.time()
            after_again = time.perf_counter()
            if after_again - again < after - before:
                before, wall, after = again, wall_again, after_again
        least, most = wall - after, wall - before
        last = cls.offset
        if last is not None and (most < last[0] - STEP_S or least > last[1] + STEP_S):
            cls.stepped_at = before
        elif last is not None and max(least, last[0]) <= min(most, last[1]):
            # no step: the offset is in both brackets, so in their overlap, which a step
            # past `STEP_S` leaves (kept as the last bracket, a wide one let a step inside
            # it go unseen: one stalled look's 20 ms hid a 10 ms step, a latency 10 ms short)
            least, most = max(least, last[0]), min(most, last[1])
        cls.offset = (least, most)
        return before, wall, after


def stepped_since(since: float) -> bool:
    """Whether the system clock was seen to step (back or forth) after `since`
    (`time.perf_counter()`): a receive stamp taken before that step and read after it is
    off by as much as the step (a wait, or a latency, too short), so no stamp read since
    `since` is to be trusted. A step is seen at the first look after it, and each socket
    looks as it is made (`StampedSocket`): one between a request's write and its answer's
    read is seen by the time the answer is read."""
    return _Clocks.stepped_at > since


_ANCILLARY = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0


def stamps_on(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a connection of `loop` can keep kernel receive stamps: Linux, and a loop
    whose transports read with `sock.recv` (asyncio's selector loops; not uvloop)."""
    return (
        sys.platform == "linux"
        and _ANCILLARY > 0
        and isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
    )


def own_stamps_on(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a connection of `loop` can keep kernel receive stamps by reading a duplicate
    of its socket itself (`checks.wire._Conn.read_own`): Linux, and any other loop with
    readers (uvloop, whose transports read the descriptor themselves)."""
    return sys.platform == "linux" and _ANCILLARY > 0 and not stamps_on(loop)


class StampedSocket(socket.socket):
    """A TCP socket whose `recv` keeps when the last byte it returned reached the machine,
    on `time.perf_counter()`'s clock: `arrived`, the earliest it can have been (a wait
    measured from it is never short), and `landed`, the latest (a latency ended at it is
    never short); 0.0: not known (`arrived`: since `forget`; `landed`: the last read came
    with no stamp)."""

    __slots__ = ("arrived", "landed")

    def __init__(self, family: int, kind: int, proto: int, fileno: int | None = None) -> None:
        super().__init__(family, kind, proto, fileno)
        self.arrived = 0.0
        self.landed = 0.0
        self.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        _Clocks.look()  # a step from now on is seen at the first stamp read (`stepped_since`)

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        data, ancillary, _, _ = self.recvmsg(bufsize, _ANCILLARY, flags)
        self.landed = 0.0  # this read's own stamp, or none
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                self._stamp(value)
        return data

    def _stamp(self, value: bytes) -> None:
        if len(value) >= 16:
            sec, ns = struct.unpack_from("qq", value)
        elif len(value) >= 8:  # a 32-bit system's timespec
            sec, ns = struct.unpack_from("ii", value)
        else:
            return
        if not sec:
            return  # no stamp (the packet came before stamping was on)
        # the stamp is on the system clock: how long ago, on the monotonic one, whose reads
        # before and after the system's bound it (after a step, back or forth, this is
        # wrong, even in the future: the reader takes the read time or the heartbeat's
        # bound instead, `checks.wire._Conn.on_message_complete`)
        before, wall, after = _Clocks.look()
        ago = wall - (sec + ns * 1e-9)
        self.arrived = before - ago - PAD_S
        self.landed = after - ago + PAD_S

    def forget(self) -> None:
        """A new request: the next answer's stamps are its own."""
        self.arrived = 0.0
        self.landed = 0.0


async def connect_stamped(loop: asyncio.AbstractEventLoop, host: str, port: int) -> StampedSocket:
    """A connected non-blocking `StampedSocket` to `host:port`: each address the name
    resolves to in turn, as `loop.create_connection` tries them, and the same error when
    none answers (one address's own, else "Multiple exceptions: ...")."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = StampedSocket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if not errors:
        raise OSError("getaddrinfo() returned empty list")
    if len(errors) == 1 or len({str(exc) for exc in errors}) == 1:
        raise errors[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(exc) for exc in errors)}")
