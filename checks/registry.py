"""Which check types exist, and how one run of a check is timed and contained.

Check types, built-in or third-party, are found through the entry-point group
`postflight.checks` (name = the `type:` users write, value = the `Check`
subclass), so installing a plugin package is all it takes to add one. Style
model: Datadog's `AgentCheck` — the framework, not the plugin, times each run
and turns any exception into an error result with a sanitized message: a failed probe
when it is about the target, else the check's own bug, no evidence (`checks.bugs`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
import typing
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType
from typing import Any

from checks.base import BUG, Check, CheckConfig, CheckContext, CheckResult, Running, Sample
from checks.bugs import NOT_EVIDENCE, about_target, raised_where
from checks.shape import UnreadableResult, plain_result
from checks.spells import RaisingSpells, SpellKey
from checks.ticks import ticks
from common.durations import format_duration
from common.redaction import SENSITIVE_KEY, Redactor, truncate

ENTRY_POINT_GROUP = "postflight.checks"

TIMEOUT_MARGIN_S = 1.0
"""Grace on top of a check's own budget before the registry stops waiting for it."""
DEADLINE_GRACE_S = 0.5
"""Grace after `CheckContext.deadline` for a check that does not fit itself to it; one
that does (`Check.fits_deadline`) gets `TIMEOUT_MARGIN_S`, only as a safety net."""

_MESSAGE_LIMIT = 500
_TRACEBACK_LIMIT = 4000
CRASHED = "check crashed: "
"""A result's message for a run that raised about its target, before the exception's."""
TIMED_OUT = "check timed out after "
"""A run's own timeout (its client's), said with how long it ran and what it raised."""

log = logging.getLogger(__name__)


class CheckPluginError(Exception):
    """A check plugin could not be loaded; the message names it and says what to do."""


class UnknownCheckType(LookupError):
    """A configuration names a check type no installed plugin provides."""


def _describe(ep: EntryPoint) -> str:
    dist = ep.dist
    origin = f" from distribution {dist.name} {dist.version}" if dist is not None else ""
    return f"check plugin {ep.name!r} ({ep.value}{origin})"


def _load_one(ep: EntryPoint) -> type[Check]:
    try:
        loaded = ep.load()
    except Exception as exc:
        raise CheckPluginError(
            f"{_describe(ep)} failed to import: {type(exc).__name__}: {exc}. "
            "Reinstall or uninstall that package."
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Check)):
        raise CheckPluginError(f"{_describe(ep)} is not a subclass of checks.base.Check")
    declared = getattr(loaded, "type", None)
    if declared != ep.name:
        raise CheckPluginError(
            f"{_describe(ep)} declares type {declared!r}; the entry point name and "
            "`Check.type` must be the same"
        )
    config = getattr(loaded, "Config", None)
    if not (isinstance(config, type) and issubclass(config, CheckConfig)):
        raise CheckPluginError(f"{_describe(ep)} has no `Config` subclass of CheckConfig")
    # The settings build a discriminated union on `type`, which needs a literal there.
    field = config.model_fields.get("type")
    literal = field.annotation if field is not None else None
    if typing.get_origin(literal) is not typing.Literal or typing.get_args(literal) != (ep.name,):
        raise CheckPluginError(
            f"{_describe(ep)}: {config.__name__}.type must be annotated Literal[{ep.name!r}]"
        )
    return loaded


@functools.cache
def _load_all() -> Mapping[str, type[Check]]:
    found: dict[str, type[Check]] = {}
    origin: dict[str, EntryPoint] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in origin:
            if origin[ep.name].value == ep.value:
                continue  # the same plugin seen twice (an egg-info beside a dist-info)
            raise CheckPluginError(
                f"check type {ep.name!r} is provided twice: by {_describe(origin[ep.name])} "
                f"and by {_describe(ep)}; uninstall one"
            )
        origin[ep.name] = ep
        found[ep.name] = _load_one(ep)
    return MappingProxyType(found)


def check_types() -> Mapping[str, type[Check]]:
    """Every installed check type by name, loaded once per process.

    Raises `CheckPluginError` naming the plugin when one cannot be imported or
    does not keep the contract; a broken plugin is a start-up error, never a
    check type that silently disappears.
    """
    return _load_all()


def reload_check_types() -> Mapping[str, type[Check]]:
    """Forget what was loaded and look again (after installing a plugin at run time, in tests)."""
    _load_all.cache_clear()
    return _load_all()


