"""The `postflight` CLI in a process of its own, for the tests that stop it with a
signal (tests/cli): a signal's default action is the process's own, never pytest's."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import aiohttp

ROOT = Path(__file__).resolve().parents[1]

stopped_by_each_signal = pytest.mark.parametrize(
    ("sig", "word", "code"),
    [
        (signal.SIGTERM, "terminated", 143),
        (signal.SIGHUP, "hung up", 129),
        (signal.SIGINT, "interrupted", 130),
    ],
    ids=["SIGTERM", "SIGHUP", "SIGINT"],
)
"""A test run once for each signal that stops the CLI: what it says it was, and its exit
code (128 + the signal)."""


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without the POSTFLIGHT_* settings of the suite's own run, the
    checkout importable, and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFLIGHT")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def postflight(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m agent ARGS` run to its end, with `env` added to this process's
    environment (the config tests' `validate-config`)."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def validated_here(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`postflight(*args, env=env)` in this process (in `cwd`, if given): the CLI's `main`
    with `env` added to the environment (and taken away after) and its output captured,
    for a command that only reads its configuration and says what it found
    (`validate-config`; `run` or `check` refused at their configuration). A test of the
    words, not of the process, spared a Python start: 0.35 s of CPU, seconds of wall on a
    loaded machine. The suite's own POSTFLIGHT_* settings are taken away first, as
    `cli_env` leaves them out of a process's; the stop signals' handlers `run` sets and
    the log handlers it adds are put back after."""
    import logging

    from agent.cli.main import main
    from agent.cli.stop_signals import STOP_SIGNALS

    out, err = io.StringIO(), io.StringIO()
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    logged = list(logging.getLogger().handlers)
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
        for name in [name for name in os.environ if name.startswith("POSTFLIGHT")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        try:
            code = main(list(args))
        except SystemExit as ended:  # argparse's usage errors end the process so
            code = 0 if ended.code is None else ended.code if isinstance(ended.code, int) else 1
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            logging.getLogger().handlers[:] = logged
    return subprocess.CompletedProcess(["postflight", *args], code, out.getvalue(), err.getvalue())


async def awaited_cli(
    *argv: str, env: dict[str, str] | None = None, within: float = 60.0, cwd: Path | None = None
) -> tuple[int, str]:
    """`postflight *argv` in a process of its own, awaited, so the test's servers on this
    loop go on answering meanwhile: its exit code, and its stdout and stderr as one text.
    `env`: `cli_env()` unless given."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        *argv,
        cwd=cwd,
        env=cli_env() if env is None else env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def started_run(config: Path, log: Path) -> asyncio.subprocess.Process:
    """`postflight run --config config` in a process of its own, its output in `log`; the
    caller stops it (SIGTERM) and awaits it."""
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(config),
            env=cli_env(), stdout=out, stderr=out,
        )  # fmt: skip


async def stop_run(agent: asyncio.subprocess.Process) -> None:
    """A `started_run` agent stopped as an operator does (SIGTERM), if it still runs."""
    if agent.returncode is None:
        agent.send_signal(signal.SIGTERM)
        await asyncio.wait_for(agent.wait(), 30)


ENDED = frozenset({"passed", "failed", "rolled_back", "inconclusive", "cancelled", "superseded"})
"""The deploy object's states of an ended window (contract §2)."""


async def ended_deploy(
    http: aiohttp.ClientSession, url: str, deploy: dict[str, Any], *, rollback: bool = False
) -> dict[str, Any]:
    """`deploy` read from the agent at `url` every 0.1 s until its window ended (and, with
    `rollback`, its rollback is no longer `pending`: a failed window is `failed` while its
    rollback is on its way, contract §2), up to 60 s."""
    for _ in range(600):
        async with http.get(f"{url}/v1/deploys/{deploy['id']}") as r:
            deploy = await r.json()
        pending = rollback and (deploy.get("rollback") or {}).get("state") == "pending"
        if deploy["state"] in ENDED and not pending:
            return deploy
        await asyncio.sleep(0.1)
    raise AssertionError(f"the window did not end: {deploy}")


_READY_SCRIPT = """
import sys
from agent.deferred_ca import import_aiohttp_without_ca_certificates
import_aiohttp_without_ca_certificates()
import agent.cli.commands
from agent.cli.main import main
print("ready", flush=True)
sys.stdin.readline()
sys.exit(main(sys.argv[1:]))
"""


class ReadyCli:
    """`postflight *argv` in a process of its own, started and its client's modules
    imported ahead (`start`), run only when told (`run`): a test that must run a command
    inside a short phase of the agent's (a stop's wait for a rollback in flight) does not
    race a Python start and its imports, seconds on a loaded machine, against it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *argv: str, within: float = 60.0) -> ReadyCli:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _READY_SCRIPT,
            *argv,
            env=cli_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), within)
        assert line == b"ready\n", line
        return cls(proc)

    async def run(self, within: float = 60.0) -> tuple[int, str]:
        """Its exit code, and its stdout and stderr as one text (as `awaited_cli`)."""
        out, _ = await asyncio.wait_for(self.proc.communicate(b"go\n"), within)
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(errors="replace")

    async def close(self) -> None:
        """Ended, if never run."""
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@contextmanager
def sigint_at_default() -> Iterator[None]:
    """SIGINT at its default in a process started inside, whatever this process inherited:
    a suite started in the background of a script (`pytest &`, nohup) ignores it, and so
    did each process it started (exec keeps an ignored signal), the CLI too, which then
    waited out the window."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, inherited)


@contextmanager
def stopped_as_the_block_ends(
    agent: subprocess.Popen[bytes],
    log: Path,
    sig: signal.Signals = signal.SIGTERM,
    within: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """`agent` (a `postflight run` started, its output in `log`), stopped by `sig` as the
    block ends, which must end it with exit 0 within `within` seconds; killed if the block
    raised, so no test leaves a daemon behind."""
    try:
        yield agent
        agent.send_signal(sig)
        assert agent.wait(timeout=within) == 0, log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def start_cli(*argv: str) -> subprocess.Popen[bytes]:
    """`postflight *argv`, its output piped, SIGINT at its default."""
    with sigint_at_default():
        return subprocess.Popen(
            [sys.executable, "-m", "agent", *argv],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
