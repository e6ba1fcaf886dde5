"""`postflight`: the command line (contract §1). Exit codes are part of the contract.

Parses and dispatches. The commands live in their own modules, each imported only when
its command runs (see `_main`): `commands` (`register`, `status`) and `rollback` talk to
an agent, `config_commands` reads a configuration file (`run`, `check`,
`validate-config`, `schema`), `agent.demo` is the demo.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent import __version__
from agent.cli.arguments import (
    add_register_arguments,
    add_rollback_arguments,
    add_status_arguments,
)
from agent.cli.exits import EXIT_INTERRUPTED, EXIT_USAGE
from agent.cli.pipe import guard_streams


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"postflight: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


CONFIG_HELP = "config file (default $POSTFLIGHT_CONFIG or ./postflight.yaml)"
"""`run`, `validate-config` and `check` read the same one (`config_commands._config_path`)."""


def build_parser() -> argparse.ArgumentParser:
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
    run.add_argument("--config", help=CONFIG_HELP)

    validate = sub.add_parser("validate-config", help="check a configuration file")
    validate.add_argument("path", nargs="?", help=CONFIG_HELP)

    register = sub.add_parser("register", help="open a deploy window (for pipelines)")
    add_register_arguments(register)

    status = sub.add_parser("status", help="show one window or the recent ones")
    add_status_arguments(status)

    check = sub.add_parser("check", help="run every check of an environment once")
    check.add_argument("--config", help=CONFIG_HELP)
    check.add_argument("--env", required=True, help="environment name")

    rollback = sub.add_parser("rollback", help="ask the agent to roll a deploy back")
    add_rollback_arguments(rollback)

    sub.add_parser("demo", help="a self-contained demo: a good deploy, then a bad one")

    schema = sub.add_parser("schema", help="print the configuration's JSON Schema")
    schema.add_argument("--output", "-o", help="write to this file")
    return parser


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            found: argparse.ArgumentParser = action.choices[command]
            return found
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
    args, extra = parser.parse_known_args(argv)
    if extra:  # said with the command's own usage (`register … --window 10 minutes`), not
        # the top level's, which lists only the commands
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    # Imports here, by command: the HTTP client and the API models (`register`, `status`,
    # `rollback`), the settings with the judge's statistics and every plugin (`run`,
    # `check`, `validate-config`, `schema`) and the daemon (`run`, `demo`) each cost
    # hundreds of ms of CPU, and each command needs only its own (bench/cli_start.py).
    try:
        if args.command == "register":
            from agent.cli.commands import register_command

            return register_command(args)
        if args.command == "status":
            from agent.cli.commands import status_command

            return status_command(args)
        if args.command == "rollback":
            from agent.cli.rollback import rollback_command

            return rollback_command(args)
        if args.command == "validate-config":
            from agent.cli.config_commands import validate_command

            return validate_command(args)
        if args.command == "run":
            # first, before the imports: a stop while the daemon starts is a clean one
            from agent.cli.stop_signals import stop_cleanly_while_nothing_is_held

            stop_cleanly_while_nothing_is_held()
            from agent.cli.config_commands import run_command

            return run_command(args)
        if args.command == "check":
            from agent.cli.config_commands import check_command

            return check_command(args)
        if args.command == "schema":
            from agent.cli.config_commands import schema_command

            return schema_command(args)
        if args.command == "demo":
            from agent.demo import run_demo

            return run_demo()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        from checks.registry import CheckPluginError

        if not isinstance(exc, CheckPluginError):
            raise
        # a broken installation, found when the settings' check types are built: one line
        # naming the plugin and what to do, exit 2 as for a bad configuration; a record
        # for `run --log-format json`, whose every line a log shipper reads
        if args.command == "run" and args.log_format == "json":
            import logging

            from agent.logs import setup_logging

            setup_logging("json", args.log_level)
            logging.getLogger("postflight").error("%s", exc)
        else:
            print(f"postflight: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
