"""A reader that leaves early (`postflight status | head -2`): no traceback, and the
command's own exit code, not Python's 1 or 120."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from agent.cli.pipe import PipeGuard


def test_a_closed_pipe_ends_the_output_quietly_with_the_commands_own_code() -> None:
    """`python -m agent schema` writes far more than a pipe holds; its reader is gone
    before the first byte."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "schema"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader leaves
    errors = process.stderr.read().decode()
    assert process.wait(timeout=30) == 0, errors
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors


class _Closed(io.StringIO):
    """A stream whose reader has gone after `room` characters."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, text: str) -> int:
        if self.tell() + len(text) > self.room:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_after_a_broken_pipe_every_write_is_dropped_and_none_raises() -> None:
    stream = _Closed(room=6)
    guard = PipeGuard(stream)
    assert guard.write("abc") == 3
    assert guard.write("defgh") == 5  # past the room: dropped, not raised
    assert guard.broken
    guard.write("more")
    guard.flush()
    assert stream.getvalue() == "abc"


def test_a_closed_error_stream_keeps_the_commands_own_exit_code(tmp_path: Path) -> None:
    """`postflight validate-config x.yaml 2>&1 | head -1` in a pipeline with pipefail:
    the errors' reader is gone, and the exit code is still the contract's 2 (it was 1:
    Python's own, after 'lost sys.stderr')."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: {}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "validate-config", str(broken)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    process.stderr.close()  # the reader leaves before the first error
    assert process.wait(timeout=30) == 2


def test_an_output_that_cannot_encode_a_character_keeps_the_commands_own_exit_code(
    tmp_path: Path,
) -> None:
    """Tables and summaries use `…`, `—`, `✓`; on a stdout whose encoding lacks them
    (`PYTHONIOENCODING=ascii`, a latin-1 locale) `validate-config` ended in a
    UnicodeEncodeError traceback and exit 1 instead of saying `valid`, exit 0."""
    config = tmp_path / "postflight.yaml"
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        "environments: {production: {base_url: 'http://127.0.0.1:9'}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "agent", "validate-config", str(config)],
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    assert done.stdout.startswith(f"{config}: valid ? environments: production".encode())
