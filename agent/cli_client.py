"""`postflight register` and `postflight status` (contract §1): the pipeline's side.

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
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from pydantic import ValidationError

from agent.api.schemas import (
    STATES,
    Deploy,
    DeployRequest,
    RuleResult,
    format_rfc3339,
)
from agent.client import ApiError, ClientError, PostflightClient, WaitTimeout
from agent.durations import format_duration, parse_duration
from agent.records import WindowState

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130

STATE_EXIT: dict[str, int] = {
    "passed": EXIT_PASSED,
    "failed": EXIT_FAILED,
    "rolled_back": EXIT_FAILED,
    "inconclusive": EXIT_INCONCLUSIVE,
    "cancelled": EXIT_INCONCLUSIVE,
    "superseded": EXIT_INCONCLUSIVE,
}

POLL_INTERVAL_S = 2.0
HEARTBEAT_S = 60.0
"""Without a terminal, a line at least this often so CI logs show the wait is alive."""

_FLAG_OF_FIELD = {
    "environment": "--env",
    "version": "--version",
    "previous_version": "--previous",
    "commit": "--commit",
    "window": "--window",
    "deployed_at": "--deployed-at",
    "labels": "--label",
}


class UsageError(Exception):
    """Bad flags or environment: exit 2 with this message."""


# --- arguments ----------------------------------------------------------------------


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("agent")
    group.add_argument(
        "--url", metavar="URL", help="the agent's base URL (default: $POSTFLIGHT_URL)"
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help="an API token, one of server.api_tokens"
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
        default="30m",
        help="with --wait, give up after this long (default: 30m)",
    )
    _output_arguments(parser)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `postflight status [ID] [--env ENV]`."""
    parser.add_argument("id", nargs="?", metavar="ID", help="a deploy id (default: recent ones)")
    parser.add_argument("--env", metavar="ENV", help="only this environment's windows")
    parser.add_argument("--state", choices=STATES, help="only windows in this state")
    parser.add_argument(
        "--limit", type=int, default=20, metavar="N", help="how many windows (default: 20)"
    )
    _connection_arguments(parser)
    _output_arguments(parser)


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the deploy object(s) as JSON")
    out.add_argument("--quiet", "-q", action="store_true", help="print only deploy ids")


# --- presentation -------------------------------------------------------------------


@dataclass
class Style:
    """Colours and symbols only on a terminal that wants them (NO_COLOR is honoured)."""

    color: bool = False

    @classmethod
    def for_stream(cls, stream: TextIO) -> Style:
        tty = _isatty(stream)
        wants = not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        return cls(color=tty and wants)

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    @staticmethod
    def outcome_code(outcome: str) -> str:
        return {"pass": "32", "fail": "31", "inconclusive": "33"}.get(outcome, "2")

    def outcome(self, outcome: str, *, color: bool = True) -> str:
        """`✓ pass`, `✗ fail`, `? inconclusive`: readable without colour too."""
        symbol = {"pass": "✓", "fail": "✗", "inconclusive": "?"}.get(outcome, "·")
        text = f"{symbol} {outcome}"
        return self.paint(text, self.outcome_code(outcome)) if color else text

    def state(self, state: str, text: str | None = None) -> str:
        """`text` (default: the state's name) in the state's colour."""
        code = {
            "passed": "32;1",
            "failed": "31;1",
            "rolled_back": "31;1",
            "watching": "36",
            "scheduled": "36",
        }.get(state, "33")
        return self.paint(text if text is not None else state, code)

    def dim(self, text: str) -> str:
        return self.paint(text, "2")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _value(metric: str, value: float | None) -> str:
    """As the agent writes thresholds (`agent.analysis.describe`): durations for latencies,
    three significant digits otherwise, so `observed` and `max 0.05` read alike."""
    if value is None or value != value:
        return "n/a"
    if metric.startswith("latency") or "duration" in metric:
        return format_duration(value) if value >= 0 else f"{value:.3g}"
    return f"{value:.3g}"


