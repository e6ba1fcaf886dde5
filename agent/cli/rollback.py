"""`postflight rollback ID --reason TEXT` (contract §7): ask the agent for a manual
rollback. Exit 0 accepted, 1 refused (the deploy already has a rollback, or ended
cancelled or superseded), 2 usage, connection or auth error. Talks to the agent
only through `PostflightClient`; never decides anything itself.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.commands import UsageError, _connection, said_stopped
from agent.cli.exits import EXIT_USAGE, error_line
from agent.cli.stop_signals import run_said_stopped, stops_as_interrupt
from agent.client import ApiError, ClientError, PostflightClient
from common.redaction import visible

EXIT_ACCEPTED, EXIT_REFUSED = 0, 1


def rollback_command(args: argparse.Namespace) -> int:
    try:
        url, token, request_timeout = _connection(args)
        if not args.reason.strip():
            raise UsageError("--reason must not be empty")
    except UsageError as exc:
        print(error_line("rollback", str(exc)), file=sys.stderr)
        return EXIT_USAGE

    async def ask() -> int:
        async with PostflightClient(url, token, timeout=request_timeout) as api:
            deploy = await api.request_rollback(args.id, args.reason)
        rollback: str = deploy.rollback.state if deploy.rollback is not None else "?"
        if deploy.rollback is not None and deploy.rollback.state == "skipped":
            # a dry run: 'skipped' alone read as a rollback under way
            rollback += f" ({visible(deploy.rollback.last_error or 'dry run')})"
        elif deploy.rollback is not None and deploy.rollback.state != "delivered":
            # "accepted: pending" was the last word: where the webhook's answer shows
            rollback += f" (its delivery: postflight status {deploy.id})"
        print(
            f"rollback of {deploy.id} ({deploy.environment} {deploy.version}) accepted: {rollback}"
        )
        return EXIT_ACCEPTED

    try:
        with stops_as_interrupt():
            return run_said_stopped(ask())
    except KeyboardInterrupt as exc:  # the request may have reached the agent: said
        left = (
            f"the rollback of {args.id} may or may not have been requested"
            f" (postflight status {args.id} says)"
        )
        return said_stopped(exc, "rollback", left)
    except ApiError as exc:
        code = EXIT_REFUSED if exc.status == 409 else EXIT_USAGE
        print(error_line("rollback", str(exc), code), file=sys.stderr)
        return code
    except ClientError as exc:
        print(error_line("rollback", str(exc)), file=sys.stderr)
        return EXIT_USAGE
