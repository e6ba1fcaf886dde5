"""`postflight`: the command line (contract §1). Exit codes are part of the contract.

Parses and dispatches. The commands live in their own modules, each imported only when
its command runs (see `_main`): `commands` (`register`, `status`) and `rollback` talk to
an agent, `config_commands` reads a configuration file (`run`, `check`,
`validate-config`, `schema`), `agent.demo` is the demo.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Sequence
from typing import Any

from agent import __version__
from agent.cli.arguments import (
    add_register_arguments,
    add_rollback_arguments,
    add_status_arguments,
)
from agent.cli.exits import EXIT_INTERRUPTED, EXIT_USAGE, ended, error_line
from agent.cli.pipe import guard_streams


class _Parser(argparse.ArgumentParser):
    json_errors = False
    """Say a usage error as one JSON log record (`run --log-format json`: `_main` sets it)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = _with_the_one_meant(self, message)
        if _Parser.json_errors:
            _log_error(f"usage error: {message} (see {self.prog} --help)")
        else:  # said as each command's other error ends say theirs, the exit code too
            self.print_usage(sys.stderr)
            print(f"{self.prog}: {ended(f'error: {message}', EXIT_USAGE)}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _with_the_one_meant(parser: argparse.ArgumentParser, message: str) -> str:
    """`message` with the command or flag a typo most likely meant (`did you mean
    register?`), as a configuration's unknown key says it."""
    from common.words import closest

    choice = re.match(r"argument COMMAND: invalid choice: '([^']*)'", message)
    if choice is not None:
        typed = choice.group(1)
        known = [
            name
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
            for name in action.choices
        ]
        meant = closest(typed, known) or next(  # `validate` for validate-config
            (name for name in known if name.startswith(typed)), None
        )
        if meant:
            hint = f"did you mean {meant}? commands: {', '.join(known)}"
            return f"argument COMMAND: invalid choice: {typed!r} ({hint})"
        return message
    if message.startswith("unrecognized arguments: "):
        flags = [f for f in parser._option_string_actions if f.startswith("--")]
        words = message.removeprefix("unrecognized arguments: ").split()
        for word in words:
            if word.startswith("--"):
                meant = closest(word.partition("=")[0], flags)
                if meant:
                    return f"{message} (did you mean {meant}?)"
    return message


def _asks_for_json_logs(argv: Sequence[str]) -> bool:
    """`run … --log-format json` (or `=json`, before or after `run`), read before parsing:
    a container's command with a typo (`--confg`) printed its usage as text, the one part
    of the daemon's output a log shipper could not read."""
    words = list(argv)
    asked = any(
        word == "--log-format=json" or (word, after) == ("--log-format", "json")
        for word, after in itertools.pairwise([*words, ""])
    )
    return asked and _command_word(words) == "run"


def _command_word(words: Sequence[str]) -> str | None:
    """The first word that is neither a top-level flag nor its value."""
    value_next = False
    for word in words:
        if value_next:
            value_next = False
        elif word in ("--log-format", "--log-level"):
            value_next = True
        elif not word.startswith("-"):
            return word
    return None


DURATION_FLAGS = ("--timeout", "--request-timeout", "--window")
"""The flags whose value is a duration (`agent.cli.arguments`)."""
_NEGATIVE = re.compile(r"-[\d.]")


def _negative_values_joined(argv: Sequence[str] | None) -> list[str]:
    """`--timeout -1s` as `--timeout=-1s`: argparse took `-1s` for a flag and said only
    "argument --timeout: expected one argument"; joined, the value is refused as any
    other ("--timeout: '-1s' is negative"), naming what is wrong with it."""
    words = list(sys.argv[1:] if argv is None else argv)
    joined: list[str] = []
    for word in words:
        if joined and joined[-1] in DURATION_FLAGS and _NEGATIVE.match(word):
            joined[-1] = f"{joined[-1]}={word}"
        else:
            joined.append(word)
    return joined


def _log_error(message: str, level: str = "info") -> None:
    """`message` as one JSON log record on stderr, before `run` has set up its logging."""
    import logging

    from agent.logs import setup_logging

    setup_logging("json", level)
    logging.getLogger("postflight").error("%s", message)


CONFIG_HELP = "config file, - for standard input (default $POSTFLIGHT_CONFIG or ./postflight.yaml)"
"""`run`, `validate-config` and `check` read the same one (`config_commands._config_path`)."""

LOG_FORMAT_HELP = "run's logs: text, or one JSON object a line (default: text)"
LOG_LEVEL_HELP = "run's least severe log level (default: info)"
AGENT_EXITS = "2 usage, connection or auth error (said in one line on stderr)"

VARIABLES = """environment:
  $POSTFLIGHT_CONFIG              the config file of run, check and validate-config
  $POSTFLIGHT__<SECTION>__<KEY>   overrides a config value (POSTFLIGHT__SERVER__LISTEN)
  $POSTFLIGHT_URL                 the agent's URL for register, status and rollback
  $POSTFLIGHT_TOKEN               their API token (else $POSTFLIGHT_API_TOKEN)
  $NO_COLOR                       no colours on a terminal (none off a terminal anyway)

Run `postflight COMMAND --help` for a command's flags and exit codes."""

COMMANDS: dict[str, tuple[str, str, list[str]]] = {
    # name: (summary in the list of commands, what it does, its exit codes: contract §1)
    "run": (
        "run the daemon",
        "Run the agent: its HTTP API, the deploy windows, alerts and rollbacks. SIGTERM,"
        " SIGINT or SIGHUP stops it (no new work, rounds checkpointed, deliveries in flight"
        " finished within server.shutdown_timeout) and keeps its state in the store; it"
        " does not reload its configuration.",
        [
            "0 clean stop",
            "1 an unexpected error (logged with its traceback)",
            "2 bad configuration, or a store or port it cannot use, or a usage error (an"
            " unknown option)",
        ],
    ),
    "validate-config": (
        "check a configuration file",
        "Load and validate a configuration: every error with its field path and file line;"
        " warnings (valid all the same) on stderr.",
        [
            "0 valid",
            "2 invalid (every error said), or a usage error (an unknown option, a PATH and a"
            " --config naming two files)",
        ],
    ),
    "register": (
        "open a deploy window (for pipelines)",
        "Register a deploy with the agent, which watches it for the environment's window."
        " With --wait, show its progress until the window ends; the exit code is then the"
        " verdict.",
        [
            "0 registered (with --wait: passed)",
            "1 failed or rolled back (--wait)",
            AGENT_EXITS,
            "3 no verdict (--wait): inconclusive, cancelled, superseded, or still open at"
            " --timeout",
            "129 hung up (SIGHUP), 130 interrupted (CTRL-C), 143 terminated (SIGTERM): the"
            " agent keeps watching a window it registered (the message names it)",
        ],
    ),
    "status": (
        "show one window or the recent ones",
        "Show one deploy window in detail, or the recent ones as a table, newest first.",
        ["0 shown", AGENT_EXITS + "; an unknown id or environment"],
    ),
    "check": (
        "run every check of an environment once",
        "Run every check of one environment once, here, with no agent, and print a table"
        " (a smoke-test step for CI).",
        [
            "0 all pass (or the environment has no checks)",
            "1 any fail, or could not be judged",
            "2 bad configuration or unknown environment, or a usage error (an unknown option,"
            " no --env)",
            "130 interrupted (CTRL-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP): said"
            " on stderr, nothing judged",
        ],
    ),
    "rollback": (
        "ask the agent to roll a deploy back",
        "Ask the agent for a rollback of one deploy, sent to its environment's rollback"
        " target with the same guarantees as an automatic one.",
        [
            "0 accepted",
            "1 refused (the deploy already has a rollback, or was cancelled or superseded)",
            AGENT_EXITS,
        ],
    ),
    "demo": (
        "a self-contained demo: a good deploy, then a bad one",
        "Start a local demo service and an agent on a SQLite store in a temp dir, ship a"
        " good deploy (it passes) then a bad one (rolled back), printing what happens. Needs"
        " no network and no accounts.",
        [
            "0 both outcomes as expected",
            "1 otherwise",
            "2 a usage error (an unknown option)",
            "130 interrupted (CTRL-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP): its"
            " agent stopped and its temp dir removed",
        ],
    ),
    "schema": (
        "print the configuration's JSON Schema",
        "Print the configuration's JSON Schema (for an editor's YAML language server).",
        [
            "0 printed (or written)",
            "2 cannot write --output, or a usage error (an unknown option)",
        ],
    ),
}


def _command(sub: Any, name: str) -> argparse.ArgumentParser:
    """The command's parser, its `--help` saying what it does and its exit codes."""
    summary, does, exits = COMMANDS[name]
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=does,
        epilog="\n".join(["exit codes:", *(f"  {code}" for code in exits)]),
        formatter_class=_LineWrapping,
    )
    return parser


