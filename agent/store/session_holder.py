"""Who holds a replica id's PostgreSQL session, as its `application_name` says, and
whether that holder is a process of this host that has died.

Why: an agent restarted at once after a kill -9 (systemd `Restart=always`, a pod's
restart) may find its id still held by its own predecessor's session, which the server
ends only once it hears of the client's end: at once when the socket's close arrives,
at the keepalives' end when it was lost (a proxy, a partition). Refused as if another
live agent held the id, it exited 2. The session's name carries the holder's pid, its
start (clock ticks since boot, so a pid used again is not taken for it) and where it ran
(a hash of the hostname, the kernel's boot id and the pid namespace: only there can its
pid be looked up); a holder named from here whose process is gone is dead.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from dataclasses import dataclass

NAME_MAX = 63
"""PostgreSQL keeps this many bytes of an `application_name` (NAMEDATALEN - 1)."""

_PROOF = re.compile(r" pid (\d+) @(\d+)\.([0-9a-f]{8})$")


@dataclass(frozen=True)
class Holder:
    """A process holding a replica id's session: its pid, its start in clock ticks
    since boot, and the place it runs (`_place`)."""

    pid: int
    started: int
    place: str


def _started(pid: int) -> int | None:
    """`pid`'s start (clock ticks since boot), None when no live process has that pid
    here (a zombie's sockets are closed: it is gone as a holder)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


@functools.cache
def _place() -> str | None:
    """Where this process's pids mean something: None where the kernel does not say
    (not Linux), so no holder is ever judged dead."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    where = f"{socket.gethostname()}\n{boot_id}\n{namespace}"
    return hashlib.sha256(where.encode()).hexdigest()[:8]


def this_process() -> Holder | None:
    place, started = _place(), _started(os.getpid())
    if place is None or started is None:
        return None
    return Holder(os.getpid(), started, place)


def session_name(replica_id: str, me: Holder | None = None) -> str:
    """The `application_name` of the session `me` (this process by default) holds
    `replica_id` on: `postflight <id> pid <pid>`, then the proof (`@<start>.<place>`),
    which is kept whole: a long id is cut instead, and one outside printable ASCII shown
    with `?` (the server escapes such bytes, which would push the proof past `NAME_MAX`)."""
    shown = "".join(c if " " <= c <= "~" else "?" for c in replica_id)
    me = me or this_process()
    if me is None:
        return f"postflight {shown} pid {os.getpid()}"[:NAME_MAX]
    tail = f" pid {me.pid} @{me.started}.{me.place}"
    return f"postflight {shown}"[: NAME_MAX - len(tail)] + tail


def shown_name(application_name: str) -> str:
    """`application_name` as a person reads it: without the proof."""
    found = _PROOF.search(application_name)
    return application_name[: found.start()] + f" pid {found[1]}" if found else application_name


def named_holder(application_name: str) -> Holder | None:
    """The holder a session's name gives, None when it gives none (an older agent's)."""
    found = _PROOF.search(application_name)
    if found is None:
        return None
    return Holder(int(found[1]), int(found[2]), found[3])


def dead_here(holder: Holder) -> bool:
    """True when `holder` ran here and no longer runs: its pid gone, or now another
    process's. A holder from elsewhere (another host, a container's own pid namespace)
    is never judged dead: its liveness cannot be seen from here."""
    return holder.place == _place() and _started(holder.pid) != holder.started