def config_models() -> tuple[type[CheckConfig], ...]:
    """The config model of every check type, for the settings' discriminated union on `type`."""
    return tuple(cls.Config for cls in check_types().values())


def build_check(config: CheckConfig) -> Check:
    """The check object for one configured check."""
    try:
        cls = check_types()[config.type]
    except KeyError:
        known = ", ".join(sorted(check_types())) or "none"
        raise UnknownCheckType(
            f"check {config.name!r} has type {config.type!r}, which no installed plugin "
            f"provides (known: {known})"
        ) from None
    if not isinstance(config, cls.Config):
        config = cls.Config.model_validate(config.model_dump(by_alias=True))
    return cls(config)


def deadline_s(check: Check) -> float:
    """How long `run_check` waits for `check` before giving up on it."""
    return check.budget_s() + TIMEOUT_MARGIN_S


async def run_check(check: Check, ctx: CheckContext) -> CheckResult:
    """Run `check` once, timed and contained: it returns a result, whatever the check does.

    An exception about the target (a timeout included: `checks.bugs.about_target`)
    becomes a failing result with one error sample, a message with `ctx.secrets` redacted
    and `details["crashed"] = True`; any other, or a result that cannot be read
    (`checks.shape`), is the check's bug: a result with no sample (`CheckResult.bug`).
    Cancellation is not an error: it propagates, so shutdown stays prompt.
    """
    redactor = _redactor(tuple(ctx.secrets))
    started = time.perf_counter()
    now = asyncio.get_running_loop().time()
    allowed, cut = _allowed(check, ctx, now)
    task = asyncio.current_task()
    assert task is not None
    net = _Net(task)
    ticks().at(now + allowed, _net_due, net)
    try:
        try:
            if type(check).__module__ in _BUILT_IN:
                result = await check.run(ctx)
            else:
                result = await _contained(check, ctx)
        except asyncio.CancelledError:
            if net.cut:
                net.cut = False
                if task.uncancel() <= net.cancelling:
                    net.fired = True
                    raise TimeoutError from None  # ours: the check ran out of time
            raise
        else:
            if net.cut:  # the check swallowed our cancellation: take it back
                task.uncancel()
        finally:
            net.over = True
        result = _read(check, result, "run()")
    except asyncio.CancelledError:
        raise
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not stop the daemon
        duration = time.perf_counter() - started
        # a run our net cut is a timeout, not a crash: the traceback would only show where
        # the check was waiting, and formatting it costs more than the probe did
        return _crashed(
            check,
            ctx,
            exc,
            duration,
            allowed,
            redactor,
            traced=not (cut or net.fired),
            ours=net.fired,
        )
    return _finished(check, ctx, result, time.perf_counter() - started, redactor)


def start_check(
    check: Check, ctx: CheckContext, done: Callable[[CheckResult], None]
) -> Started | None:
    """`run_check` without a task, for a run `check.start` can drive from callbacks: None
    when it cannot (await `run_check` then); else the run, and `done` gets the result
    `run_check` would have returned, timed, contained and scrubbed the same way, by the same
    limit (a run still going then is cut: the same timeout result), unless it is cancelled
    first (`Started.cancel`: what cancelling `run_check`'s task does)."""
    redactor = _redactor(tuple(ctx.secrets))
    started = time.perf_counter()
    now = asyncio.get_running_loop().time()
    allowed, cut = _allowed(check, ctx, now)
    run = Started(check, ctx, done, redactor, started, allowed, cut)
    try:
        running = check.start(ctx, run.finish)
    except (Exception, SystemExit) as exc:
        run.finish(exc)
        return run
    if running is None:
        return None
    if not run.over:
        run.running = running
        ticks().at(now + allowed, _started_due, run)
    return run


_BUILT_IN = frozenset({"checks.http", "checks.smoke", "checks.load"})
"""Where the built-in check types live: they stop when cancelled, so they run in the
caller's task; a plugin's run gets a task of its own (`_contained`)."""

_abandoned: set[asyncio.Task[Any]] = set()
"""Plugin runs that ignored their cancellation: held here until they end (a pending task
nobody references is destroyed mid-run, with an error logged)."""


