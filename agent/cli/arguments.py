"""The flags of the commands that talk to an agent: `register`, `status`, `rollback`.

Apart from the commands themselves so that building the parser (for every command,
`--help` and each usage error included) imports no HTTP client and no API models:
a pipeline's `postflight register` pays for those once it has something to send.
"""

from __future__ import annotations

import argparse

from agent.records import DEPLOY_STATES


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("agent")
    group.add_argument(
        "--url", metavar="URL", help="the agent's base URL (default: $POSTFLIGHT_URL)"
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help="an API token: one of the agent's server.api_tokens or server.named_tokens"
        " (default: $POSTFLIGHT_TOKEN, else $POSTFLIGHT_API_TOKEN)",
    )
    group.add_argument(
        "--request-timeout",
        metavar="DURATION",
        default="10s",
        help="bound on each HTTP request (default: 10s)",
    )


def add_register_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `postflight register` (contract §1, plus a few documented extras)."""
    _connection_arguments(parser)
    parser.add_argument("--env", required=True, metavar="ENV", help="a configured environment")
    parser.add_argument("--version", required=True, metavar="V", help="the version deployed")
    parser.add_argument("--previous", metavar="V0", help="the version it replaces")
    parser.add_argument("--commit", metavar="SHA", help="the commit deployed")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label (repeatable, at most 32)",
    )
    parser.add_argument(
        "--window", metavar="DURATION", help="how long to watch (default: the environment's)"
    )
    parser.add_argument(
        "--deployed-at", metavar="TIME", help="RFC 3339 time the deploy went live (default: now)"
    )
    parser.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="makes retries of this registration safe (default: a fresh key per invocation)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="show progress until the window ends; exit 0 passed, 1 failed or rolled back,"
        " 3 inconclusive, cancelled, superseded or still open at --timeout",
    )
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        default=None,  # 30m; None tells a --timeout given without --wait (refused)
        help="with --wait, give up after this long (default: 30m)",
    )
    _output_arguments(parser)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `postflight status [ID] [--env ENV]`."""
    parser.add_argument("id", nargs="?", metavar="ID", help="a deploy id (default: recent ones)")
    parser.add_argument("--env", metavar="ENV", help="only this environment's windows")
    parser.add_argument("--state", choices=DEPLOY_STATES, help="only windows in this state")
    parser.add_argument(
        "--limit", type=int, default=20, metavar="N", help="how many windows, 1-200 (default: 20)"
    )
    _connection_arguments(parser)
    _output_arguments(parser)


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the deploy object(s) as JSON")
    out.add_argument("--quiet", "-q", action="store_true", help="print only deploy ids")


def add_rollback_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `postflight rollback ID --reason TEXT`."""
    parser.add_argument("id", metavar="ID", help="the deploy id (dep_…)")
    parser.add_argument("--reason", required=True, help="why: recorded, alerted and sent on")
    _connection_arguments(parser)
