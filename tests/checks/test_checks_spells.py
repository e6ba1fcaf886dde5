"""A check whose runs raise about its target logs once a spell (`checks.spells`): a WARNING
as the target goes away, one line as it comes back, however many probes failed between;
each of those probes still a failed probe."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import pytest
from aiohttp import web

from checks import registry, spells
from checks.base import Check, CheckConfig, CheckContext, CheckResult, Sample
from checks.registry import run_check
from checks.sessions import TargetSessions
from checks.spells import SPELL_QUIET_S, SPELL_REMIND_S, RaisingSpells
from tests.ports import free_port


class FetchConfig(CheckConfig):
    type: Literal["fetch"] = "fetch"


class FetchCheck(Check):
    """A plugin that lets its client's errors out (aiohttp's: about the target)."""

    type = "fetch"
    Config = FetchConfig

    async def run(self, ctx: CheckContext) -> CheckResult:
        async with ctx.session.get(ctx.base_url + "/health") as answer:
            await answer.read()
        ok = answer.status == 200
        sample = Sample(check=self.name, ok=ok, status=answer.status, target=ctx.target)
        return CheckResult(self.name, self.type, ok, (sample,), str(answer.status))


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


class Target:
    """A local service on a port of its own that can go away and come back on it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        app = web.Application()
        app.router.add_get("/health", _health)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
        self.runner = None


@pytest.fixture
def no_spells(monkeypatch: pytest.MonkeyPatch) -> RaisingSpells:
    """The registry's spells are the process's: this test's are its own."""
    fresh = RaisingSpells(registry.log)
    monkeypatch.setattr(registry, "_spells", fresh)
    return fresh


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "checks.registry" and r.levelno >= logging.INFO]


async def _round(check: Check, ctx: CheckContext, probes: int = 40) -> list[CheckResult]:
    return list(await asyncio.gather(*(run_check(check, ctx) for _ in range(probes))))


async def test_a_target_going_away_and_back_is_one_warning_and_one_line_not_one_a_probe(
    no_spells: RaisingSpells,
    sessions: TargetSessions,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, each of the 80 probes of the target's two rounds away was a WARNING
    (`check fetch (fetch) crashed in environment production: …`), and its return said
    nothing. The spell's end waits for the runs' quiet (`SPELL_QUIET_S`, its own test
    below), here none, so the first run that returns ends it."""
    monkeypatch.setattr(spells, "SPELL_QUIET_S", 0.0)
    target = Target()
    await target.up()
    ctx = CheckContext(
        base_url=target.url, session=sessions.get(target.url, True), environment="production"
    )
    check = FetchCheck(FetchConfig(name="fetch"))
    try:
        with caplog.at_level(logging.DEBUG, logger="checks.registry"):
            before = await _round(check, ctx)
            await target.down()
            away = await _round(check, ctx) + await _round(check, ctx)
            await target.up()
            back = await _round(check, ctx) + await _round(check, ctx)
    finally:
        if target.runner is not None:
            await target.down()
    assert all(r.ok for r in before + back), {r.message for r in before + back}
    # each probe away is still a failed probe, as it was
    assert all(not r.ok and r.result == "error" and not r.bug for r in away)
    assert all(s.error == "crash" for r in away for s in r.samples)
    lines = _lines(caplog)
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO], [
        r.getMessage() for r in lines
    ]
    began, ended = (r.getMessage() for r in lines)
    # "crashed" once: before, "… crashed in environment production: check crashed: …"
    assert began.startswith("check fetch (fetch) crashed in environment production: Client"), began
    assert began.count("crashed") == 1, began
    assert "logged once while its runs raise about the target" in began, began
    assert ended.startswith("check fetch in environment production: its runs return again"), ended
    assert "(80 runs raised about the target in " in ended, ended
    assert not no_spells.open
    # the rest of the spell is there at DEBUG, for whoever asks
    assert len(
        [r for r in caplog.records if r.levelno == logging.DEBUG and "crashed" in r.getMessage()]
    )


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]


def test_a_spell_ends_only_once_its_runs_were_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """A target failing some of its runs is one spell, not a line pair per flip: a run
    that returns ends it only when none raised for `SPELL_QUIET_S`."""
    assert SPELL_QUIET_S == 30.0  # the README's
    spells_ = RaisingSpells(logging.getLogger("test.spells"))
    key = ("production", "fetch", "deploy")
    with caplog.at_level(logging.DEBUG, logger="test.spells"):
        assert spells_.raised(key, "fetch", 0.0, "ConnectionResetError: reset")
        for t in range(1, 20):  # every other run raises
            if t % 2:
                spells_.returned(key, float(t))
            else:
                assert not spells_.raised(key, "fetch", float(t), "ConnectionResetError: reset")
        assert len(_said(caplog)) == 1
        spells_.returned(key, 18.0 + SPELL_QUIET_S - 0.1)  # not quiet long enough
        assert len(_said(caplog)) == 1 and key in spells_.open
        spells_.returned(key, 18.0 + SPELL_QUIET_S)
        (_, ended) = _said(caplog)[1]
        assert ended == (
            "check fetch in environment production: its runs return again (10 runs raised"
            " about the target in 18 s)"
        )
        spells_.returned(key, 100.0)  # said once
        assert spells_.raised(key, "fetch", 101.0, "ConnectionRefusedError: refused")  # a new spell
    assert [level for level, _ in _said(caplog)] == [logging.WARNING, logging.INFO, logging.WARNING]


def test_a_spell_is_its_targets_and_environments_and_said_again_after_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A canary's baseline, another environment: spells of their own. A spell still on
    is said again after `SPELL_REMIND_S` (a long outage, or a later window meeting it
    with no run that returned between), at most that often."""
    spells_ = RaisingSpells(logging.getLogger("test.spells"))
    deploy = ("production", "fetch", "deploy")
    with caplog.at_level(logging.INFO, logger="test.spells"):
        assert spells_.raised(deploy, "fetch", 0.0, "ConnectionRefusedError: refused")
        assert spells_.raised(("production", "fetch", "baseline"), "fetch", 1.0, "refused")
        assert spells_.raised(("staging", "fetch", "deploy"), "fetch", 1.0, "refused")
        assert not spells_.raised(deploy, "fetch", SPELL_REMIND_S - 1, "refused")
        assert spells_.raised(deploy, "fetch", SPELL_REMIND_S, "ConnectionRefusedError: refused")
        assert not spells_.raised(deploy, "fetch", SPELL_REMIND_S + 1, "refused")
    said = [text for _, text in _said(caplog)]
    assert said[1].startswith(
        "check fetch (fetch) crashed in environment production (its baseline): refused"
    ), said
    assert said[3] == (
        "check fetch (fetch) still crashes in environment production: ConnectionRefusedError:"
        " refused"
        " (2 runs since the last line, 3 runs in 600 s)"
    ), said
    assert len(said) == 4
