"""Whether what a check's run raised is about its target or a bug of the check itself,
and where that bug is. No I/O.

Why: every exception out of a run was a failed probe, so a plugin's `KeyError` on a
healthy target's answer was evidence against the deploy, and could roll a good one back.
As Datadog's `AgentCheck` reports a check's exception as the check's own error, not the
service's, only what speaks of the target is its failure: a connection, a timeout, an
HTTP error (`TARGET_ERRORS`, and what a check adds in `Check.target_errors`); anything
else is the check's bug, left out of the evidence by the registry (`checks.registry`).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from checks.base import Check

TARGET_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, DNS, TLS, a socket's timeout
    TimeoutError,
)
"""What a run may raise about its target, whatever client it uses (besides the HTTP
clients' errors, `_CLIENTS`); a file system's error (`_FILE_ERRORS`, or any with a
`filename`) is the agent's side, not the target's."""

NOT_EVIDENCE = ": not evidence about the target, its run left out of it"
"""How a bug's result message ends (`checks.registry`): what a reader of it must know."""

_FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)

_CLIENTS = (
    ("aiohttp", "ClientError"),  # its connection, payload and HTTP status errors
    ("httpx", "HTTPError"),
    ("urllib3.exceptions", "HTTPError"),
    ("http.client", "HTTPException"),  # the standard library's (urllib's, a plugin's own)
)
"""The HTTP clients' base errors (a connection, a timeout, a status), looked up only once
imported: an exception of a client is raised only where it was imported, and reading a
configuration (which loads this module through the check types) must not import aiohttp
(`tests/e2e/test_cli_imports.py`), nor http.client (and the email package it parses
headers with: 8 ms of a `validate-config`'s CPU). requests' errors are `OSError`s already."""


def about_target(exc: BaseException, check: Check) -> bool:
    """Whether `exc`, out of `check`'s run, is the target's failure (a failed probe), not
    a bug of the check: one of `TARGET_ERRORS`, one of the HTTP clients' errors, or one
    of `check.target_errors`; for a group (a TaskGroup's), every one of its exceptions."""
    if isinstance(exc, BaseExceptionGroup):
        return all(about_target(e, check) for e in exc.exceptions)
    if isinstance(exc, OSError) and (isinstance(exc, _FILE_ERRORS) or exc.filename is not None):
        return False  # a file the check could not read (a certificate, its own data)
    return isinstance(exc, (*TARGET_ERRORS, *check.target_errors, *_client_errors()))


def _client_errors() -> Iterable[type[BaseException]]:
    for module, name in _CLIENTS:
        found = getattr(sys.modules.get(module), name, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            yield found


def raised_where(exc: BaseException, check: Check) -> str:
    """Where `exc` was raised, as `file.py:line in function`: the innermost frame in the
    check's own module (a library's frame below it is the plugin's call), else the
    innermost of all; "" without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    module = sys.modules.get(type(check).__module__)
    own = getattr(module, "__file__", None)
    chosen = frames[-1]
    if own is not None:
        mine = [f for f in frames if f.filename == own]
        if mine:
            chosen = mine[-1]
    return f"{Path(chosen.filename).name}:{chosen.lineno} in {chosen.name}"
