"""The commands that read a configuration file here, with no agent to ask: `run` (the
daemon), `check`, `validate-config` and `schema` (contract §1).

Every user error ends in one clear message and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.exits import (
    EXIT_CRASHED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ended,
    error_line,
)
from agent.cli.stop_signals import STOP_SIGNALS, also_at_arrival, ignore_stops_from_now
from agent.settings_file import (
    STDIN_SOURCE,
    ConfigError,
    LoadedConfig,
    UnknownEnvironment,
    load_config,
)
from agent.stopping import StopBudget, StopDeadline
from common.durations import format_duration
from common.words import counted, unknown_environment

if TYPE_CHECKING:
    from agent.settings import Settings
    from checks.base import CheckResult

log = logging.getLogger(__name__)


DEFAULT_CONFIG = "postflight.yaml"


def _config_path(explicit: str | None) -> str:
    # an empty one given (`--config "$PF_CONFIG"`, the variable unset) is refused by the
    # loader: it read $POSTFLIGHT_CONFIG or ./postflight.yaml, another file than meant
    if explicit is not None:
        return explicit
    return os.environ.get("POSTFLIGHT_CONFIG") or DEFAULT_CONFIG


def _unnamed(explicit: str | None, flag: str) -> str | None:
    """Where a configuration nobody named on the command line came from, for a file not
    found: `file not found: postflight.yaml` alone left a first run (`postflight run` in
    another directory) guessing that a default was in play."""
    if explicit is not None:
        return None
    if os.environ.get("POSTFLIGHT_CONFIG"):
        return "from $POSTFLIGHT_CONFIG"
    return f"the default, in {os.getcwd()}: name the file with {flag}, or set $POSTFLIGHT_CONFIG"


def _load_config(
    path: str, unnamed: str | None = None, as_logs: bool = False, checks_of: str | None = None
) -> LoadedConfig | None:
    """The settings and their warnings, or None after printing every configuration error
    (a file not found with `unnamed`, where it came from); with `as_logs`, each error is a
    log record of its own (`_log_config_errors`). `checks_of`: only what `check` reads."""
    try:
        return load_config(path, checks_of=checks_of)
    except ConfigError as exc:
        said = ""
        if unnamed and [p.message for p in exc.problems] == [f"file not found: {path}"]:
            said = f" ({unnamed})"
        if as_logs:
            _log_config_errors(exc, said)
        else:  # the heading says the exit code, as each command's end says its own
            head, _, errors = (exc.render() + said).partition("\n")
            print(f"{ended(head, EXIT_USAGE)}\n{errors}", file=sys.stderr)
        return None


def _log_config_errors(exc: ConfigError, said: str) -> None:
    """Each error as one log record, with its file, field path, line and variable as
    fields: `run --log-format json` printed them as text, the only lines of its output a
    log shipper could not read, and those that say why the agent is not running."""
    for problem in exc.problems:
        log.error(
            "configuration error in %s: %s%s",
            exc.source,
            problem,
            said,
            extra={
                "config": exc.source,
                "field": problem.path or None,
                "line": problem.line,
                "variable": problem.variable,
            },
        )


def _fail_to_start(message: str, as_logs: bool) -> int:
    """`run` cannot start (its store, its port): one line, a log record with
    `--log-format json`; exit 2."""
    if as_logs:
        log.error("%s", message)
    else:
        print(error_line("run", message), file=sys.stderr)
    return EXIT_USAGE


def validate_command(args: argparse.Namespace) -> int:
    path = _config_path(args.path)
    loaded = _load_config(path, _unnamed(args.path, "validate-config PATH"))
    if loaded is None:
        return EXIT_USAGE
    envs = ", ".join(
        f"{name} ({counted(len(env.checks), 'check')}, {counted(len(env.rules), 'rule')},"
        f" {env.analysis.policy})"
        for name, env in loaded.settings.environments.items()
    )
    print(f"{STDIN_SOURCE if path == '-' else path}: valid — environments: {envs}")
    for warning in loaded.warnings:  # valid all the same: exit 0
        print(f"  warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _names_https(settings: Settings) -> bool:
    """Whether the configuration names an https URL (a target, a provider, an integration's
    API), which the daemon's first requests may ask for (`agent.deferred_ca`); True for one
    that cannot be written out, as every start read the CA bundle."""
    try:
        return '"https://' in settings.model_dump_json().lower()
    except ValueError:  # pydantic's serialisation error
        return True


def run_command(args: argparse.Namespace) -> int:
    from agent.logs import setup_logging
    from agent.observability import NewRelicUnusable, end_process_running_newrelic, init_newrelic
    from agent.store.location import store_location
    from common.redaction import Redactor

    path = _config_path(args.config)
    as_logs = args.log_format == "json"  # text: the errors as validate-config prints them
    # before the configuration, so that its errors are said in the format asked for
    setup_logging(args.log_format, args.log_level)
    loaded = _load_config(path, _unnamed(args.config, "--config PATH"), as_logs)
    if loaded is None:
        return EXIT_USAGE
    settings = loaded.settings
    from agent.deferred_ca import load_ca_certificates, read_at_first_handshake

    if _names_https(settings):
        load_ca_certificates(unverified=False)  # before the loop; the other verifies nothing
    else:
        read_at_first_handshake()
    from agent.observability import sentry_dsn_problem
    from agent.windows.heap import diagnostic_problems

    # variables read once it is up: said now, not as a crash
    problems = [*diagnostic_problems(), *filter(None, [sentry_dsn_problem()])]
    if problems:
        for problem in problems:
            _fail_to_start(problem, as_logs)
        return EXIT_USAGE
    setup_logging(args.log_format, args.log_level, Redactor(settings.secret_values()))
    # both as absolute paths: a relative store path resolves against the working
    # directory, so a start from another directory opens (or creates) another store
    shown = STDIN_SOURCE if path == "-" else os.path.abspath(path)
    log.info("config %s; store %s", shown, store_location(settings.store.url))
    for warning in loaded.warnings:  # once, at start: the daemon runs all the same
        log.warning("configuration: %s", warning)
    try:
        newrelic_on = init_newrelic()
    except NewRelicUnusable as exc:
        return _fail_to_start(f"the New Relic agent cannot start: {exc}", as_logs)
    from agent.api.listener import CannotListen
    from agent.app import serve
    from agent.store.base import StoreError

    async def main_loop() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        deadline = StopDeadline(settings.server.shutdown_timeout, EXIT_OK)

        def on_stop(sig: signal.Signals) -> None:
            if not stop.is_set():  # the first signal starts the bound, if its arrival did not
                deadline.arm()
                if sig == signal.SIGHUP:  # many daemons reload on it: said, as a warning
                    log.warning("SIGHUP: stopping%s", _NO_RELOAD)
                else:
                    log.info("%s: stopping", sig.name)
            stop.set()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_stop, sig)
            also_at_arrival(sig, deadline.arm)  # the bound counts from the signal's arrival
        await serve(settings, stop)

    try:
        run_daemon(main_loop())
        code = EXIT_OK
    except StoreError as exc:
        code = _fail_to_start(f"store error: {exc}", as_logs)
    except CannotListen as exc:
        code = _fail_to_start(f"cannot listen on {settings.server.listen}: {exc}", as_logs)
    except Exception:  # a bug: its traceback in the log's format, not beside it
        log.critical("postflight stopped on an unexpected error", exc_info=True)
        code = EXIT_CRASHED
    finally:
        # a second stop while the process ends is no crash (-15): the state is kept
        ignore_stops_from_now()
    if newrelic_on:
        end_process_running_newrelic(code)
    return code


_NO_RELOAD = (
    " (postflight does not reload its configuration on SIGHUP; start it again to apply a"
    " change: its windows resume from the store)"
)
"""Said with a stop by SIGHUP, the signal many daemons reload on."""


LEFT_BEHIND_S = 0.2
"""How long the event loop's end waits for tasks a stop left running (cancelled once more)."""


