"""One headless Chromium process that tests reach over the DevTools protocol.

Launching a browser (Playwright's `launch_persistent_context`) for each test cost the
browser tests a Chromium start and shutdown each, 2-6 s on this machine. The process
here is started once (per module, `tests/web/conftest.py`) without Playwright, so it
belongs to no event loop: each test, on its own function-scoped loop, connects with
`connect_over_cdp` and opens fresh browser contexts, which share no cookies, storage or
cache with another test's (an incognito profile each).
"""

from __future__ import annotations

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
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ChromiumProcess:
        self._dir = tempfile.TemporaryDirectory(prefix="postflight-chromium-")
        profile = Path(self._dir.name)
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
        output = (Path(self._dir.name) / "chromium.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"chromium did not open its DevTools port:\n{output}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
