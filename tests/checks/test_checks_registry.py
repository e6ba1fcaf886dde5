"""The registry: check types come from entry points; a run never raises out of it."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import logging
import re
import sys
import types
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Literal

import aiohttp
import numpy as np
import pytest
import requests
import urllib3
import yaml
from pydantic import TypeAdapter, ValidationError
from yarl import URL

from checks import registry
from checks.base import Check, CheckConfig, CheckContext, CheckResult, Sample
from checks.bugs import about_target
from checks.http import HttpCheck, HttpCheckConfig
from checks.registry import (
    CheckPluginError,
    UnknownCheckType,
    build_check,
    check_types,
    config_models,
    reload_check_types,
    run_check,
    start_check,
)
from tests.checks.check_target import SECRET, MakeContext, check_config_union


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[EntryPoint]]:
    """Replace the installed entry points of `postflight.checks` with a list a test fills."""
    eps: list[EntryPoint] = []
    monkeypatch.setattr(registry, "entry_points", lambda group: list(eps))
    registry._load_all.cache_clear()
    yield eps
    monkeypatch.undo()
    registry._load_all.cache_clear()


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP)


def test_builtin_checks_come_from_entry_points() -> None:
    installed = {e.name: e.value for e in entry_points(group="postflight.checks")}
    assert installed["http"] == "checks.http:HttpCheck"
    assert check_types()["http"] is HttpCheck
    assert set(installed) <= set(check_types())
    assert HttpCheckConfig in config_models()


def test_types_are_loaded_once() -> None:
    assert check_types() is check_types()


def test_a_plugin_that_fails_to_import_is_named(fake_entry_points: list[EntryPoint]) -> None:
    fake_entry_points += [ep("http", "checks.http:HttpCheck"), ep("tcp", "no_such_plugin:Tcp")]
    with pytest.raises(CheckPluginError) as err:
        reload_check_types()
    assert "check plugin 'tcp' (no_such_plugin:Tcp)" in str(err.value)
    assert "ModuleNotFoundError" in str(err.value)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("result", "checks.base:CheckResult", "is not a subclass of checks.base.Check"),
        ("nothttp", "checks.http:HttpCheck", "declares type 'http'"),
        ("loose", f"{__name__}:LooseCheck", "must be annotated Literal['loose']"),
    ],
)
def test_a_plugin_that_breaks_the_contract_is_refused(
    fake_entry_points: list[EntryPoint], name: str, value: str, fragment: str
) -> None:
    fake_entry_points.append(ep(name, value))
    with pytest.raises(CheckPluginError, match=f"check plugin '{name}'") as err:
        reload_check_types()
    assert fragment in str(err.value)


def test_one_type_from_two_plugins_is_refused(fake_entry_points: list[EntryPoint]) -> None:
    fake_entry_points += [ep("http", "checks.http:HttpCheck"), ep("http", "other:HttpCheck")]
    with pytest.raises(CheckPluginError, match="provided twice"):
        reload_check_types()


def test_the_same_plugin_listed_twice_is_fine(fake_entry_points: list[EntryPoint]) -> None:
    fake_entry_points += [ep("http", "checks.http:HttpCheck"), ep("http", "checks.http:HttpCheck")]
    assert dict(reload_check_types()) == {"http": HttpCheck}


def test_build_check_from_config() -> None:
    config = HttpCheckConfig(name="api-health", path="/api/health")
    check = build_check(config)
    assert isinstance(check, HttpCheck) and check.config is config and check.name == "api-health"


def test_build_check_revalidates_a_base_config() -> None:
    """A bare CheckConfig (extra fields dropped) still becomes the typed config."""
    check = build_check(CheckConfig(name="x", type="http"))
    assert isinstance(check.config, HttpCheckConfig) and check.config.path == "/"


def test_build_check_of_unknown_type() -> None:
    with pytest.raises(UnknownCheckType, match="'grpc', which no installed plugin provides"):
        build_check(CheckConfig(name="x", type="grpc"))


# Containing runs


class LooseConfig(CheckConfig):
    type: str = "loose"


class LooseCheck(Check):
    type = "loose"
    Config = LooseConfig


class ScriptConfig(CheckConfig):
    type: Literal["script"] = "script"


class ScriptedCheck(Check):
    """A check whose run does what the test says."""

    type = "script"
    Config = ScriptConfig

    def __init__(self, behaviour: Any, timeout: float = 5.0) -> None:
        super().__init__(ScriptConfig(name="scripted", timeout=timeout))
        self.behaviour = behaviour

    async def run(self, ctx: CheckContext) -> CheckResult:
        result: CheckResult = await self.behaviour(ctx)
        return result


def scripted_ctx(make_ctx: MakeContext, base: URL, **kw: Any) -> CheckContext:
    return make_ctx(base, secrets=(SECRET,), **kw)


@pytest.fixture
def bugs_untold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry logs each bug once a process: this test's are its own."""
    monkeypatch.setattr(registry, "_bugs_told", set())