class _LineWrapping(argparse.RawDescriptionHelpFormatter):
    """Wraps each line of a description or epilog on its own, an indented one under its
    first word (`exit codes:` and a code each line); only when help is shown: wrapping
    them as the parser is built cost every command 10 ms."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        lines = []
        for line in text.splitlines():
            inner = indent + " " * (len(line) - len(line.lstrip()))
            wrapped = textwrap.fill(
                line.strip(),
                width,
                initial_indent=inner,
                subsequent_indent=inner + ("    " if inner else ""),
            )
            lines.append(wrapped)
        return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="postflight",
        description="Post-deployment validation: watch a deploy, judge it, alert, roll back.",
        epilog=VARIABLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"postflight {__version__}",
        help="print postflight's version and exit",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help=LOG_FORMAT_HELP
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help=LOG_LEVEL_HELP,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = _command(sub, "run")
    # accepted after the command too (`postflight run --log-format json`)
    run.add_argument(
        "--log-format", choices=("text", "json"), default=argparse.SUPPRESS, help=LOG_FORMAT_HELP
    )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=argparse.SUPPRESS,
        help=LOG_LEVEL_HELP,
    )
    run.add_argument("--config", metavar="PATH", help=CONFIG_HELP)

    validate = _command(sub, "validate-config")
    validate.add_argument("path", nargs="?", metavar="PATH", help=CONFIG_HELP)
    validate.add_argument("--config", metavar="PATH", help="the same as PATH, as run takes it")

    add_register_arguments(_command(sub, "register"))
    add_status_arguments(_command(sub, "status"))

    check = _command(sub, "check")
    check.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    check.add_argument(
        "--env", required=True, metavar="ENV", help="a configured environment (required)"
    )

    add_rollback_arguments(_command(sub, "rollback"))
    _command(sub, "demo")

    schema = _command(sub, "schema")
    schema.add_argument(
        "--output", "-o", metavar="PATH", help="write it to this file (default: stdout)"
    )
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
        _Parser.json_errors = False
        sys.stdout.flush()  # here, through the guards, not at exit past them
        sys.stderr.flush()


def _main(argv: Sequence[str] | None) -> int:
    _Parser.json_errors = _asks_for_json_logs(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(_negative_values_joined(argv))
    if extra:  # said with the command's own usage (`register … --window 10 minutes`), not
        # the top level's, which lists only the commands
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    # Imports here, by command: the HTTP client and the API models (`register`, `status`,
    # `rollback`), the settings with the judge's statistics and every plugin (`run`,
    # `check`, `validate-config`, `schema`) and the daemon (`run`, `demo`) each cost
    # hundreds of ms of CPU, and each command needs only its own (bench/cli_start.py).
    try:
        if args.command in ("register", "status", "rollback"):
            from agent.deferred_ca import import_aiohttp_without_ca_certificates

            import_aiohttp_without_ca_certificates()  # read at an https request, if any
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
            args.path = _one_config_path(_command_parser(parser, args.command), args)
            from agent.cli.config_commands import validate_command

            return validate_command(args)
        if args.command == "run":
            # first, before the imports: a stop while the daemon starts is a clean one
            from agent.cli.stop_signals import stop_cleanly_while_nothing_is_held

            stop_cleanly_while_nothing_is_held(starting=True)
            from agent.deferred_ca import import_aiohttp_without_ca_certificates

            import_aiohttp_without_ca_certificates()  # read as the configuration says
            from agent.cli.config_commands import run_command

            return run_command(args)
        if args.command == "check":
            return _check_saying_a_stop(args)
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
            _log_error(str(exc), args.log_level)
        else:
            print(error_line(args.command, str(exc)), file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _one_config_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """validate-config's file, named as the contract's `PATH` or as `run` names it
    (`--config PATH`), or neither; two files named is a usage error, not one ignored."""
    path: str | None = args.path
    flag: str | None = args.config
    if path is None or flag is None or _same_file(path, flag):
        return flag if path is None else path
    parser.error(f"PATH {path} and --config {flag} name two files: give one")
    return None  # not reached: `error` exits


def _same_file(one: str, other: str) -> bool:
    """The same path, as written or from here (`a.yaml`, `./a.yaml`); `-` and an empty
    path only as themselves."""
    import os.path

    if one == other or {"", "-"} & {one, other}:
        return one == other
    return os.path.abspath(one) == os.path.abspath(other)


def _check_saying_a_stop(args: argparse.Namespace) -> int:
    """`postflight check`; SIGTERM (a CI job cancelled), SIGHUP or CTRL-C is said, exit 143,
    129 or 130: SIGTERM ended it silently (-15), the CI log saying nothing of the step.
    Set before the imports, a second of the command's time."""
    from agent.cli.exits import stopped_line
    from agent.cli.stop_signals import stopped_by, stops_as_interrupt

    try:
        with stops_as_interrupt():
            from agent.cli.config_commands import check_command

            return check_command(args)
    except KeyboardInterrupt as exc:
        word, code = stopped_by(exc)
        said = stopped_line("check", f"{word} before its checks ended: nothing judged", code)
        print(f"\n{said}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
