"""`postflight`'s exit codes (contract §1), once: every command returns one of these, and
each says the one it ends with (`ended`, `error_line`, `stopped_line`)."""

from __future__ import annotations

EXIT_OK = EXIT_PASSED = 0
EXIT_FAILED = 1
"""The verdict failed or the deploy was rolled back (or `check` found a failing check)."""
EXIT_CRASHED = 1
"""`run` ended by an unexpected error (a bug): said as a log record, exit 1 as Python's own."""
EXIT_USAGE = 2
"""Bad flags, configuration, connection or auth: one line on stderr says which."""
EXIT_INCONCLUSIVE = 3
"""No verdict: inconclusive, cancelled, superseded, or `--wait` gave up."""
EXIT_HUNG_UP = 129
"""SIGHUP (the session closed): 128 + 1; `register --wait` says so first."""
EXIT_INTERRUPTED = 130
"""CTRL-C (SIGINT): 128 + 2, as a shell reports it."""
EXIT_TERMINATED = 143
"""SIGTERM (a pipeline's job cancelled): 128 + 15; `register --wait` says so first."""


def ended(words: str, code: int) -> str:
    """`register`'s end line, `words` then the exit code it ends with (`cancelled: no
    verdict (exit 3)`): each outcome says its code the same way, where only cancelled and
    superseded did, and a pipeline's log showed `failed: …` with no word of the 1 it ended
    with (the codes are `agent.cli.commands`', as the contract gives them)."""
    return f"{words} (exit {code})"


def error_line(command: str, message: str, code: int = EXIT_USAGE) -> str:
    """A command's error end, `postflight status: error: no deploy dep_… (exit 2)`, as
    `register` says its own: `status`, `rollback` and `check` said `postflight status: …`
    with no word of the code, and their argparse errors `postflight: error: …`."""
    return f"postflight {command}: {ended(f'error: {message}', code)}"


def stopped_line(command: str, words: str, code: int) -> str:
    """A command a signal stopped, `postflight check: terminated before its checks ended:
    nothing judged (exit 143)`, the code said as `register` says its own."""
    return f"postflight {command}: {ended(words, code)}"
