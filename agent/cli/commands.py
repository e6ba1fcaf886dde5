"""`postflight register` and `postflight status` (contract §1): the pipeline's side, as flow.

Flags in (`agent.cli.arguments` declares them), API calls, exit code out; how it looks
is `agent.cli.render`.

Exit codes are the contract: 0 passed, 1 failed or rolled back, 3 no verdict
(inconclusive, and also cancelled or superseded: nobody judged *this* deploy, so
a pipeline must not read it as a pass nor roll back for it), 2 usage, connection
or auth errors. `--wait` giving up before the window ends is also 3: the outcome
is unknown, not bad. Every error is one line on stderr, never a traceback.

Human output goes to stdout, progress included; with `--json` stdout carries
only the deploy object and progress moves to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from agent.api.models import LIST_LIMIT_MAX, Deploy, DeployRequest, deploy_json
from agent.cli.exits import (
    EXIT_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_PASSED,
    EXIT_USAGE,
    ended,
    error_line,
    stopped_line,
)
from agent.cli.render import (
    AGENT_BACK,
    Progress,
    Style,
    agent_away,
    deploys_table,
    details,
    hms,
    isatty,
    print_json,
    summary,
)
from agent.cli.stop_signals import run_said_stopped, stopped_by, stops_as_interrupt
from agent.client import ApiError, ClientError, PostflightClient, WaitTimeout, without_password
from agent.records import WindowState
from common.durations import format_duration, parse_duration
from common.words import counted

STATE_EXIT: dict[str, int] = {
    "passed": EXIT_PASSED,
    "failed": EXIT_FAILED,
    "rolled_back": EXIT_FAILED,
    "inconclusive": EXIT_INCONCLUSIVE,
    "cancelled": EXIT_INCONCLUSIVE,
    "superseded": EXIT_INCONCLUSIVE,
}

POLL_INTERVAL_S = 2.0
ROLLBACK_SETTLE_S = 30.0
"""How long `register --wait` follows a failed window's rollback still being delivered (a
first attempt's timeout is 10 s by default), so it says how the rollback went."""

WAIT_DEFAULT = "30m"
"""How long `register --wait` waits for the verdict unless `--timeout` says."""

_FLAG_OF_FIELD = {
    "environment": "--env",
    "version": "--version",
    "previous_version": "--previous",
    "commit": "--commit",
    "window": "--window",
    "deployed_at": "--deployed-at",
    "labels": "--label",
    "state": "--state",  # status's query
    "limit": "--limit",
}


class UsageError(Exception):
    """Bad flags or environment: exit 2 with this message."""


def _connection(args: argparse.Namespace) -> tuple[str, str, float]:
    url = args.url or os.environ.get("POSTFLIGHT_URL", "")
    token = (
        args.token
        or os.environ.get("POSTFLIGHT_TOKEN")
        or os.environ.get("POSTFLIGHT_API_TOKEN", "")  # the daemon's name, on its own host
    )
    if not url.strip():
        raise UsageError("no agent URL: pass --url or set $POSTFLIGHT_URL")
    url = _agent_url(url)
    if not token.strip():
        raise UsageError(
            "no API token: pass --token or set $POSTFLIGHT_TOKEN (or $POSTFLIGHT_API_TOKEN)"
        )
    timeout = _duration(args.request_timeout, "--request-timeout")
    return url, token.strip(), max(timeout, 0.1)


def _agent_url(given: str) -> str:
    """The agent's base URL as the client joins paths to it. Its scheme is read as RFC 3986
    has it, case-insensitively (`HTTP://…` was refused), and the spaces around it a CI
    variable can carry are dropped before it is read (a leading one was refused); a query
    or a fragment would end up before every path (`/?x=1/v1/deploys`, the agent's 404),
    so it is refused, named."""
    url = given.strip()
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        url = f"{scheme.lower()}://{rest}"
    if not url.startswith(("http://", "https://")):
        raise UsageError(
            f"--url must start with http:// or https:// (got {without_password(given)!r})"
        )
    if "?" in url or "#" in url:
        base = without_password(url.split("?", 1)[0].split("#", 1)[0])
        # what follows is not said back: a query may carry a token
        raise UsageError(
            "--url is the agent's base URL: without a query (?…) or a fragment (#…)"
            f" (got {base!r} and more)"
        )
    return url


def _duration(text: str, flag: str) -> float:
    """A bound on waiting (`--timeout`, `--request-timeout`): more than nothing. `0s` was
    taken (a request bound of 0.1 s, or `--wait` giving up at once), where a reader may
    have meant "no bound"."""
    _refuse_negative(text, flag, "30s or 10m")  # `-1` said "a duration must be a finite number"
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    if seconds == 0:
        raise UsageError(f"{flag}: {text!r} is no time: give it more than 0s (like 30s or 10m)")
    return seconds