async def _contained(check: Check, ctx: CheckContext) -> CheckResult:
    """A plugin's `run`, in its own task: when the caller is cancelled (our limit, the
    round's end, shutdown), the caller stops at once and the run is cancelled; a run that
    swallows that cancellation is left to finish on its own, so it holds up neither the
    round nor the daemon's stop (awaited in the caller's task, it held both forever). A
    run that raised `CancelledError` with nobody cancelling it is its bug (`SelfCancelled`)."""
    inner = asyncio.ensure_future(plugin_run(check, ctx))
    try:
        result = await asyncio.shield(inner)
    except asyncio.CancelledError:
        if inner.done() and inner.cancelled() and not _cancelling():
            # the run raised CancelledError with nobody cancelling it (it awaited a future
            # another task cancelled): its bug, where it cut the caller's round short
            raise SelfCancelled(
                "run() raised CancelledError, though nothing cancelled it"
            ) from None
        if not inner.done():
            inner.cancel()
            _abandoned.add(inner)
            inner.add_done_callback(_abandoned.discard)
            asyncio.get_running_loop().call_later(STUBBORN_AFTER_S, _name_stubborn, check, inner)
        raise
    if isinstance(result, SystemExit):
        raise result  # in the caller's frame, where `run_check` contains it
    return result


class SelfCancelled(RuntimeError):
    """A plugin's run raised `CancelledError` of its own: its bug, not a cancellation."""


def _cancelling() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


async def plugin_run(check: Check, ctx: CheckContext) -> CheckResult | SystemExit:
    """`check.run`, with a SystemExit returned: raised in a task, the loop itself re-raises
    it and the daemon stops."""
    try:
        return await check.run(ctx)
    except SystemExit as exc:
        return exc


STUBBORN_AFTER_S = 1.0
"""How long a cancelled plugin run may take to stop before a warning names its check."""

_stubborn: set[str] = set()
"""Checks already named in a warning for ignoring their cancellation (one line each)."""


def _name_stubborn(check: Check, inner: asyncio.Task[Any]) -> None:
    if not inner.done() and check.name not in _stubborn:
        _stubborn.add(check.name)
        log.warning(
            "check %s (%s) goes on after it was cancelled; such runs are left behind",
            check.name,
            check.type,
        )


def _read(check: Check, result: object, by: str) -> CheckResult:
    """`result` as the agent reads it: a built-in check's checked for its shape only (it
    runs thousands of times a second), a plugin's read field by field (`checks.shape`)."""
    if type(check).__module__ in _BUILT_IN:
        _check_shape(result, by)
        return typing.cast(CheckResult, result)
    return plain_result(result, by)


def _check_shape(result: object, by: str) -> None:
    """Raise TypeError unless `result` is a CheckResult whose samples are Samples: a
    built-in check's malformed result (a plugin's is read by `checks.shape`) must end as
    its own error result here, not crash the window that reads its samples later."""
    if not isinstance(result, CheckResult):
        raise TypeError(f"{by} returned {type(result).__name__}, not a CheckResult")
    samples = result.samples
    if not isinstance(samples, tuple) or not all(isinstance(s, Sample) for s in samples):
        raise TypeError(f"{by} returned a CheckResult whose samples are not a tuple of Samples")


def _allowed(check: Check, ctx: CheckContext, now: float) -> tuple[float, bool]:
    """How long a run may take from `now`, and whether the round's deadline cut that short."""
    allowed = deadline_s(check)
    grace = TIMEOUT_MARGIN_S if check.fits_deadline else DEADLINE_GRACE_S
    if ctx.deadline is not None:
        deadline = max(ctx.deadline, now + ctx.room)  # a run started late gets its room
        if deadline + grace - now < allowed:
            return max(0.0, deadline + grace - now), True
    return allowed, False


def _finished(
    check: Check, ctx: CheckContext, result: CheckResult, duration: float, redactor: Redactor
) -> CheckResult:
    """A run's result as recorded: timed, and scrubbed of the environment's secrets. It
    returned: a spell of its check's runs raising about the target may end (`_spells`)."""
    if _spells.open:
        _spells.returned(_spell_key(check, ctx), asyncio.get_running_loop().time())
    if not redactor.secrets:
        message, details = result.message, result.details
    else:
        # a failure's message carries its own latency and never comes back: not memoed
        text = result.message
        message = _scrubbed_text(redactor, text) if result.ok else redactor.text(text)
        details = _scrubbed(redactor, result.details)
    # Built directly rather than with dataclasses.replace: this runs once per probe.
    return CheckResult(
        result.check, result.type, result.ok, result.samples, message, duration, details
    )