def _hms(moment: datetime) -> str:
    return format_rfc3339(moment)


def _left(deploy: Deploy) -> str:
    seconds = deploy.ends_at.timestamp() - time.time()
    return f"{format_duration(max(0, round(seconds)))} left" if seconds > 0 else "window over"


def _rules(deploy: Deploy) -> list[RuleResult]:
    if deploy.verdict is not None:
        return deploy.verdict.rules
    if deploy.progress is not None:
        return deploy.progress.rules
    return []


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    widths: Sequence[int],
    paint: Callable[[int, str, str], str] | None = None,
) -> str:
    """A plain-text table: columns as wide as their content, capped at `widths`.

    `paint(column, value, padded)` may style a cell after padding, so colour codes
    never upset the alignment.
    """
    cells = [[_truncate(c, w) for c, w in zip(row, widths, strict=True)] for row in rows]
    sizes = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(s) for h, s in zip(headers, sizes, strict=True)).rstrip()]
    for row in cells:
        padded = [c.ljust(s) for c, s in zip(row, sizes, strict=True)]
        if paint is not None:
            padded = [paint(i, c, p) for i, (c, p) in enumerate(zip(row, padded, strict=True))]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def rules_table(rules: Sequence[RuleResult], style: Style) -> str:
    rows = [
        [
            r.name,
            style.outcome(r.outcome, color=False),
            _value(r.metric, r.observed),
            _value(r.metric, r.baseline),
            r.threshold,
            r.detail,
        ]
        for r in rules
    ]
    outcomes = [r.outcome for r in rules]
    row_of = iter(range(len(rules)))
    current = [0]

    def paint(column: int, value: str, padded: str) -> str:
        if column == 0:
            current[0] = next(row_of)
        if column != 1:
            return padded
        return style.paint(padded, style.outcome_code(outcomes[current[0]]))

    return table(
        ["rule", "outcome", "observed", "baseline", "threshold", "detail"],
        rows,
        [32, 16, 12, 12, 20, 60],
        paint,
    )


def details(deploy: Deploy, style: Style) -> str:
    """One window, as `postflight status ID` and the end of `register --wait` show it."""
    lines = [
        f"{deploy.id}  {deploy.environment}  {deploy.version}"
        + (f" (from {deploy.previous_version})" if deploy.previous_version else ""),
        f"  state     {style.state(deploy.state)}",
        f"  deployed  {_hms(deploy.deployed_at)}   ends {_hms(deploy.ends_at)}"
        f"   rounds {deploy.rounds}",
    ]
    if deploy.commit:
        lines.append(f"  commit    {deploy.commit}")
    if deploy.labels:
        lines.append("  labels    " + ", ".join(f"{k}={v}" for k, v in deploy.labels.items()))
    if deploy.verdict is not None:
        v = deploy.verdict
        lines.append(
            f"  verdict   {style.outcome(v.outcome)} at {_hms(v.decided_at)}"
            + (f": {v.reason}" if v.reason else "")
        )
    elif deploy.progress is not None:
        lines.append(
            f"  verdict   {style.dim('pending')}"
            + (f": {deploy.progress.reason}" if deploy.progress.reason else "")
        )
    else:
        lines.append(f"  verdict   {style.dim('none yet')}")
    rules = _rules(deploy)
    if rules:
        lines.append("")
        lines.extend("  " + line for line in rules_table(rules, style).splitlines())
    if deploy.rollback is not None:
        rb = deploy.rollback
        status = f", last HTTP {rb.last_status}" if rb.last_status is not None else ""
        lines.append("")
        lines.append(
            f"  rollback  {rb.state} after {rb.attempts} attempt{'s' if rb.attempts != 1 else ''}"
            f"{status}; requested {_hms(rb.requested_at)}"
        )
    return "\n".join(lines)


