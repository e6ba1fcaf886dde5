"""`postflight demo` stopped by a signal says it in the CLI's words (`common.stop_words`)."""

from __future__ import annotations

import signal

import pytest

from agent.cli.stop_signals import Terminated, stopped_by
from agent.demo import _stopped


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_demo_says_a_stop_as_the_cli_does(
    sig: signal.Signals, capsys: pytest.CaptureFixture[str]
) -> None:
    words, code = stopped_by(Terminated(sig))
    assert _stopped(sig) == code == 128 + sig
    said = capsys.readouterr().err
    removed = f"its agent stopped and its temp dir removed (exit {code})"
    assert said == f"\npostflight demo: {words}; {removed}\n"
    assert words in {"interrupted", "terminated", "hung up"}