class Started:
    """One run `start_check` started: what `run_check`'s frame holds, for callbacks."""

    __slots__ = (
        "allowed",
        "check",
        "ctx",
        "cut",
        "done",
        "fired",
        "over",
        "redactor",
        "running",
        "started",
    )

    def __init__(
        self,
        check: Check,
        ctx: CheckContext,
        done: Callable[[CheckResult], None],
        redactor: Redactor,
        started: float,
        allowed: float,
        cut: bool,
    ) -> None:
        self.check = check
        self.ctx = ctx
        self.done = done
        self.redactor = redactor
        self.started = started
        self.allowed = allowed
        self.cut = cut
        self.fired = False
        """Whether the limit ended the run (`_started_cut`), not a timeout of its own."""
        self.over = False
        self.running: Running | None = None

    def cancel(self) -> bool:
        """Stop the run if it is still going (then `done` is never called): True if it was."""
        if self.over:
            return False
        self.over = True
        running, self.running = self.running, None
        if running is not None:
            running.cancel()
        return True

    def finish(self, outcome: CheckResult | BaseException) -> None:
        if self.over:
            return  # cut by the limit before this came
        if not isinstance(outcome, Exception | CheckResult):
            return  # cancelled with the loop: the limit ends the run if the loop goes on
        self.over = True
        self.running = None  # (it holds this run's `finish`: no cycle for the collector)
        duration = time.perf_counter() - self.started
        if isinstance(outcome, CheckResult):
            try:
                outcome = _read(self.check, outcome, "start()")
            except TypeError as exc:
                outcome = exc
        if isinstance(outcome, CheckResult):
            result = _finished(self.check, self.ctx, outcome, duration, self.redactor)
        else:
            result = _crashed(
                self.check,
                self.ctx,
                outcome,
                duration,
                self.allowed,
                self.redactor,
                traced=not self.cut,
                ours=self.fired,
            )
        self.done(result)


def _started_due(run: Started) -> None:
    if not run.over:
        # after what this loop iteration already read, as `_net_due`
        asyncio.get_running_loop().call_soon(_started_cut, run)


def _started_cut(run: Started) -> None:
    if not run.over:
        running = run.running
        run.cut = run.fired = True
        run.finish(TimeoutError())
        if running is not None:
            running.cancel()  # as `run_check` cancels the run's task


