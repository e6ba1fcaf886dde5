"""One headless Chromium process that tests reach over the DevTools protocol.

Launching a browser (Playwright's `launch_persistent_context`) for each test cost the
browser tests a Chromium start and shutdown each, 2-6 s on this machine. The process
here is started once (per module, `tests/web/conftest.py`) without Playwright, so it
belongs to no event loop: each test, on its own function-scoped loop, connects with
`connect_over_cdp` and opens fresh browser contexts, which share no cookies, storage or
cache with another test's (an incognito profile each).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

READY_WITHIN_S = 30.0
"""How long Chromium may take to open its DevTools port (seconds on a loaded machine)."""


class ChromiumProcess:
    """`/usr/bin/chromium --headless --remote-debugging-port=0` with its own profile
    directory; `endpoint` is the browser's DevTools websocket once `start` returns."""

    def __init__(self, binary: str, args: list[str]) -> None:
        self.binary = binary
        self.args = args
        self.endpoint = ""
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ChromiumProcess:
        self._dir = Path(tempfile.mkdtemp(prefix="postflight-chromium-"))
        profile = self._dir
        log = (profile / "chromium.log").open("wb")
        self._proc = subprocess.Popen(
            [
                self.binary,
                *self.args,
                f"--user-data-dir={profile / 'profile'}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",  # Chromium picks a free port and writes it down
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its helper processes in one group, stopped together
        )
        log.close()
        try:
            self.endpoint = self._wait_for_port(profile / "profile" / "DevToolsActivePort")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self, announced: Path) -> str:
        """Chromium writes its port and browser path to `DevToolsActivePort` once it
        listens: the endpoint, from Chromium's own word rather than a fixed wait."""
        assert self._proc is not None and self._dir is not None
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            lines = announced.read_text().splitlines() if announced.exists() else []
            if len(lines) >= 2 and lines[0].isdigit():
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        output = (self._dir / "chromium.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"chromium did not open its DevTools port:\n{output}")

    def stop(self) -> None:
        """Stop Chromium and every helper process it started (its process group), then
        delete its profile. Stopping only the browser process left a helper writing into
        the profile while it was deleted ("Directory not empty", seen in a CI run)."""
        if self._proc is not None:
            group = self._proc.pid  # its own session: the group's id is its pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)  # a helper that outlived the browser
        self._proc = None
        if self._dir is not None:
            _remove(self._dir)
            self._dir = None


def _remove(directory: Path) -> None:
    """Delete `directory`; a helper killed a moment ago may still be letting go of a file
    in it, so try again for up to 5 s before giving up loudly."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            shutil.rmtree(directory)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