def _refuse_negative(text: str, flag: str, like: str) -> None:
    """A duration flag's value written negative, said as such (`like`: examples to give);
    `-0s` is no time, not below it."""
    if text.lstrip().startswith("-"):
        with contextlib.suppress(ValueError):
            if parse_duration(text.lstrip()[1:]) == 0:
                raise UsageError(f"{flag}: {text!r} is no time: give it more than 0s (like {like})")
        raise UsageError(f"{flag}: {text!r} is negative: give it more than 0s (like {like})")


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--label {pair!r}: write it as KEY=VALUE")
        key = key.strip()
        if key in labels:
            raise UsageError(f"--label {key!r} is given twice")
        labels[key] = value
    return labels


def _given(text: str | None) -> str | None:
    """An optional flag's value, None when empty or blank (`--previous ""`)."""
    return text if text is not None and text.strip() else None


def _deploy_request(args: argparse.Namespace) -> DeployRequest:
    if args.window is not None:  # a negative one said "not a duration"
        _refuse_negative(args.window, "--window", "10m or 1h")
    fields: dict[str, Any] = {
        "environment": args.env,
        "version": args.version,
        # empty is "none": a pipeline's first deploy passes `--previous "$PREVIOUS"` unset
        "previous_version": _given(args.previous),
        "commit": _given(args.commit),
        "window": args.window,
        "deployed_at": args.deployed_at,
        "labels": _labels(args.label),
    }
    try:
        return DeployRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = [str(p) for p in first["loc"] if p != "[key]"]
        flag = _FLAG_OF_FIELD.get(loc[0], loc[0]) if loc else "arguments"
        detail = f" {loc[1]!r}" if len(loc) > 1 else ""
        msg = str(first["msg"]).removeprefix("Value error, ")
        ctx = first.get("ctx") or {}
        if first["type"] == "string_too_short" and ctx.get("min_length") == 1:
            msg = "must not be empty"  # pydantic's "String should have at least 1 character"
        elif first["type"] == "string_too_long":
            where = first["loc"]
            given = where[-2] if where[-1:] == ("[key]",) else _value_of(fields, list(where))
            length = f"is {len(given)} characters; " if isinstance(given, str) else ""
            msg = f"{length}at most {ctx.get('max_length')}"
        raise UsageError(f"{flag}{detail}: {msg}") from None


def _value_of(fields: dict[str, Any], loc: list[Any]) -> Any:
    """The value at `loc` of the request's fields, None where there is none."""
    node: Any = fields
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _fail(command: str, message: str) -> int:
    """A command's error end, exit 2, said with its code (`error_line`): a pipeline's log
    read `postflight status: …` and no word of the 2."""
    print(error_line(command, message), file=sys.stderr)
    return EXIT_USAGE


def _register_failed(message: str) -> int:
    return _fail("register", message)


def said_stopped(exc: KeyboardInterrupt, command: str, left: str) -> int:
    """A client command a signal stopped while it waited on the agent says so, with what was
    `left`, and exits 143, 129 or 130: SIGTERM (a pipeline's job cancelled) and SIGHUP ended
    it silently (-15, -1), the log saying nothing of what was asked."""
    word, code = stopped_by(exc)
    said = stopped_line(command, f"{word} before the agent answered: {left}", code)
    print(f"\n{said}", file=sys.stderr)
    return code


def _exit_for(state: str) -> int:
    return STATE_EXIT.get(state, EXIT_INCONCLUSIVE)


def register_command(args: argparse.Namespace) -> int:
    """`postflight register …`; returns the exit code (see the module docstring).

    `args` is what `agent.cli.arguments.add_register_arguments` parses (every flag has
    its attribute).
    """
    try:
        url, token, request_timeout = _connection(args)
        request = _deploy_request(args)
        wait_s = _duration(args.timeout or WAIT_DEFAULT, "--timeout")
        if args.timeout is not None and not args.wait:
            # it exited 0 once registered, before any verdict: a pipeline that meant to
            # wait passed every deploy
            raise UsageError(
                "--timeout is for --wait: without it register exits 0 once the deploy is"
                " registered, before any verdict (add --wait to wait for it)"
            )
        key = args.idempotency_key or f"cli-{uuid.uuid4()}"
    except UsageError as exc:
        return _register_failed(str(exc))
    registered: list[str] = []  # the deploy's id, once the agent has answered
    try:
        with stops_as_interrupt():
            return run_said_stopped(
                _register(args, url, token, request_timeout, request, key, wait_s, registered)
            )
    except KeyboardInterrupt as exc:
        # the id, for whoever pressed CTRL-C to follow it up (with --json or --quiet and a
        # window that had not started, it was printed nowhere else)
        if registered:
            said = f"the agent keeps watching {registered[0]} (postflight status {registered[0]})"
        else:  # the registration may have reached the agent; a retry with the key is safe
            said = (
                "the agent may or may not have registered the deploy; to be sure, run it again"
                f" with --idempotency-key {key}"
            )
        word, code = stopped_by(exc)
        print(f"\n{ended(f'{word}; {said}', code)}", file=sys.stderr)
        return code
    except ApiError as exc:
        return _register_failed(_in_flags(exc))
    except ClientError as exc:
        return _register_failed(str(exc))