def run_daemon(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run(main)`, on uvloop when installed (the `fast` extra: cheaper timers and
    sockets), except that its end gives the tasks still running a moment, then names them
    and leaves them (`StopBudget.settle`): the stop already gave its parts their share of
    `server.shutdown_timeout`, and asyncio.run cancels what is left and waits until it ends,
    so a task that swallows its cancellation (a check's run a plugin keeps going) held the
    exit for good."""
    try:
        import uvloop

        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop
    loop = new_loop()
    asyncio.set_event_loop(loop)  # as asyncio.run has it, for code that asks for "the" loop
    try:
        loop.run_until_complete(main)
    finally:
        try:
            left = asyncio.all_tasks(loop)
            if left:
                loop.run_until_complete(StopBudget(LEFT_BEHIND_S).settle(left))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            ignore_stops_from_now(loop)  # before the close would leave them at SIG_DFL
            loop.close()


def check_command(args: argparse.Namespace) -> int:
    # only what it runs: a `${VAR}` of the server, a provider or another environment
    # need not be set (each was demanded of a CI step running one environment's checks)
    try:
        loaded = _load_config(
            _config_path(args.config), _unnamed(args.config, "--config PATH"), checks_of=args.env
        )
    except UnknownEnvironment as exc:
        print(error_line("check", unknown_environment(args.env, exc.known)), file=sys.stderr)
        return EXIT_USAGE
    if loaded is None:
        return EXIT_USAGE
    settings = loaded.settings
    env = settings.environments[args.env]
    if not env.checks:  # an empty table and "0 passed" read as a smoke step that passed
        nothing = (
            f"{args.env} has no checks: nothing ran (add them under environments.{args.env}.checks)"
        )
        print(f"postflight check: {ended(nothing, EXIT_OK)}", file=sys.stderr)
        return EXIT_OK
    from agent.metrics import Metrics
    from agent.windows.probing import EnvironmentProbe
    from checks.sessions import TargetSessions

    async def run_all() -> list[CheckResult]:
        sessions = TargetSessions()
        try:
            probe = EnvironmentProbe(args.env, env, sessions, Metrics(), settings.secret_values())
            try:
                results = list(await asyncio.gather(*(probe.run_once(c) for c in probe.checks)))
                # A run the agent's own stall made unreadable (`checks.lag`) says nothing of
                # the target: run it once more, alone
                for i, check in enumerate(probe.checks):
                    if _dropped(results[i]):
                        results[i] = await probe.run_once(check)
            finally:  # a load check's own connections, on a stop too
                await probe.close_checks()
        finally:
            await sessions.aclose()
        return results

    from common.redaction import visible

    results = asyncio.run(run_all())
    width = max([len(r.check) for r in results] + [5])
    print(f"{'CHECK':<{width}}  {'TYPE':<6}  {'RESULT':<7}  {'TIME':>8}  DETAIL")
    for r in results:
        shown = "dropped" if _dropped(r) else "pass" if r.ok else "ERROR" if r.bug else "FAIL"
        print(
            f"{r.check:<{width}}  {r.type:<6}  {shown:<7}  {format_duration(r.duration_s):>8}"
            f"  {visible(r.message)}"  # a target's words, its controls escaped
        )
    bugs = sum(1 for r in results if r.bug)
    failed = sum(1 for r in results if not r.ok and not r.bug)
    dropped = sum(1 for r in results if _dropped(r))
    summary = f"\n{len(results) - failed - dropped - bugs} passed, {failed} failed"
    if dropped:
        summary += f", {dropped} not judged (the agent itself was stalled; see DETAIL)"
    if bugs:
        # no evidence about the target, but no check either: a CI step must not pass on it
        summary += f", {bugs} not judged (a bug of the check itself; see DETAIL)"
    code = EXIT_FAILED if failed or dropped or bugs else EXIT_OK
    print(ended(summary, code))  # as `register --wait` ends, its exit code said
    return code


def _dropped(result: CheckResult) -> bool:
    """A run dropped as the agent's (`checks.lag`): neither a pass nor a failure."""
    return bool(result.details.get("dropped"))


def schema_command(args: argparse.Namespace) -> int:
    from agent.config_schema import config_schema

    text = json.dumps(config_schema(), indent=2) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            said = f"cannot write {args.output}: {exc.strerror or exc}"
            print(error_line("schema", said), file=sys.stderr)
            return EXIT_USAGE
    else:
        sys.stdout.write(text)
    return EXIT_OK
