"""A deadline met late: the process was stopped (SIGSTOP, a VM paused) or its loop stalled,
and every timer fired at once on waking. An answer that came meanwhile sits unread in a
socket (read within milliseconds of waking), where the deadline, run first, took it for
no answer and the rollback or alert went out again. Both senders (`agent.rollback.delivery.
answered_within`, `alerting.notifier`) give such a send one short look first, by these."""

from __future__ import annotations

LATE_S = 0.25
"""How late a deadline may be met before it says the process was stopped, not that the
other side was slow."""

WOKEN_LOOK_S = 0.5
"""How long a send whose deadline was met `LATE_S` late is given, once, to read what is
already in its socket."""