async def test_an_exception_about_the_target_is_a_sanitized_failed_probe(
    make_ctx: MakeContext, target: URL, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(ctx: CheckContext) -> CheckResult:
        raise ConnectionResetError(f"reset by {SECRET} at http://bob:hunter2@db/x")

    with caplog.at_level(logging.DEBUG, logger="checks.registry"):
        result = await run_check(ScriptedCheck(explode), scripted_ctx(make_ctx, target))
    assert not result.ok and result.result == "error" and not result.bug
    assert result.details["crashed"] is True
    assert result.details["exception"] == "ConnectionResetError"
    assert result.message == "check crashed: ConnectionResetError: reset by *** at http://***@db/x"
    (sample,) = result.samples
    assert sample == Sample(check="scripted", ok=False, error="crash")
    trace = result.details["traceback"]
    assert SECRET not in trace and "hunter2" not in trace and "explode" in trace
    assert SECRET not in caplog.text and "hunter2" not in caplog.text
    assert "scripted" in caplog.text


@pytest.mark.usefixtures("bugs_untold")
async def test_an_exception_not_about_the_target_is_the_checks_bug_and_no_sample(
    make_ctx: MakeContext, target: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, a plugin's own `ValueError` was a failed probe (`check crashed: …`, one error
    sample), evidence against a healthy deploy; it is the check's bug: no sample, its
    result `error`, its words naming the check, the exception and where, redacted, and
    one WARNING with the traceback however often it comes."""

    async def explode(ctx: CheckContext) -> CheckResult:
        raise ValueError(f"login failed with password {SECRET} at http://bob:hunter2@db/x")

    with caplog.at_level(logging.WARNING, logger="checks.registry"):
        result = await run_check(ScriptedCheck(explode), scripted_ctx(make_ctx, target))
        again = await run_check(ScriptedCheck(explode), scripted_ctx(make_ctx, target))
    assert not result.ok and result.result == "error" and result.bug
    assert result.samples == () and result.details["target"] == "deploy"
    assert result.details["exception"] == "ValueError"
    where = result.details["where"]
    assert re.fullmatch(r"test_checks_registry\.py:\d+ in explode", where), where
    assert result.message == (
        "check scripted (script) has a bug: ValueError: login failed with password *** at"
        f" http://***@db/x at {where}: not evidence about the target, its run left out of it"
    )
    assert again.message == result.message
    (told,) = caplog.records
    assert told.levelno == logging.WARNING and result.message in told.getMessage()
    assert "Traceback" in told.getMessage() and "explode" in told.getMessage()
    assert SECRET not in caplog.text and "hunter2" not in caplog.text


@pytest.mark.parametrize(
    "raised",
    [
        ConnectionRefusedError(111, "Connection refused"),
        OSError("Multiple exceptions: [Errno 111] Connect call failed"),
        TimeoutError(),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientResponseError(None, (), status=503),  # type: ignore[arg-type]
        http.client.RemoteDisconnected("closed"),
        http.client.BadStatusLine("HTTP/1.1 9x"),  # an HTTPException, not an OSError
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.HTTPError("503 Server Error"),
        urllib3.exceptions.ProtocolError("Connection aborted."),
        urllib3.exceptions.ReadTimeoutError(None, "/health", "timed out"),  # type: ignore[arg-type]
        ExceptionGroup("probes", [ConnectionResetError(), TimeoutError()]),
    ],
    ids=repr,
)
def test_connection_timeout_and_http_errors_are_about_the_target(raised: Exception) -> None:
    assert about_target(raised, ScriptedCheck(None))


def test_httpx_errors_are_about_the_target_once_a_plugin_imported_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx is not installed here: a module of its shape stands in (its `HTTPError` is the
    base of its connection, timeout and status errors)."""
    httpx = types.ModuleType("httpx")

    class HTTPError(Exception):
        pass

    class ConnectError(HTTPError):
        pass

    httpx.HTTPError = HTTPError  # type: ignore[attr-defined]
    assert not about_target(ConnectError("refused"), ScriptedCheck(None))
    monkeypatch.setitem(sys.modules, "httpx", httpx)
    assert about_target(ConnectError("refused"), ScriptedCheck(None))


class DriverError(Exception):
    """A database driver's error: about the target to a check that says so."""


@pytest.mark.parametrize(
    "raised",
    [
        KeyError("latency"),
        TypeError("unsupported operand"),
        ValueError("could not convert"),
        AssertionError(),
        ZeroDivisionError(),
        FileNotFoundError(2, "No such file", "/etc/ca.pem"),
        PermissionError(13, "Permission denied", "/var/lib/check/state"),
        SystemExit(3),
        ExceptionGroup("probes", [ConnectionResetError(), KeyError("x")]),
        DriverError("relation does not exist"),
    ],
    ids=repr,
)
def test_any_other_exception_is_the_checks_own_bug(raised: BaseException) -> None:
    assert not about_target(raised, ScriptedCheck(None))


def test_a_check_names_what_else_it_raises_about_the_target() -> None:
    class DatabaseCheck(ScriptedCheck):
        target_errors = (DriverError,)

    assert about_target(DriverError("relation does not exist"), DatabaseCheck(None))
    assert not about_target(KeyError("row"), DatabaseCheck(None))


async def test_a_check_that_hangs_is_timed_out_quietly(
    make_ctx: MakeContext,
    target: URL,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The safety net's cut is a timeout, not a crash: no traceback and no warning (a
    stalled target makes one per probe, when the agent can least afford them)."""

    async def hang(ctx: CheckContext) -> CheckResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    check = ScriptedCheck(hang, timeout=0.05)
    monkeypatch.setattr(registry, "TIMEOUT_MARGIN_S", 0.05)
    with caplog.at_level(logging.DEBUG, logger="checks.registry"):
        result = await run_check(check, scripted_ctx(make_ctx, target, target="baseline"))
    assert not result.ok and result.result == "error"
    (sample,) = result.samples
    assert sample == Sample(check="scripted", ok=False, error="timeout", target="baseline")
    assert result.message == "check did not finish within 0.1s"
    assert result.details["traceback"] == ""
    assert [r.levelno for r in caplog.records if "scripted" in r.getMessage()] == [logging.DEBUG]


async def test_a_check_that_swallows_its_cancellation_is_cut_all_the_same(
    make_ctx: MakeContext,
    target: URL,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A plugin that catches CancelledError and waits on still gets its timeout result at
    the limit, and a cancelled `run_check` (shutdown) returns at once: awaited in the
    caller's task, such a run held its round, and so its window, forever."""
    cancelled: list[int] = []
    released = asyncio.Event()

    async def stubborn(ctx: CheckContext) -> CheckResult:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                cancelled.append(1)
        raise AssertionError("released by the test")

    monkeypatch.setattr(registry, "TIMEOUT_MARGIN_S", 0.05)
    monkeypatch.setattr(registry, "STUBBORN_AFTER_S", 0.05)
    check = ScriptedCheck(stubborn, timeout=0.05)
    with caplog.at_level(logging.WARNING, logger="checks.registry"):
        result = await asyncio.wait_for(run_check(check, scripted_ctx(make_ctx, target)), 2)
        assert result.samples == (Sample(check="scripted", ok=False, error="timeout"),)
        assert cancelled == [1]

        long = ScriptedCheck(stubborn, timeout=60)
        task = asyncio.create_task(run_check(long, scripted_ctx(make_ctx, target)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)
        assert cancelled == [1, 1]
        await asyncio.sleep(0.1)
    assert caplog.text.count("goes on after it was cancelled") == 1
    left = list(registry._abandoned)
    assert len(left) == 2
    released.set()  # what the test left behind ends, unobserved
    await asyncio.wait(left, timeout=2)
    assert not registry._abandoned


async def test_cancellation_is_not_swallowed(make_ctx: MakeContext, target: URL) -> None:
    started = asyncio.Event()

    async def wait(ctx: CheckContext) -> CheckResult:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    task = asyncio.create_task(run_check(ScriptedCheck(wait), scripted_ctx(make_ctx, target)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_check_returning_garbage_is_an_error(make_ctx: MakeContext, target: URL) -> None:
    async def garbage(ctx: CheckContext) -> Any:
        return {"ok": True}

    result = await run_check(ScriptedCheck(garbage), scripted_ctx(make_ctx, target))
    assert result.result == "error"
    assert "returned dict, not a CheckResult" in result.message


async def test_a_result_whose_samples_are_not_samples_is_the_checks_bug(
    make_ctx: MakeContext, target: URL
) -> None:
    """A plugin's malformed samples end as its own bug, not as an AttributeError in the
    window that reads them a round later (which stalled the window, round after round),
    nor as a failed probe (it was one: evidence against the target)."""

    async def bad_samples(ctx: CheckContext) -> CheckResult:
        return CheckResult("scripted", "script", True, ("x",), "fine")  # type: ignore[arg-type]

    result = await run_check(ScriptedCheck(bad_samples), scripted_ctx(make_ctx, target))
    assert result.result == "error" and result.bug and result.samples == ()
    assert result.message == (
        "check scripted (script) has a bug: run() returned samples[0] is 'x' (str), not a"
        " Sample: not evidence about the target, its run left out of it"
    )


def _one_sample(**fields: Any) -> Callable[[CheckContext], Any]:
    async def run(ctx: CheckContext) -> CheckResult:
        sample = Sample(check="scripted", ok=fields.pop("ok", True), **fields)
        return CheckResult("scripted", "script", True, (sample,), "fine")

    return run


async def test_a_plugins_numpy_scalars_and_list_of_samples_are_read_as_pythons(
    make_ctx: MakeContext, target: URL
) -> None:
    """numpy's bool, float32 and int64 are numbers and flags to the judge, but not to the
    store's JSON (the round's write raised on them, and the window ended as a bug of the
    agent's watch): they are read as Python's; a list of samples as a tuple."""

    async def numpy_answer(ctx: CheckContext) -> CheckResult:
        sample = Sample(
            check="scripted",
            ok=np.bool_(True),  # type: ignore[arg-type]
            latency_s=np.float32(0.25),  # type: ignore[arg-type]
            status=np.int64(200),  # type: ignore[arg-type]
            bytes=np.int64(12),  # type: ignore[arg-type]
        )
        samples: Any = [sample, Sample(check="scripted", ok=True, latency_s=None)]
        return CheckResult("scripted", "script", np.bool_(True), samples, "fine")  # type: ignore[arg-type]

    result = await run_check(ScriptedCheck(numpy_answer), scripted_ctx(make_ctx, target))
    assert result.ok is True and result.result == "pass" and type(result.samples) is tuple
    first, second = result.samples
    assert first == Sample(check="scripted", ok=True, latency_s=0.25, status=200, bytes=12)
    assert [type(v) for v in (first.ok, first.latency_s, first.status, first.bytes)] == [
        bool,
        float,
        int,
        int,
    ]
    assert second.latency_s is None
    json.dumps([dataclasses.asdict(s) for s in result.samples])  # what the store writes


async def test_a_plugins_none_where_a_default_says_nothing_is_read_as_that_default(
    make_ctx: MakeContext, target: URL
) -> None:
    """No message, details or byte count (None) is "", {} and 0, not a bug; a latency of
    None is no latency, as always."""

    async def nones(ctx: CheckContext) -> CheckResult:
        sample = Sample(check="scripted", ok=True, latency_s=None, bytes=None)  # type: ignore[arg-type]
        return CheckResult("scripted", "script", True, (sample,), None, 0.0, None)  # type: ignore[arg-type]

    result = await run_check(ScriptedCheck(nones), scripted_ctx(make_ctx, target))
    assert result.result == "pass" and result.message == "" and result.details == {}
    assert result.samples == (Sample(check="scripted", ok=True),)


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        (
            {"latency_s": np.array([0.1, 0.2])},
            "samples[0].latency_s array([0.1, 0.2]) (ndarray) is not a number",
        ),
        ({"latency_s": "12ms"}, "samples[0].latency_s '12ms' (str) is not a number"),
        ({"latency_s": {"p50": 0.1}}, "samples[0].latency_s {'p50': 0.1} (dict) is not a number"),
        ({"latency_s": float("nan")}, "samples[0].latency_s nan is not a duration"),
        ({"ok": None}, "samples[0].ok None (NoneType) is not a bool"),
        ({"ok": np.array([True])}, "samples[0].ok array([ True]) (ndarray) is not a bool"),
        ({"status": 200.5}, "samples[0].status 200.5 (float) is not a count"),
        ({"error": {"code": 503}}, "samples[0].error {'code': 503} (dict) is not text"),
        ({"target": "prod"}, "samples[0].target 'prod' (str) is not deploy or baseline"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_a_plugins_sample_that_cannot_be_read_is_its_bug(
    make_ctx: MakeContext, target: URL, fields: dict[str, Any], said: str
) -> None:
    """Before, an array or text as a latency made the round's observation raise (the
    window ended as a bug of the agent), a NaN was judged, a dict as an error failed the
    round's store write: each is the plugin's bug, named, and no evidence."""
    result = await run_check(ScriptedCheck(_one_sample(**fields)), scripted_ctx(make_ctx, target))
    assert result.bug and result.samples == () and result.result == "error"
    assert f"has a bug: run() returned {said}: not evidence" in result.message, result.message


async def test_a_plugin_raising_cancelled_error_of_its_own_is_its_bug(
    make_ctx: MakeContext, target: URL
) -> None:
    """A run that raises `CancelledError` with nobody cancelling it (it awaited a future
    another task cancelled) is its bug; before, it went up as the caller's cancellation,
    and the daemon's window ended after one round with no data."""

    async def cancelled(ctx: CheckContext) -> CheckResult:
        raise asyncio.CancelledError()

    result = await run_check(ScriptedCheck(cancelled), scripted_ctx(make_ctx, target))
    assert result.bug and result.samples == () and result.result == "error"
    assert result.message.startswith(
        "check scripted (script) has a bug: run() raised CancelledError, though nothing"
        " cancelled it: not evidence"
    )


async def test_a_plugin_calling_sys_exit_is_contained(make_ctx: MakeContext, target: URL) -> None:
    """SystemExit from a check's run is its bug, not the daemon's exit."""

    async def leave(ctx: CheckContext) -> CheckResult:
        raise SystemExit(3)

    result = await run_check(ScriptedCheck(leave), scripted_ctx(make_ctx, target))
    assert result.result == "error" and result.bug
    assert result.message.startswith("check scripted (script) has a bug: SystemExit: 3 at ")


async def test_results_are_timed_and_redacted(make_ctx: MakeContext, target: URL) -> None:
    async def leaky(ctx: CheckContext) -> CheckResult:
        await asyncio.sleep(0.01)
        return CheckResult(
            check="scripted",
            type="script",
            ok=False,
            samples=(Sample(check="scripted", ok=False, error="status"),),
            message=f"got token {SECRET}",
            details={"body": f"{{'token': '{SECRET}'}}", "nested": [{"password": "p"}]},
        )

    result = await run_check(ScriptedCheck(leaky), scripted_ctx(make_ctx, target))
    assert result.message == "got token ***"
    assert result.details == {"body": "{'token': '***'}", "nested": [{"password": "***"}]}
    assert result.duration_s >= 0.01
    assert result.result == "fail"


async def test_numbers_pass_as_they_are_unless_their_name_is_sensitive(
    make_ctx: MakeContext, target: URL
) -> None:
    """The fast path for a passing probe's details (numbers only) hides what the full
    redaction hides, every time the same message comes back."""

    async def numbers(ctx: CheckContext) -> CheckResult:
        return CheckResult(
            check="scripted",
            type="script",
            ok=True,
            samples=(Sample(check="scripted", ok=True),),
            message=f"200 in 3ms, token {SECRET}",
            details={"status": 200, "latency_ms": 3.1, "pin": None, "api_key": 1234},
        )

    for _ in range(2):
        result = await run_check(ScriptedCheck(numbers), scripted_ctx(make_ctx, target))
        assert result.message == "200 in 3ms, token ***"
        assert result.details == {"status": 200, "latency_ms": 3.1, "pin": None, "api_key": "***"}


async def test_failure_messages_with_their_own_latency_are_not_memoed(
    make_ctx: MakeContext, target: URL
) -> None:
    """A failure's message carries its own latency (`latency: expected < 500ms, got
    523.417ms`) and never comes back: the memo of scrubbed messages keeps only what
    repeats, a passing probe's few messages, not one entry per failure."""
    latencies = iter(range(500, 10_000))

    def said(message: str, error: str | None) -> CheckResult:
        sample = Sample(check="scripted", ok=error is None, error=error)
        return CheckResult("scripted", "script", error is None, (sample,), message)

    async def slow(ctx: CheckContext) -> CheckResult:
        took = next(latencies) + 0.417
        return said(f"latency: expected < 500ms, got {took}ms, token {SECRET}", "latency")

    async def passing(ctx: CheckContext) -> CheckResult:
        return said(f"200 in 3ms, token {SECRET}", None)

    registry._scrubbed_text.cache_clear()
    ctx = scripted_ctx(make_ctx, target)
    for _ in range(50):
        result = await run_check(ScriptedCheck(slow), ctx)
        assert result.message.endswith("ms, token ***")
    assert registry._scrubbed_text.cache_info().currsize == 0  # 50 before
    for _ in range(3):
        assert (await run_check(ScriptedCheck(passing), ctx)).message == "200 in 3ms, token ***"
    memo = registry._scrubbed_text.cache_info()
    assert (memo.currsize, memo.hits) == (1, 2)


EXAMPLE = Path("/work/shared/spec/postflight.example.yaml")
LOCAL_EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "postflight.example.yaml"


def example_checks() -> list[dict[str, Any]]:
    path = LOCAL_EXAMPLE if LOCAL_EXAMPLE.exists() else EXAMPLE
    if not path.exists():
        pytest.skip("no example configuration found")
    text = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: m.group(2) or "x", path.read_text())
    doc = yaml.safe_load(text)
    return [c for env in doc["environments"].values() for c in env.get("checks", [])]


def test_every_check_of_the_example_config_validates() -> None:
    adapter: TypeAdapter[CheckConfig] = TypeAdapter(check_config_union())
    configs = [adapter.validate_python(c) for c in example_checks()]
    assert [(c.name, c.type) for c in configs] == [
        ("api-health", "http"),
        ("login-flow", "smoke"),
        ("feed-latency", "load"),
        ("api-health", "http"),
    ]
    checks = [build_check(c) for c in configs]
    assert [type(c).__name__ for c in checks] == [
        "HttpCheck",
        "SmokeCheck",
        "LoadCheck",
        "HttpCheck",
    ]
    assert [c.budget_s() for c in checks] == [2.0, 10.0, 16.0, 5.0]


def test_the_union_names_the_field_that_is_wrong() -> None:
    adapter: TypeAdapter[CheckConfig] = TypeAdapter(check_config_union())
    with pytest.raises(ValidationError) as err:
        adapter.validate_python({"name": "x", "type": "http", "expect": {"status": "abc"}})
    assert err.value.errors()[0]["loc"][:3] == ("http", "expect", "status")
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        adapter.validate_python({"name": "x", "type": "ftp"})


# Runs started from callbacks (`start_check`: a round's http probes)


class Started:
    """A `Running` that never answers by itself: `done` is called when the test says."""

    def __init__(self, done: Callable[[CheckResult | BaseException], None]) -> None:
        self.done = done
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class StartedCheck(Check):
    """A check that starts from callbacks (`Check.start`), as `http` does."""

    type = "script"
    Config = ScriptConfig

    def __init__(self, timeout: float = 5.0) -> None:
        super().__init__(ScriptConfig(name="scripted", timeout=timeout))
        self.runs: list[Started] = []

    def start(
        self, ctx: CheckContext, done: Callable[[CheckResult | BaseException], None]
    ) -> Started:
        self.runs.append(Started(done))
        return self.runs[-1]


async def started(check: Check, ctx: CheckContext) -> asyncio.Future[CheckResult]:
    answer: asyncio.Future[CheckResult] = asyncio.get_running_loop().create_future()
    assert start_check(check, ctx, answer.set_result)
    return answer


async def test_a_started_run_that_never_answers_is_cut_as_a_task_is(
    make_ctx: MakeContext, target: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same limit, the same quiet timeout result as `run_check` gives a hung run; the
    run is cancelled, and an answer after the cut is not recorded twice."""
    monkeypatch.setattr(registry, "TIMEOUT_MARGIN_S", 0.05)
    check = StartedCheck(timeout=0.05)
    answer = await started(check, scripted_ctx(make_ctx, target, target="baseline"))
    result = await asyncio.wait_for(answer, 2)
    (run,) = check.runs
    assert run.cancelled
    run.done(CheckResult("scripted", "script", True, ()))  # too late: ignored
    assert not result.ok and result.details["crashed"] and result.details["traceback"] == ""
    timeout = Sample(check="scripted", ok=False, error="timeout", target="baseline")
    assert result.samples == (timeout,)

    async def hang(ctx: CheckContext) -> CheckResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    in_task = await run_check(ScriptedCheck(hang, timeout=0.05), scripted_ctx(make_ctx, target))
    assert result.message == in_task.message == "check did not finish within 0.1s"


async def test_a_started_run_is_timed_redacted_and_contained(
    make_ctx: MakeContext, target: URL
) -> None:
    check = StartedCheck()
    ctx = scripted_ctx(make_ctx, target)
    answer = await started(check, ctx)
    await asyncio.sleep(0.05)
    check.runs[0].done(CheckResult("scripted", "script", False, (), f"token {SECRET}", 0.0))
    result = await answer
    assert result.message == "token ***" and result.duration_s >= 0.04
    assert not check.runs[0].cancelled

    crashed = await started(check, ctx)
    check.runs[1].done(ConnectionResetError(f"password {SECRET}"))
    result = await crashed
    assert result.result == "error"
    assert result.message == "check crashed: ConnectionResetError: password ***"
    assert result.samples == (Sample(check="scripted", ok=False, error="crash"),)

    bug = await started(check, ctx)
    check.runs[2].done(ValueError(f"password {SECRET}"))
    result = await bug
    assert result.result == "error" and result.bug and result.samples == ()
    assert result.message.startswith("check scripted (script) has a bug: ValueError: password ***")


async def test_a_started_run_with_malformed_samples_is_an_error(
    make_ctx: MakeContext, target: URL
) -> None:
    check = StartedCheck()
    answer = await started(check, scripted_ctx(make_ctx, target))
    check.runs[0].done(CheckResult("scripted", "script", True, ("x",)))  # type: ignore[arg-type]
    result = await answer
    assert result.result == "error" and result.bug
    assert result.message.startswith(
        "check scripted (script) has a bug: start() returned samples[0] is 'x' (str), not a Sample"
    )


async def test_a_check_that_cannot_start_from_callbacks_is_left_to_run_check(
    make_ctx: MakeContext, target: URL
) -> None:
    async def fine(ctx: CheckContext) -> CheckResult:
        raise AssertionError("not run: start_check only starts")

    done: list[CheckResult] = []
    assert not start_check(ScriptedCheck(fine), scripted_ctx(make_ctx, target), done.append)
    await asyncio.sleep(0.05)
    assert done == []
