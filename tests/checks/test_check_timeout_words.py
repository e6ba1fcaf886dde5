"""A check's run that times out is logged as a timeout, not as a crash: a plugin whose
own client gave up on a target that stopped answering (aiohttp's `SocketTimeoutError`, a
`TimeoutError`) was logged `check slow (slow) crashed in environment production: check did
not finish within 6s` after 50 ms, and a run the registry's net cut at its limit
`... crashed in environment ...` at DEBUG."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
import pytest
from aiohttp import web

from checks import registry
from checks.base import Check, CheckConfig, CheckContext, CheckResult, Sample
from checks.registry import run_check
from checks.sessions import TargetSessions
from checks.spells import RaisingSpells


class SlowConfig(CheckConfig):
    type: Literal["slow"] = "slow"


class SlowCheck(Check):
    """A plugin whose client reads the target's answer for at most 50 ms."""

    type = "slow"
    Config = SlowConfig

    async def run(self, ctx: CheckContext) -> CheckResult:
        limit = aiohttp.ClientTimeout(sock_read=0.05)
        async with ctx.session.get(ctx.base_url + "/health", timeout=limit) as answer:
            await answer.read()
        sample = Sample(check=self.name, ok=True, status=answer.status, target=ctx.target)
        return CheckResult(self.name, self.type, True, (sample,), str(answer.status))


@pytest.fixture
async def silent_target() -> AsyncIterator[str]:
    """A target that takes the request and answers only after the test."""
    stop = asyncio.Event()

    async def health(request: web.Request) -> web.Response:
        await stop.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site.port
    yield f"http://127.0.0.1:{port}"
    stop.set()
    await runner.cleanup()


@pytest.fixture
def no_spells(monkeypatch: pytest.MonkeyPatch) -> RaisingSpells:
    fresh = RaisingSpells(registry.log)
    monkeypatch.setattr(registry, "_spells", fresh)
    return fresh


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "checks.registry"]


async def _run_logged(check: Check, target: str, caplog: pytest.LogCaptureFixture) -> CheckResult:
    """One run of `check` in `production` against `target`, its log lines captured."""
    async with TargetSessions() as sessions:
        ctx = CheckContext(
            base_url=target, session=sessions.get(target, True), environment="production"
        )
        with caplog.at_level(logging.DEBUG, logger="checks.registry"):
            return await run_check(check, ctx)


async def test_a_plugins_own_timeout_is_logged_as_a_timeout(
    silent_target: str, no_spells: RaisingSpells, caplog: pytest.LogCaptureFixture
) -> None:
    check = SlowCheck(SlowConfig(name="slow"))
    result = await _run_logged(check, silent_target, caplog)
    (sample,) = result.samples
    assert not result.ok and sample.error == "timeout" and not result.bug
    # the check's own 50 ms, not the registry's limit it never reached
    assert result.message.startswith("check timed out after "), result.message
    assert "did not finish within" not in result.message, result.message
    assert "SocketTimeoutError" in result.message, result.message
    warnings = [text for level, text in _said(caplog) if level == logging.WARNING]
    assert len(warnings) == 1, _said(caplog)
    assert warnings[0].startswith(
        "check slow (slow) timed out in environment production: SocketTimeoutError"
    ), warnings[0]
    assert "crash" not in warnings[0], warnings[0]


async def test_a_run_cut_at_its_limit_is_logged_as_a_timeout(
    silent_target: str,
    no_spells: RaisingSpells,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Hangs(SlowCheck):
        async def run(self, ctx: CheckContext) -> CheckResult:
            async with ctx.session.get(ctx.base_url + "/health") as answer:
                await answer.read()
            raise AssertionError("unreachable")

    monkeypatch.setattr(registry, "TIMEOUT_MARGIN_S", 0.05)
    check = Hangs(SlowConfig(name="slow", timeout=0.05))
    result = await _run_logged(check, silent_target, caplog)
    assert result.message == "check did not finish within 0.1s"
    said = _said(caplog)
    assert [level for level, _ in said] == [logging.DEBUG], said
    assert said[0][1] == (
        "check slow (slow) timed out in environment production: check did not finish within 0.1s"
    ), said
