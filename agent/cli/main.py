"""`postflight`: the command line (contract §1). Exit codes are part of the contract.

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
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from agent.cli.pipe import guard_streams

if TYPE_CHECKING:
    from agent.settings import Settings
    from agent.settings_file import LoadedConfig
    from checks.base import CheckResult

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"postflight: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _config_path(explicit: str | None) -> str:
    return explicit or os.environ.get("POSTFLIGHT_CONFIG") or "postflight.yaml"


def build_parser() -> argparse.ArgumentParser:
    from agent.cli.commands import add_register_arguments, add_status_arguments

    parser = _Parser(
        prog="postflight",
        description="Post-deployment validation: watch a deploy, judge it, alert, roll back.",
    )
    parser.add_argument("--version", action="version", version=f"postflight {__version__}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="run the daemon")
    # accepted after the command too (`postflight run --log-format json`)
    run.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS)
    run.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=argparse.SUPPRESS
    )
    run.add_argument(
        "--config", help="config file (default $POSTFLIGHT_CONFIG or ./postflight.yaml)"
    )

    validate = sub.add_parser("validate-config", help="check a configuration file")
    validate.add_argument("path", nargs="?", help="config file")

    register = sub.add_parser("register", help="open a deploy window (for pipelines)")
    add_register_arguments(register)

    status = sub.add_parser("status", help="show one window or the recent ones")
    add_status_arguments(status)

    check = sub.add_parser("check", help="run every check of an environment once")
    check.add_argument("--config", help="config file")
    check.add_argument("--env", required=True, help="environment name")

    from agent.cli.rollback import add_rollback_arguments

    rollback = sub.add_parser("rollback", help="ask the agent to roll a deploy back")
    add_rollback_arguments(rollback)

    sub.add_parser("demo", help="a self-contained demo: a good deploy, then a bad one")

    schema = sub.add_parser("schema", help="print the configuration's JSON Schema")
    schema.add_argument("--output", "-o", help="write to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    guard_streams()  # a reader that leaves early (`| head`) costs no traceback
    try:
        return _main(argv)
    finally:
        sys.stdout.flush()  # here, through the guards, not at exit past them
        sys.stderr.flush()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "validate-config":
            return _validate(args)
        if args.command == "run":
            return _run(args)
        if args.command == "register":
            from agent.cli.commands import register_command

            return register_command(args)
        if args.command == "status":
            from agent.cli.commands import status_command

            return status_command(args)
        if args.command == "rollback":
            from agent.cli.rollback import rollback_command

            return rollback_command(args)
        if args.command == "check":
            return _check(args)
        if args.command == "demo":
            from agent.demo import run_demo

            return run_demo()
        if args.command == "schema":
            return _schema(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        from checks.registry import CheckPluginError

        if not isinstance(exc, CheckPluginError):
            raise
        # a broken installation, found when the settings' check types are built: one line
        # naming the plugin and what to do, exit 2 as for a bad configuration
        print(f"postflight: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _load(path: str) -> Settings | None:
    """The settings, or None after printing every configuration error."""
    loaded = _load_config(path)
    return None if loaded is None else loaded.settings


def _load_config(path: str) -> LoadedConfig | None:
    """The settings and their warnings, or None after printing every configuration error."""
    from agent.settings_file import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    path = _config_path(args.path)
    loaded = _load_config(path)
    if loaded is None:
        return EXIT_USAGE
    envs = ", ".join(
        f"{name} ({len(env.checks)} checks, {len(env.rules)} rules, {env.analysis.policy})"
        for name, env in loaded.settings.environments.items()
    )
    print(f"{path}: valid — environments: {envs}")
    for warning in loaded.warnings:  # valid all the same: exit 0
        print(f"  warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from agent.logs import setup_logging
    from agent.observability import init_newrelic
    from agent.store.location import store_location
    from common.redaction import Redactor

    path = _config_path(args.config)
    loaded = _load_config(path)
    if loaded is None:
        return EXIT_USAGE
    settings = loaded.settings
    setup_logging(args.log_format, args.log_level, Redactor(settings.secret_values()))
    # both as absolute paths: a relative store path resolves against the working
    # directory, so a start from another directory opens (or creates) another store
    log.info("config %s; store %s", os.path.abspath(path), store_location(settings.store.url))
    for warning in loaded.warnings:  # once, at start: the daemon runs all the same
        log.warning("configuration: %s", warning)
    init_newrelic()
    from agent.app import serve
    from agent.store.base import StoreError

    async def main_loop() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    try:
        _event_loop_runner()(main_loop())
    except StoreError as exc:
        print(f"postflight: store error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"postflight: cannot listen on {settings.server.listen}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop when installed (the `fast` extra): cheaper timers and sockets."""
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner


def _check(args: argparse.Namespace) -> int:
    settings = _load(_config_path(args.config))
    if settings is None:
        return EXIT_USAGE
    env = settings.environments.get(args.env)
    if env is None:
        known = ", ".join(settings.environments)
        print(f"postflight: unknown environment {args.env!r} (known: {known})", file=sys.stderr)
        return EXIT_USAGE
    from agent.metrics import Metrics
    from agent.windows.probing import EnvironmentProbe
    from checks.sessions import TargetSessions

    async def run_all() -> list[CheckResult]:
        sessions = TargetSessions()
        try:
            probe = EnvironmentProbe(args.env, env, sessions, Metrics(), settings.secret_values())
            results = list(await asyncio.gather(*(probe.run_once(c) for c in probe.checks)))
            # A run the agent's own stall made unreadable (`checks.lag`) says nothing of the
            # target: run it once more, alone
            for i, check in enumerate(probe.checks):
                if _dropped(results[i]):
                    results[i] = await probe.run_once(check)
            for check in probe.checks:  # a load check's own connections
                aclose = getattr(check, "aclose", None)
                if aclose is not None:
                    await aclose()
        finally:
            await sessions.aclose()
        return results

    results = asyncio.run(run_all())
    width = max([len(r.check) for r in results] + [5])
    print(f"{'CHECK':<{width}}  {'TYPE':<6}  {'RESULT':<7}  {'TIME':>8}  DETAIL")
    for r in results:
        shown = "dropped" if _dropped(r) else "pass" if r.ok else "FAIL"
        print(
            f"{r.check:<{width}}  {r.type:<6}  {shown:<7}  {r.duration_s * 1000:>6.0f}ms"
            f"  {r.message}"
        )
    failed = sum(1 for r in results if not r.ok)
    dropped = sum(1 for r in results if _dropped(r))
    summary = f"\n{len(results) - failed - dropped} passed, {failed} failed"
    if dropped:
        summary += f", {dropped} not judged (the agent itself was stalled; see DETAIL)"
    print(summary)
    return EXIT_FAILED if failed or dropped else EXIT_OK


def _dropped(result: CheckResult) -> bool:
    """A run dropped as the agent's (`checks.lag`): neither a pass nor a failure."""
    return bool(result.details.get("dropped"))


def _schema(args: argparse.Namespace) -> int:
    from agent.config_schema import config_schema

    text = json.dumps(config_schema(), indent=2) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"postflight: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        sys.stdout.write(text)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
