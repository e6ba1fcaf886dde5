"""The demo's agent, in a process of its own: `python -m agent.demo_agent CONFIG_FILE`.

Why a process: `postflight demo` also runs the service being deployed, the rollback
receiver, the chat sink and the pipeline that polls the agent. When they shared the agent's
event loop (and its interpreter), every millisecond they took on a busy machine was a
millisecond the agent was not listening; it then drops the probes it could not time
(`checks.lag`, as designed), and at load average 12 on two cores the good deploy ended
`inconclusive`. Here the agent's loop does only the agent's work, served as `postflight
run` serves it (`agent.app.serve`, on uvloop when installed, the collector tuned).

Self-contained as the demo is: the config file is the demo's, read with no environment
overrides, and no `SENTRY_DSN` is read. It stops on SIGTERM or SIGINT, and when its
standard input closes: the demo holds it open, so a demo killed outright leaves no agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

POLL_INTERVAL_S = 0.2
"""How often the demo's agent looks for new windows (the daemon's 1 s would add up to a
second to each of the demo's 12 s windows)."""


def main(argv: Sequence[str]) -> int:
    from agent.cli.config_commands import run_daemon
    from agent.settings_file import load_settings_text

    if len(argv) != 1:
        print("usage: python -m agent.demo_agent CONFIG_FILE", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR, format="  log: %(message)s")
    settings = load_settings_text(Path(argv[0]).read_text(), source="demo config", env={})

    async def serve_until_stopped() -> None:
        from agent.app import serve

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        stdin = sys.stdin.fileno()
        watching = stat.S_ISFIFO(os.fstat(stdin).st_mode)  # the demo's pipe, not a terminal

        def parent_gone() -> None:
            try:
                data = os.read(stdin, 4096)
            except BlockingIOError:
                return
            if not data:
                loop.remove_reader(stdin)
                stop.set()

        if watching:
            os.set_blocking(stdin, False)
            loop.add_reader(stdin, parent_gone)
        try:
            await serve(
                settings,
                stop,
                on_listening=said_on_stdout,
                poll_interval=POLL_INTERVAL_S,
                owner="demo",
                environ={},
            )
        finally:
            if watching:
                loop.remove_reader(stdin)

    run_daemon(serve_until_stopped())
    return 0


def said_on_stdout(base: str) -> None:
    """The agent's address (the port `listen: 127.0.0.1:0` took), one line on standard
    output, the demo's pipe (`agent.demo.agent_address`)."""
    print(base, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
