"""What `postflight run` loads: what every window needs at start (numpy and the judge, the
store, the web server; scipy where a sequential or fixed policy is configured), the rest
at its first use. scipy (those policies' distributions), apprise with its plugins and
requests (alert channels) and Jinja2 (the deploy pages) cost about 0.3 s of CPU a start
together, paid again by every restart and by every test that starts the daemon as a
process; a daemon that judges with the threshold policy, has no alert channel and shows no
page uses none of them. Nor does one whose configuration names no https URL read the CA
bundle (`agent.deferred_ca`) until it makes an https request.

Each case runs the real `postflight run` in a fresh interpreter, drives it through its
API, stops it with SIGTERM and reads `sys.modules` as it exits: a behaviour, not a timing.
The second case is the control: there the same modules do load, where they are used, and
the alert and the page they make arrive.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import THRESHOLD, TOKEN, environment
from tests.e2e.crash import free_port
from tests.e2e.test_cli_imports import ROOT, _env, _loaded
from tests.receivers import JsonSink, alert_titled

pytestmark = pytest.mark.e2e

RUN_DAEMON = """
import json, sys
from agent.cli.main import main
code = main(["run", "--config", sys.argv[1]])
from aiohttp import connector
read = connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509"]
with open(sys.argv[2], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules), "ca_certificates": read}, out)
"""

AT_FIRST_USE = ("scipy", "apprise", "requests", "jinja2")
"""Loaded by the daemon only where it uses them (see the module's docstring)."""
NEVER_UNASKED = ("sentry_sdk", "newrelic", "asyncpg", "jsonpath_ng")
"""Loaded only with their configuration (a DSN, a license key, a postgres store, a check
that names a JSON key: `expect.json` or a smoke step's `capture`)."""
EVERY_WINDOW = ("numpy", "agent.analysis.judge", "aiosqlite", "aiohttp.web")
"""What a daemon that judged a window has loaded: the dump is from one."""
NUMPY_UNUSED = ("numpy.f2py", "numpy.testing")
"""numpy's submodules scipy.special's copy of numpy's namespace loaded as it was made
(about 100 ms of CPU a start), which no window uses (`agent.analysis.scipy_special`)."""


class Daemon:
    """`postflight run` on a configuration, as its own process, and its API."""

    def __init__(self, tmp_path: Path, environments: str, extra: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "postflight.yaml"
        self.config.write_text(
            f"server:\n  listen: 127.0.0.1:{self.port}\n  api_tokens: [{TOKEN}]\n"
            f"store:\n  url: sqlite:///{tmp_path / 'postflight.db'}\n"
            + extra
            + "environments:\n"
            + "".join(f"  {line}\n" for line in environments.splitlines())
        )
        self.report = tmp_path / "modules.json"
        self.log = tmp_path / "agent.log"
        self.headers = {"Authorization": f"Bearer {TOKEN}"}
        self.proc: asyncio.subprocess.Process | None = None
        self.ca_certificates: int | None = None
        """The certificates aiohttp's verifying TLS context held as the daemon exited."""
        self.http = aiohttp.ClientSession()

    def env(self) -> dict[str, str]:
        env = _env(self.report.parent)
        for name in ("SENTRY_DSN", "NEW_RELIC_LICENSE_KEY"):  # none: see NEVER_UNASKED
            env.pop(name, None)
        return env

    async def start(self, within: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                RUN_DAEMON,
                str(self.config),
                str(self.report),
                cwd=ROOT,
                env=self.env(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            assert self.proc.returncode is None, self.log.read_text()
            try:
                async with self.http.get(f"{self.url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("the daemon was not ready in time")

    async def settled(self, environment: str, within: float = 30.0) -> dict[str, Any]:
        """Register a deploy and wait for its final state."""
        body = {"environment": environment, "version": "v2"}
        async with self.http.post(f"{self.url}/v1/deploys", json=body, headers=self.headers) as r:
            deploy: dict[str, Any] = await r.json()
            assert r.status == 201, deploy
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while deploy["state"] in ("watching", "scheduled"):
            assert loop.time() < deadline, f"gave up waiting; last seen: {deploy}"
            await asyncio.sleep(0.1)
            async with self.http.get(
                f"{self.url}/v1/deploys/{deploy['id']}", headers=self.headers
            ) as r:
                deploy = await r.json()
        return deploy

    async def modules(self) -> list[str]:
        """Stop it as SIGTERM does; the modules it had loaded."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(self.proc.wait(), 30) == 0, self.log.read_text()
        report: dict[str, Any] = json.loads(self.report.read_text())
        assert report["code"] == 0, self.log.read_text()
        self.ca_certificates = report["ca_certificates"]
        modules: list[str] = report["modules"]
        return modules

    async def close(self) -> None:
        await self.http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def daemons(tmp_path: Path) -> AsyncIterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        await daemon.close()


def _nothing_listens() -> str:
    """A base URL whose every probe is refused: the deploy fails within a few rounds."""
    return f"http://127.0.0.1:{free_port()}"


async def test_a_threshold_window_without_channels_or_pages_loads_none_of_them(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    daemon = Daemon(tmp_path, environment("production", _nothing_listens(), analysis=THRESHOLD))
    daemons.append(daemon)
    await daemon.start()
    deploy = await daemon.settled("production")
    assert deploy["state"] == "failed"  # judged to the end, and its alerts went nowhere
    modules = await daemon.modules()
    assert _loaded(modules, EVERY_WINDOW) == sorted(EVERY_WINDOW)
    assert _loaded(modules, AT_FIRST_USE + NEVER_UNASKED) == []
    # no https URL configured, no https request: the CA bundle went unread (failed
    # before: the start read it, 144 certificates)
    assert daemon.ca_certificates == 0


async def test_they_load_where_they_are_used_and_do_their_work(
    daemons: list[Daemon], tmp_path: Path, json_sink: JsonSink
) -> None:
    """The sequential policy (the default), a channel, a page."""
    alerting = f"alerting:\n  channels:\n    - url: {json_sink.url()}\n"
    daemon = Daemon(
        tmp_path,
        environment("production", _nothing_listens(), window="5s", probes=10, analysis=None),
        alerting,
    )
    daemons.append(daemon)
    await daemon.start()
    deploy = await daemon.settled("production")
    assert deploy["state"] == "failed"
    await alert_titled(json_sink, "production")  # the channel took it
    page = f"{daemon.url}/deploys/{deploy['id']}"
    async with daemon.http.get(page, headers=daemon.headers) as r:
        assert r.status == 200
        assert deploy["id"] in await r.text()
    modules = await daemon.modules()
    assert _loaded(modules, AT_FIRST_USE) == sorted(AT_FIRST_USE)
    assert _loaded(modules, NEVER_UNASKED) == []
    assert _loaded(modules, NUMPY_UNUSED) == []  # a window judged with scipy.special


async def test_a_judging_policy_loads_its_distributions_before_it_answers(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    """scipy.special is loaded as the daemon starts, not by its first registration: there
    its import (0.7 s of CPU here; 2 s of wall at load 13) ran on the event loop after the
    deploy's `deployed_at` was fixed (the registration's warnings ask the judge), so the
    first window's first rounds passed over (`slot` 1, 2 or 4 first) and every running
    probe stalled behind it."""
    daemon = Daemon(tmp_path, environment("production", _nothing_listens(), analysis=None))
    daemons.append(daemon)
    await daemon.start()  # ready, and never asked for a deploy
    modules = await daemon.modules()
    assert _loaded(modules, ("scipy.special",)) == ["scipy.special"]
    assert _loaded(modules, NUMPY_UNUSED) == []  # failed before: both