async def _watching(api: PostflightClient, environment: str) -> list[Deploy]:
    """The environment's windows still watching just before this registration, which it
    may supersede ([] when the agent cannot say: the registration goes on without)."""
    try:
        return (await api.list_deploys(environment=environment, state="watching")).items
    except (ApiError, ClientError):
        return []


async def _cut_short(api: PostflightClient, before: list[Deploy], deploy: Deploy) -> list[str]:
    """Which of `before` are superseded now, read back from the agent: each ended with
    no verdict and fires nothing more (contract §2), which the pipeline whose deploy cut
    it short is told, not left to find out from `status`. Said as what the agent shows
    (another registration at the same instant may have been the one)."""
    said = []
    for old in before:
        if old.id == deploy.id:
            continue
        try:
            now = await api.get_deploy(old.id)
        except (ApiError, ClientError):
            continue
        if now.state == "superseded" and now.verdict is None:
            said.append(
                f"{now.id} ({now.version}) was still watching, after"
                f" {counted(now.rounds, 'round')}, and is"
                " superseded now: it ends without a verdict"
            )
    return said


def _in_flags(exc: ApiError) -> str:
    """The agent's 422, by the flags given rather than its fields: `--deployed-at: is 2h
    ahead …` (it said `deployed_at: …`, a name the command line does not have)."""
    if exc.status != 422 or not exc.field_errors:
        return str(exc)
    said = []
    for loc, msg in exc.field_errors:
        field, _, rest = loc.partition(".")
        flag = _FLAG_OF_FIELD.get(field, field)
        said.append(f"{flag}{f' {rest!r}' if rest else ''}: {msg}")
    return "; ".join(said) + f" (HTTP {exc.status})"


async def _register(
    args: argparse.Namespace,
    url: str,
    token: str,
    request_timeout: float,
    request: DeployRequest,
    key: str,
    wait_s: float,
    registered: list[str],
) -> int:
    as_json = bool(args.json)
    quiet = bool(args.quiet)
    wait = bool(args.wait)
    out = sys.stderr if as_json else sys.stdout
    style = Style.for_stream(out)
    async with PostflightClient(url, token, timeout=request_timeout) as api:
        says = not quiet and (not as_json or wait)
        before = await _watching(api, request.environment) if says else []
        away: list[ClientError] = []  # the registration's, while the agent is away

        def unreachable(error: ClientError) -> None:
            if not away:
                print(agent_away(error), file=out, flush=True)
            away.append(error)

        # with --wait the registration rides out an agent answering 503 (its store away) as
        # the wait's polls do, within --timeout: it tried for 1.5 s, then exited 2
        asked_at = time.monotonic()
        deploy, replayed = await api.register(
            request,
            idempotency_key=key,
            ride_out_s=wait_s if wait else 0.0,
            on_unreachable=None if quiet else unreachable,
        )
        if away:
            print(AGENT_BACK, file=out, flush=True)
        registered.append(deploy.id)
        window = format_duration(deploy.ends_at.timestamp() - deploy.deployed_at.timestamp())
        if quiet:
            print(deploy.id, flush=True)
        elif says:
            note = " (already registered with this idempotency key)" if replayed else ""
            if deploy.shown_state == "watching":
                what = f"watching for {window}, until {hms(deploy.ends_at)}"
            elif deploy.shown_state == "scheduled":
                what = (
                    f"scheduled: watching for {window} from {hms(deploy.deployed_at)},"
                    f" until {hms(deploy.ends_at)}"
                )
            else:  # decided at registration (a window that ended before it was registered)
                reason = f": {deploy.verdict.reason}" if deploy.verdict is not None else ""
                what = f"already {deploy.state}{reason}"
            print(
                f"registered {deploy.version} in {deploy.environment}: {deploy.id}{note}\n  {what}",
                file=out,
                flush=True,
            )
            said = deploy.verdict.reason if deploy.verdict is not None else None
            for warning in deploy.warnings or []:
                if not said or said not in warning:  # a late window's reason is said above
                    print(f"  warning: {warning}", file=out, flush=True)
            if not replayed:
                for cut in await _cut_short(api, before, deploy):
                    print(f"  note: {cut}", file=out, flush=True)
            if deploy.links.page:
                print(f"  page: {deploy.links.page}", file=out, flush=True)
        if not wait:
            if as_json:
                print_json(deploy)
            elif not quiet:
                print(f"  follow it with: postflight status {deploy.id}", file=out)
            return EXIT_PASSED
        progress = Progress(out=out, style=style, live=isatty(out) and not quiet)
        try:
            final = await api.wait(
                deploy.id,
                give_up_after=max(0.0, wait_s - (time.monotonic() - asked_at)),
                poll_interval=POLL_INTERVAL_S,
                settle_rollback=ROLLBACK_SETTLE_S,
                on_update=None if quiet else progress.update,
                on_unreachable=None if quiet else progress.unreachable_agent,
            )
        except WaitTimeout as exc:
            progress.finish()
            if as_json:
                print_json(_with_warnings(exc.deploy, deploy))
            waited = format_duration(round(exc.waited_s))
            if exc.unreachable is not None:  # the state is the last one heard, not today's
                said = (
                    f"{exc.deploy.id} was {exc.deploy.shown_state} when the agent last answered,"
                    f" and it has not answered since ({exc.unreachable})"
                )
            else:
                said = f"{exc.deploy.id} is still {exc.deploy.shown_state}"
            follow = f"follow it with postflight status {exc.deploy.id}"
            print(
                ended(
                    f"timeout: gave up waiting after {waited}: {said}; {follow}", EXIT_INCONCLUSIVE
                ),
                file=sys.stderr,
            )
            return EXIT_INCONCLUSIVE
        finally:
            progress.finish()
        code = _exit_for(final.state)
        if as_json:
            print_json(_with_warnings(final, deploy))
        elif not quiet:
            print(summary(final, style, code), file=out)
        return code


