"""What a stop signal is said as when it ends a command ("postflight demo: terminated"):
one wording for the CLI's commands (`agent.cli.stop_signals`) and the demo (`agent.demo`),
which the CLI imports and so cannot import from it."""

from __future__ import annotations

import signal

STOPPED_WORDS: dict[int, str] = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated",
    signal.SIGHUP: "hung up",
}
"""By signal number: CTRL-C's SIGINT, a pipeline's SIGTERM, a closed session's SIGHUP."""