_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@dataclass
class Progress:
    """Live progress of `register --wait`.

    On a terminal: a line per round with each rule's outcome, and a status line
    redrawn in place. Elsewhere (CI logs): a line when something changes, and a
    heartbeat every minute, so a 15-minute window is a screenful, not 450 lines.
    """

    out: TextIO
    style: Style
    live: bool
    rounds: int = -1
    outcomes: dict[str, str] = field(default_factory=dict)
    state: str = ""
    last_line_at: float = field(default_factory=time.monotonic)
    status_shown: bool = False
    unreachable: bool = False
    frame: int = 0

    def _print(self, text: str) -> None:
        self._clear_status()
        print(text, file=self.out, flush=True)
        self.last_line_at = time.monotonic()

    def _clear_status(self) -> None:
        if self.status_shown:
            self.out.write("\r\x1b[K")
            self.status_shown = False

    def _status(self, text: str) -> None:
        if self.live:
            self.out.write("\r\x1b[K" + self.style.dim(text))
            self.out.flush()
            self.status_shown = True

    def unreachable_agent(self, error: ClientError) -> None:
        if not self.unreachable:
            self._print(f"  ! {error}; retrying until the timeout")
            self.unreachable = True

    def update(self, deploy: Deploy) -> None:
        if self.unreachable:
            self._print("  agent reachable again")
            self.unreachable = False
        rules = _rules(deploy)
        outcomes: dict[str, str] = {r.name: r.outcome for r in rules}
        new_round = deploy.rounds != self.rounds
        changed = outcomes != self.outcomes or deploy.state != self.state
        quiet_too_long = time.monotonic() - self.last_line_at >= HEARTBEAT_S
        if deploy.rounds > 0 and (
            (new_round and (self.live or changed or quiet_too_long))
            or (changed and deploy.state == "watching")
        ):
            self._print(self._round_line(deploy, rules))
        elif quiet_too_long and deploy.state == "watching" and not self.live:
            self._print(f"  still watching: round {deploy.rounds}, {_left(deploy)}")
        elif deploy.state == "scheduled" and deploy.state != self.state:
            self._print(f"  scheduled: the first round starts at {_hms(deploy.deployed_at)}")
        self.rounds, self.outcomes, self.state = deploy.rounds, outcomes, deploy.state
        if deploy.state in ("watching", "scheduled"):
            self.frame = (self.frame + 1) % len(_SPINNER)
            where = f"round {deploy.rounds}" if deploy.rounds else "waiting for round 1"
            self._status(f"  {_SPINNER[self.frame]} {deploy.state} · {where} · {_left(deploy)}")
        else:
            self._clear_status()

    def _round_line(self, deploy: Deploy, rules: Sequence[RuleResult]) -> str:
        head = f"  round {deploy.rounds:>3}"
        if not rules:
            return f"{head}  {self.style.dim('no rules judged yet')}"
        parts = [
            f"{self.style.outcome(r.outcome)} {r.name} {_value(r.metric, r.observed)}"
            + (f" ({r.threshold})" if r.threshold else "")
            for r in rules
        ]
        if len(parts) <= 3:
            return f"{head}  " + "   ".join(parts)
        return head + "".join(f"\n      {p}" for p in parts)

    def finish(self) -> None:
        self._clear_status()


# --- commands -----------------------------------------------------------------------


def _connection(args: argparse.Namespace) -> tuple[str, str, float]:
    url = getattr(args, "url", None) or os.environ.get("POSTFLIGHT_URL", "")
    token = (
        getattr(args, "token", None)
        or os.environ.get("POSTFLIGHT_TOKEN")
        or os.environ.get("POSTFLIGHT_API_TOKEN", "")  # the daemon's name, on its own host
    )
    if not url.strip():
        raise UsageError("no agent URL: pass --url or set $POSTFLIGHT_URL")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must start with http:// or https:// (got {url!r})")
    if not token.strip():
        raise UsageError(
            "no API token: pass --token or set $POSTFLIGHT_TOKEN (or $POSTFLIGHT_API_TOKEN)"
        )
    timeout = _duration(getattr(args, "request_timeout", None) or "10s", "--request-timeout")
    return url.strip(), token.strip(), max(timeout, 0.1)