def _with_warnings(final: Deploy, registered: Deploy) -> Deploy:
    """The final object `--wait --json` prints, with the registration's `warnings` (only
    its answer carries them): a pipeline reading the JSON alone saw `null` where stderr
    said the window could not pass (live audit)."""
    if not registered.warnings:
        return final
    return final.model_copy(update={"warnings": registered.warnings})


def status_command(args: argparse.Namespace) -> int:
    """`postflight status [ID] [--env ENV]`: 0, or 2 on any error.

    `args` is what `agent.cli.arguments.add_status_arguments` parses (every flag has its attribute).
    """
    try:
        url, token, request_timeout = _connection(args)
        limit = int(args.limit)
        if not 1 <= limit <= 200:
            raise UsageError("--limit must be between 1 and 200")
    except UsageError as exc:
        return _fail("status", str(exc))
    try:
        with stops_as_interrupt():
            return run_said_stopped(_status(args, url, token, request_timeout, limit))
    except KeyboardInterrupt as exc:
        return said_stopped(exc, "status", "nothing shown")
    except ApiError as exc:
        if exc.status == 404 and args.id and exc.from_agent and not exc.field_errors:
            return _fail("status", f"no deploy {args.id}")
        return _fail("status", _in_flags(exc))
    except (ClientError, UsageError) as exc:
        return _fail("status", str(exc))


async def _status(
    args: argparse.Namespace, url: str, token: str, request_timeout: float, limit: int
) -> int:
    style = Style.for_stream(sys.stdout)
    as_json = bool(args.json)
    quiet = bool(args.quiet)
    async with PostflightClient(url, token, timeout=request_timeout) as api:
        deploy_id = args.id
        if deploy_id:
            deploy = await api.get_deploy(deploy_id)
            # the filters of a list, given with one id: said, not silently ignored
            if args.env and deploy.environment != args.env:
                raise UsageError(f"{deploy.id} is in {deploy.environment}, not {args.env}")
            if args.state and args.state not in (deploy.state, deploy.shown_state):
                raise UsageError(f"{deploy.id} is {deploy.shown_state}, not {args.state}")
            if as_json:
                print_json(deploy)
            elif quiet:
                print(deploy.shown_state)
            else:
                print(details(deploy, style))
            return EXIT_PASSED
        state: WindowState | None = args.state
        page = await api.list_deploys(environment=args.env, state=state, limit=limit)
    if as_json:
        print_json(
            {
                "items": [deploy_json(d) for d in page.items],
                "next": page.next,
            }
        )
    elif quiet:
        for d in page.items:
            print(d.id)
    elif not page.items:
        what = f"no {args.state} deploy windows" if args.state else "no deploy windows yet"
        print(what + (f" in {args.env}" if args.env else ""))
    else:
        print(deploys_table(page.items, style))
        if page.next is not None:  # else the list looks whole; stdout stays the table
            more = (
                f"more with --limit {min(2 * limit, LIST_LIMIT_MAX)}"
                if limit < LIST_LIMIT_MAX
                else "narrow it with --env or --state"
            )
            print(f"(the {limit} newest shown; {more})", file=sys.stderr)
    return EXIT_PASSED