class _Net:
    """`run_check`'s limit for one run, on the shared grid (`checks.ticks`) instead of an
    `asyncio.timeout_at` per probe: what `asyncio.timeout` does, cheaper at thousands a second."""

    __slots__ = ("cancelling", "cut", "fired", "over", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.cut = False
        self.fired = False
        self.over = False


def _net_due(net: _Net) -> None:
    if not net.over:
        # after what this loop iteration already read: a run whose answer is in hand (a busy
        # loop reached its limit and its answer at once) finishes instead of being cut
        net.task.get_loop().call_soon(_net_cut, net)


def _net_cut(net: _Net) -> None:
    if not net.over and not net.task.done():
        net.cut = True
        net.task.cancel()


@functools.lru_cache(maxsize=64)
def _redactor(secrets: tuple[str, ...]) -> Redactor:
    """Redactors by secret set: an environment's secrets are the same on every run."""
    return Redactor(secrets)


_PLAIN = (int, float, bool, type(None))


@functools.lru_cache(maxsize=4096)
def _scrubbed_text(redactor: Redactor, text: str) -> str:
    """`redactor.text(text)`, remembered: a healthy target's probes say the same few
    things (`GET /health: 200 in 3ms`) thousands of times a second (a failure's message,
    with its own latency, is not asked for: it would only push those out)."""
    return redactor.text(text)


@functools.lru_cache(maxsize=1024)
def _sensitive(key: str) -> bool:
    return SENSITIVE_KEY.search(key) is not None


def _scrubbed(redactor: Redactor, details: dict[str, Any]) -> dict[str, Any]:
    """`redactor.value(details)`, without the copy when there is nothing to hide: only
    numbers under names that are not sensitive (an http probe's status and latency)."""
    for key, value in details.items():
        if type(value) not in _PLAIN or _sensitive(key):
            return typing.cast(dict[str, Any], redactor.value(details))
    return details


def _crashed(
    check: Check,
    ctx: CheckContext,
    exc: Exception | SystemExit,
    duration: float,
    allowed: float,
    redactor: Redactor,
    traced: bool = True,
    ours: bool = False,
) -> CheckResult:
    """The error result. A run cut by its round's end (`traced=False`) keeps no traceback:
    it says where the target kept the check waiting, and formatting it costs more than
    the probe did — when a target stops answering, every probe of every round ends here.
    An exception not about the target is the check's bug (`_bug`). A timeout is said as
    one: our limit's (`ours`) by that limit, the check's own (its client's) by how long the
    run took and what it raised, where both read `crashed ...: check did not finish within
    6s` (a 5s timeout, plus the margin), the limit it never reached."""
    if not isinstance(exc, TimeoutError) and not about_target(exc, check):
        return _bug(check, ctx, exc, duration, redactor)
    timed_out = isinstance(exc, TimeoutError)
    if timed_out:
        error = "timeout"
        if ours:
            message = f"check did not finish within {round(allowed, 3):g}s"
        else:
            words = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            message = f"{TIMED_OUT}{format_duration(duration)}: {words}"
    else:
        error = "crash"
        message = f"{CRASHED}{type(exc).__name__}: {exc}"
        traced = True
    message = truncate(redactor.text(message), _MESSAGE_LIMIT)
    trace = _traceback(exc, redactor) if traced else ""
    # a run cut at its round's end is the target's timeout, in the result and its metrics:
    # logging each would be a line per probe when a target stops answering (or the agent
    # falls behind) — when a log line costs the most; any other is logged once a spell
    if traced:
        now = asyncio.get_running_loop().time()
        # its line says "crashed" or "timed out" itself: the exception's words only
        said = message.removeprefix(CRASHED)
        if timed_out and not ours:
            said = said.removeprefix(TIMED_OUT).partition(": ")[2]
        _spells.raised(_spell_key(check, ctx), check.type, now, said, timed_out=timed_out)
        log.debug("check %s traceback:\n%s", check.name, trace)
    else:
        log.debug(  # only a timeout goes untraced
            "check %s (%s) timed out in environment %s: %s",
            check.name,
            check.type,
            ctx.environment,
            message,
        )
    sample = Sample(check=check.name, ok=False, error=error, target=ctx.target)
    return CheckResult(
        check=check.name,
        type=check.type,
        ok=False,
        samples=(sample,),
        message=message,
        duration_s=duration,
        details={"crashed": True, "exception": type(exc).__name__, "traceback": trace},
    )


_spells = RaisingSpells(log)
"""Runs raising about their target, by environment, check and target: a WARNING as a
spell begins, one line as it ends, not one a probe (`checks.spells`)."""


def _spell_key(check: Check, ctx: CheckContext) -> SpellKey:
    return ctx.environment, check.name, ctx.target


def _traceback(exc: BaseException, redactor: Redactor) -> str:
    """`exc`'s traceback as logged and kept in a result's details: redacted, its end."""
    return redactor.text("".join(traceback.format_exception(exc)))[-_TRACEBACK_LIMIT:]


_BUG_WORDS_LIMIT = 300
"""The most of a bug's exception message its result says (its place is said after it)."""

_bugs_told: set[tuple[str, str, str, str]] = set()
"""(environment, check, exception type, where) already logged: a bug is a WARNING once,
not a line per probe."""


def _bug(
    check: Check,
    ctx: CheckContext,
    exc: BaseException,
    duration: float,
    redactor: Redactor,
) -> CheckResult:
    """A run the check's own bug ended: no sample (no evidence about the target either
    way), `result` `error`, its message naming the check, the exception and where it was
    raised, redacted; logged once as a WARNING with its traceback."""
    if isinstance(exc, UnreadableResult | SelfCancelled):  # said by what it did, not where
        where, said = "", str(exc)
    else:
        where, said = raised_where(exc, check), f"{type(exc).__name__}: {exc}"
    said = truncate(redactor.text(said), _BUG_WORDS_LIMIT)
    at = f" at {where}" if where else ""
    message = truncate(
        f"check {check.name} ({check.type}) has a bug: {said}{at}{NOT_EVIDENCE}", _MESSAGE_LIMIT
    )
    told = (ctx.environment, check.name, type(exc).__name__, where)
    if told not in _bugs_told:
        _bugs_told.add(told)
        trace = _traceback(exc, redactor)
        log.warning(
            "%s (environment %s; logged once, each such run counted in"
            ' postflight_check_runs_total{result="error"})\n%s',
            message,
            ctx.environment,
            trace,
        )
    return CheckResult(
        check=check.name,
        type=check.type,
        ok=False,
        samples=(),
        message=message,
        duration_s=duration,
        details={
            "crashed": True,
            BUG: True,
            "exception": type(exc).__name__,
            "where": where,
            "target": ctx.target,
        },
    )