def _duration(text: str, flag: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


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


def _deploy_request(args: argparse.Namespace) -> DeployRequest:
    fields: dict[str, Any] = {
        "environment": args.env,
        "version": args.version,
        "previous_version": getattr(args, "previous", None),
        "commit": getattr(args, "commit", None),
        "window": getattr(args, "window", None),
        "deployed_at": getattr(args, "deployed_at", None),
        "labels": _labels(getattr(args, "label", None) or []),
    }
    try:
        return DeployRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = [str(p) for p in first["loc"] if p != "[key]"]
        flag = _FLAG_OF_FIELD.get(loc[0], loc[0]) if loc else "arguments"
        detail = f" {loc[1]!r}" if len(loc) > 1 else ""
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise UsageError(f"{flag}{detail}: {msg}") from None


def _fail(command: str, message: str) -> int:
    print(f"postflight {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


def _exit_for(state: str) -> int:
    return STATE_EXIT.get(state, EXIT_INCONCLUSIVE)


def register_command(args: argparse.Namespace) -> int:
    """`postflight register …`; returns the exit code (see the module docstring).

    Reads from `args`: url, token, env, version, previous, commit, label (list of
    KEY=VALUE), window, deployed_at, idempotency_key, wait, timeout, json, quiet,
    request_timeout; absent attributes take their defaults.
    """
    try:
        url, token, request_timeout = _connection(args)
        request = _deploy_request(args)
        wait_s = _duration(getattr(args, "timeout", None) or "30m", "--timeout")
        key = getattr(args, "idempotency_key", None) or f"cli-{uuid.uuid4()}"
    except UsageError as exc:
        return _fail("register", str(exc))
    try:
        return asyncio.run(_register(args, url, token, request_timeout, request, key, wait_s))
    except KeyboardInterrupt:
        print("\ninterrupted; the agent keeps watching the deploy", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ClientError as exc:
        return _fail("register", str(exc))


async def _register(
    args: argparse.Namespace,
    url: str,
    token: str,
    request_timeout: float,
    request: DeployRequest,
    key: str,
    wait_s: float,
) -> int:
    as_json = bool(getattr(args, "json", False))
    quiet = bool(getattr(args, "quiet", False))
    wait = bool(getattr(args, "wait", False))
    out = sys.stderr if as_json else sys.stdout
    style = Style.for_stream(out)
    async with PostflightClient(url, token, timeout=request_timeout) as api:
        deploy, replayed = await api.register(request, idempotency_key=key)
        window = format_duration(deploy.ends_at.timestamp() - deploy.deployed_at.timestamp())
        if quiet:
            print(deploy.id, flush=True)
        elif not as_json or wait:
            note = " (already registered with this idempotency key)" if replayed else ""
            print(
                f"registered {deploy.version} in {deploy.environment}: {deploy.id}{note}\n"
                f"  watching for {window}, until {_hms(deploy.ends_at)}",
                file=out,
                flush=True,
            )
        if not wait:
            if as_json:
                _print_json(deploy)
            elif not quiet:
                print(f"  follow it with: postflight status {deploy.id}", file=out)
            return EXIT_PASSED
        progress = Progress(out=out, style=style, live=_isatty(out) and not quiet)
        try:
            final = await api.wait(
                deploy.id,
                give_up_after=wait_s,
                poll_interval=POLL_INTERVAL_S,
                on_update=None if quiet else progress.update,
                on_unreachable=None if quiet else progress.unreachable_agent,
            )
        except WaitTimeout as exc:
            progress.finish()
            if as_json:
                _print_json(exc.deploy)
            print(
                f"gave up waiting after {format_duration(round(exc.waited_s))}: {exc.deploy.id}"
                f" is still {exc.deploy.state} (postflight status {exc.deploy.id})",
                file=sys.stderr,
            )
            return EXIT_INCONCLUSIVE
        finally:
            progress.finish()
        if as_json:
            _print_json(final)
        elif not quiet:
            print(_summary(final, style), file=out)
        return _exit_for(final.state)


def _summary(deploy: Deploy, style: Style) -> str:
    headline = {
        "passed": "passed: no rule failed during the window",
        "failed": "failed: the verdict failed and no rollback was delivered",
        "rolled_back": "rolled back: the rollback webhook accepted the request",
        "inconclusive": "inconclusive: no rule had data to judge",
        "cancelled": "cancelled: no verdict (exit 3)",
        "superseded": "superseded by a newer deploy: no verdict (exit 3)",
    }.get(deploy.state, deploy.state)
    return f"\n{style.state(deploy.state, headline)}\n\n{details(deploy, style)}"


def _print_json(data: Deploy | list[Deploy] | dict[str, Any]) -> None:
    if isinstance(data, Deploy):
        payload: Any = data.model_dump(mode="json", by_alias=True)
    elif isinstance(data, list):
        payload = [d.model_dump(mode="json", by_alias=True) for d in data]
    else:
        payload = data
    print(json.dumps(payload, indent=2, ensure_ascii=False), flush=True)


def status_command(args: argparse.Namespace) -> int:
    """`postflight status [ID] [--env ENV]`: 0, or 2 on any error.

    Reads from `args`: id, env, state, limit, url, token, json, quiet, request_timeout.
    """
    try:
        url, token, request_timeout = _connection(args)
        limit = getattr(args, "limit", None)
        limit = 20 if limit is None else int(limit)
        if not 1 <= limit <= 200:
            raise UsageError("--limit must be between 1 and 200")
    except UsageError as exc:
        return _fail("status", str(exc))
    try:
        return asyncio.run(_status(args, url, token, request_timeout, limit))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ApiError as exc:
        if exc.status == 404 and getattr(args, "id", None):
            return _fail("status", f"no deploy {args.id}")
        return _fail("status", str(exc))
    except ClientError as exc:
        return _fail("status", str(exc))


async def _status(
    args: argparse.Namespace, url: str, token: str, request_timeout: float, limit: int
) -> int:
    style = Style.for_stream(sys.stdout)
    as_json = bool(getattr(args, "json", False))
    quiet = bool(getattr(args, "quiet", False))
    async with PostflightClient(url, token, timeout=request_timeout) as api:
        deploy_id = getattr(args, "id", None)
        if deploy_id:
            deploy = await api.get_deploy(deploy_id)
            if as_json:
                _print_json(deploy)
            elif quiet:
                print(deploy.state)
            else:
                print(details(deploy, style))
            return EXIT_PASSED
        state: WindowState | None = getattr(args, "state", None)
        page = await api.list_deploys(
            environment=getattr(args, "env", None), state=state, limit=limit
        )
    if as_json:
        _print_json(
            {
                "items": [d.model_dump(mode="json", by_alias=True) for d in page.items],
                "next": page.next,
            }
        )
    elif quiet:
        for d in page.items:
            print(d.id)
    elif not page.items:
        print("no deploy windows yet" + (f" in {args.env}" if getattr(args, "env", None) else ""))
    else:
        print(deploys_table(page.items, style))
    return EXIT_PASSED


def deploys_table(deploys: Sequence[Deploy], style: Style) -> str:
    rows = []
    for d in deploys:
        reason = d.verdict.reason if d.verdict is not None else ""
        rows.append(
            [
                d.id,
                d.environment,
                d.version,
                d.state,
                str(d.rounds),
                _hms(d.deployed_at),
                d.verdict.outcome if d.verdict is not None else "—",
                reason,
            ]
        )
    text = table(
        ["id", "environment", "version", "state", "rounds", "deployed", "verdict", "reason"],
        rows,
        [30, 24, 24, 12, 6, 24, 12, 60],
    )
    if style.color:
        lines = text.splitlines()
        for i, d in enumerate(deploys, start=1):
            lines[i] = lines[i].replace(f"  {d.state} ", f"  {style.state(d.state)} ", 1)
        text = "\n".join(lines)
    return text
