"""How the `postflight` commands look in a terminal: tables, colours, live progress.

Pure presentation of API models into text; it makes no requests, reads no flags
and decides no exit codes (that is `agent.cli.commands`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from agent.api.models import Deploy, RuleResult, deploy_json
from agent.cli.exits import ended
from agent.client import OPEN_STATES, ClientError
from common.breaching import Breach, breaching, past_their_bounds, unproven
from common.durations import format_duration
from common.redaction import visible
from common.times import rfc3339
from common.units import bounds_in_units, format_value
from common.words import counted, dry_run_unsent_note

HEARTBEAT_S = 60.0
"""Without a terminal, a line at least this often so CI logs show the wait is alive."""


def agent_away(error: ClientError) -> str:
    """The line `register --wait` says as the agent stops answering, once until it answers
    again (`AGENT_BACK`): at its registration as in its wait."""
    return f"  ! {error}; retrying until the timeout"


AGENT_BACK = "  agent reachable again"


SHORT = "short"
"""A decided verdict's threshold rule that passed past its bound in its last rounds with
data, short of `failure_limit`: shown `! pass`, never `✓ pass` beside its figure (a window
ended `✓ pass probe-errors 0.4 (max 0.05)`, the rule past its bound in its last round)."""


@dataclass
class Style:
    """Colours and symbols only on a terminal that wants them (NO_COLOR is honoured)."""

    color: bool = False

    @classmethod
    def for_stream(cls, stream: TextIO) -> Style:
        tty = isatty(stream)
        wants = not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        return cls(color=tty and wants)

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    @staticmethod
    def outcome_code(outcome: str) -> str:
        return {"pass": "32", "fail": "31", "inconclusive": "33", "breach": "33", SHORT: "33"}.get(
            outcome, "2"
        )

    def outcome(self, outcome: str, *, color: bool = True) -> str:
        """`✓ pass`, `✗ fail`, `? inconclusive`: readable without colour too (`SHORT`:
        `! pass`)."""
        symbol = {"pass": "✓", "fail": "✗", "inconclusive": "?", "breach": "!", SHORT: "!"}
        text = f"{symbol.get(outcome, '·')} {'pass' if outcome == SHORT else outcome}"
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


def isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _value(metric: str, value: float | None) -> str:
    """As an alert and the deploy page write a rule's value (`alerting.templates`): a rate
    in %, a latency as a duration, where this table's `0.0187` sat beside the alert's
    `1.875%` for the same baseline."""
    return format_value(metric, value)


def hms(moment: datetime) -> str:
    return rfc3339(moment)


def _left(deploy: Deploy) -> str:
    seconds = deploy.ends_at.timestamp() - time.time()
    return f"{format_duration(max(0, round(seconds)))} left" if seconds > 0 else "window over"


def _rules(deploy: Deploy) -> list[RuleResult]:
    if deploy.verdict is not None:
        return deploy.verdict.rules
    if deploy.progress is not None:
        return deploy.progress.rules
    return []


def _breaching(rule: RuleResult) -> Breach | None:
    """`breaching` of a rule as the API gives it: `✓ pass probe-errors 1 (max 0.05)` was
    read at 100% errors, `? inconclusive` beside a sequential rule paged `breached`."""
    return breaching(rule.outcome, rule.evidence)


def _shown(rule: RuleResult, pending: bool) -> tuple[str, str]:
    """The outcome and threshold a rule is shown with: a breach short of failing as
    `breach` while the window is pending, a pass so `SHORT` once decided, with how far
    along it is."""
    breach = _breaching(rule)
    bounds = _bounds(rule)
    if breach is None:
        return rule.outcome, bounds
    shown = "breach" if pending else SHORT if rule.outcome == "pass" else rule.outcome
    return shown, f"{bounds}, {breach.so_far}"


def _bounds(rule: RuleResult) -> str:
    """A rule's bounds as the deploy page and the alerts label them, a rate's in %:
    `12.5% (max 0.05)` read beside the page's `max 5%`."""
    return bounds_in_units(rule.metric, rule.threshold)


def _short_words(rule: RuleResult) -> str:
    """Why a `SHORT` pass passed, for its round line: `past max 0.05 in round 2: 1 of 2
    rounds in a row, too few to fail` (its figure is of that round, its last with data)."""
    evidence = rule.evidence or {}
    breach = _breaching(rule) or Breach("")
    if not breach.limit:  # the sequential warning's: evidence short of what fails it
        return f"past {_bounds(rule)} on the evidence: {breach.so_far}, too little to fail"
    rounds = [n for n in evidence.get("failing_rounds") or () if isinstance(n, int)]
    where = f" in round{'s' if len(rounds) > 1 else ''} {', '.join(map(str, rounds))}"
    return (
        f"past {_bounds(rule)}{where if rounds else ''}: {breach.streak} of {breach.limit}"
        " rounds in a row, too few to fail"
    )


def _figures_of(deploy: Deploy) -> str:
    """Which round the progress's figures are of (`progress.round`): they are refreshed
    every few rounds, so without it a table read as round `rounds`'s may be older."""
    progress = deploy.progress
    if progress is None or progress.round is None:
        return ""
    return f" (figures of round {progress.round})"


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
    # a cell's text may come from a target or a provider: its controls shown escaped
    cells = [[_truncate(visible(c), w) for c, w in zip(row, widths, strict=True)] for row in rows]
    sizes = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(s) for h, s in zip(headers, sizes, strict=True)).rstrip()]
    for row in cells:
        padded = [c.ljust(s) for c, s in zip(row, sizes, strict=True)]
        if paint is not None:
            padded = [paint(i, c, p) for i, (c, p) in enumerate(zip(row, padded, strict=True))]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def rules_table(rules: Sequence[RuleResult], style: Style, *, pending: bool = False) -> str:
    """`pending`: the rules are the progress's, not a decided verdict's (`_shown`)."""
    shown = [_shown(r, pending) for r in rules]
    rows = [
        [
            r.name,
            style.outcome(outcome, color=False),
            _value(r.metric, r.observed),
            _value(r.metric, r.baseline),
            threshold,
            r.detail,
        ]
        for r, (outcome, threshold) in zip(rules, shown, strict=True)
    ]
    outcomes = [outcome for outcome, _ in shown]
    row_of = iter(range(len(rules)))
    current = [0]

    def paint(column: int, value: str, padded: str) -> str:
        if column == 0:
            current[0] = next(row_of)
        if column != 1:
            return padded
        return style.paint(padded, style.outcome_code(outcomes[current[0]]))

    drawn = table(
        ["rule", "outcome", "observed", "baseline", "threshold", "detail"],
        rows,
        [
            32,
            16,
            12,
            12,
            40,
            DETAIL_WIDTH,
        ],  # a threshold with its streak or evidence: `max_increase 100%, 7,115 to 1 of 250,000`
        paint,
    )
    return drawn + "".join(
        f"\n{visible(r.name)}: {visible(r.detail)}"
        for r in rules
        if len(visible(r.detail)) > DETAIL_WIDTH
    )


NO_ROLLBACK = "no rollback configured: none was requested"
"""`status ID`'s rollback line of a failed window with no rollback configured: it showed
none, where a rollback still owed and one never asked for looked alike."""

DRY_RUN_STATE = "failed (dry run)"
"""The `status` table's state of a failed window whose rollback `rollback.dry_run` kept
unsent (`dry_run_unsent_note`): a plain `failed` read as one rolled back or refused, where the
end line and `status ID` say the rollback was not sent; its column is wide enough for it."""

DETAIL_WIDTH = 60
"""The detail column's width; a longer detail is cut there and said in full below the
table, where its end (the bug or the error that left a rule inconclusive) was lost."""


def details(deploy: Deploy, style: Style) -> str:
    """One window, as `postflight status ID` and the end of `register --wait` show it."""
    lines = [
        f"{deploy.id}  {deploy.environment}  {deploy.version}"
        + (f" (from {deploy.previous_version})" if deploy.previous_version else ""),
        f"  state     {style.state(deploy.shown_state)}"
        + (f": {note}" if (note := dry_run_unsent_note(deploy.state, deploy.rollback)) else ""),
        f"  deployed  {hms(deploy.deployed_at)}   ends {hms(deploy.ends_at)}"
        f"   rounds {deploy.rounds}",
    ]
    if deploy.commit:
        lines.append(f"  commit    {deploy.commit}")
    if deploy.labels:
        lines.append("  labels    " + ", ".join(f"{k}={v}" for k, v in deploy.labels.items()))
    if deploy.verdict is not None:
        v = deploy.verdict
        lines.append(
            f"  verdict   {style.outcome(v.outcome)} at {hms(v.decided_at)}"
            + (f": {visible(v.reason)}" if v.reason else "")
        )
    elif deploy.state not in OPEN_STATES:
        # superseded or cancelled: it ended with none, where `pending` (or `none yet`)
        # promised one; its last figures are still shown, as of their round
        progress = deploy.progress
        lines.append(
            f"  verdict   {style.dim('none')}: {deploy.state} before a verdict"
            + (
                _figures_of(deploy) + (f": {visible(progress.reason)}" if progress.reason else "")
                if progress is not None
                else ""
            )
        )
    elif deploy.progress is not None:
        lines.append(
            f"  verdict   {style.dim('pending')}"
            + _figures_of(deploy)
            + (f": {visible(deploy.progress.reason)}" if deploy.progress.reason else "")
        )
    else:
        lines.append(f"  verdict   {style.dim('none yet')}")
    rules = _rules(deploy)
    if rules:
        lines.append("")
        table_lines = rules_table(rules, style, pending=deploy.verdict is None).splitlines()
        lines.extend("  " + line for line in table_lines)
    if deploy.rollback is None and deploy.state == "failed":
        # a failed window without one said nothing of its rollback, as if one might come
        lines += ["", f"  rollback  {NO_ROLLBACK}"]
    if deploy.rollback is not None:
        rb = deploy.rollback
        status = f", last HTTP {rb.last_status}" if rb.last_status is not None else ""
        lines.append("")
        if rb.state == "skipped":  # dry run: no attempt was made, the reason says so
            why = visible(rb.last_error or "dry run")
            lines.append(f"  rollback  skipped ({why}); requested {hms(rb.requested_at)}")
            return "\n".join(lines)
        lines.append(
            f"  rollback  {rb.state} after {counted(rb.attempts, 'attempt')}"
            f"{status}; requested {hms(rb.requested_at)}"
        )
        if rb.last_error:  # why it is still pending, or failed: on-call's next step
            lines.append(f"            last attempt: {visible(rb.last_error)}")
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
            self._print(agent_away(error))
            self.unreachable = True

    def update(self, deploy: Deploy) -> None:
        if self.unreachable:
            self._print(AGENT_BACK)
            self.unreachable = False
        rules = _rules(deploy)
        pending = deploy.verdict is None  # a breach starting or clearing is a change too
        outcomes: dict[str, str] = {r.name: _shown(r, pending)[0] for r in rules}
        new_round = deploy.rounds != self.rounds
        shown = deploy.shown_state
        changed = outcomes != self.outcomes or shown != self.state
        quiet_too_long = time.monotonic() - self.last_line_at >= HEARTBEAT_S
        if deploy.rounds > 0 and (
            (new_round and (self.live or changed or quiet_too_long))
            or (changed and shown == "watching")
        ):
            self._print(self._round_line(deploy, rules))
        elif quiet_too_long and shown == "watching" and not self.live:
            self._print(f"  still watching: round {deploy.rounds}, {_left(deploy)}")
        elif shown == "scheduled" and shown != self.state:
            self._print(f"  scheduled: the first round starts at {hms(deploy.deployed_at)}")
        self.rounds, self.outcomes, self.state = deploy.rounds, outcomes, shown
        if shown in OPEN_STATES:
            self.frame = (self.frame + 1) % len(_SPINNER)
            where = f"round {deploy.rounds}" if deploy.rounds else "waiting for round 1"
            self._status(f"  {_SPINNER[self.frame]} {shown} · {where} · {_left(deploy)}")
        else:
            self._clear_status()

    def _round_line(self, deploy: Deploy, rules: Sequence[RuleResult]) -> str:
        head = f"  round {deploy.rounds:>3}"
        progress = deploy.progress if deploy.verdict is None else None
        if progress is not None and progress.round not in (None, deploy.rounds):
            head += _figures_of(deploy)
        if not rules:
            return f"{head}  {self.style.dim('no rules judged yet')}"
        parts = []
        for r in rules:
            outcome, threshold = _shown(r, deploy.verdict is None)
            if outcome == SHORT:
                threshold = _short_words(r)
            parts.append(
                f"{self.style.outcome(outcome)} {r.name} {_value(r.metric, r.observed)}"
                + (f" ({threshold})" if threshold else "")
            )
        if len(parts) <= 3:
            return f"{head}  " + "   ".join(parts)
        return head + "".join(f"\n      {p}" for p in parts)

    def finish(self) -> None:
        self._clear_status()


def summary(deploy: Deploy, style: Style, code: int) -> str:
    """`register --wait`'s end: the headline of how the window ended, with the exit `code`
    (`ended`), then its details."""
    headline = {
        "passed": "passed: the verdict passed (its reason says on what evidence)",
        "rolled_back": (
            "rolled back: the rollback target accepted the request (that starts the"
            " rollback; it is not known to be done)"
        ),
        "inconclusive": "inconclusive: neither passed nor failed (the rules below say why)",
        "cancelled": "cancelled: no verdict",
        "superseded": "superseded by a later registration: no verdict",
    }.get(deploy.state, deploy.state)
    if deploy.state == "failed":
        headline = _failed_headline(deploy)
    elif deploy.state == "inconclusive" and (
        past := [r.name for r in _verdict_rules(deploy) if unproven(r.outcome, r.evidence)]
    ):
        # as the alert's title: a regression may be live, not a window short of probes
        headline = f"inconclusive: {past_their_bounds(past)} (the rules below say how far)"
    elif deploy.state == "passed" and _threshold_pass(deploy):
        headline = (
            "passed: no rule failed (threshold policy: none past its bound failure_limit"
            " rounds in a row; a pass takes no evidence)"
        )
    elif deploy.state == "passed" and (lacking := _lacking_evidence(deploy)):
        judged = counted(len(_verdict_rules(deploy)), "rule")
        headline = (
            "passed: no rule failed, not on evidence (pass_on: no_failure passes what did"
            f" not fail; {lacking} of {judged} lacked evidence of being within bounds: DETAIL"
            " says how far each got)"
        )
    return f"\n{style.state(deploy.state, ended(headline, code))}\n\n{details(deploy, style)}"


def _failed_headline(deploy: Deploy) -> str:
    """`failed`'s end line, by where its rollback stands as the wait ends: "no rollback
    was delivered" was said alike of one never asked (none configured), one given up and
    one a dry run kept unsent (three different next steps), and a rollback still retried
    was said "requested" with no word of how far it got."""
    rollback = deploy.rollback
    if rollback is None:
        return "failed: the verdict failed; no rollback was requested (none is configured)"
    tried = counted(rollback.attempts, "attempt")
    if rollback.state == "pending":
        return "failed: a rollback was requested and is still being delivered" + (
            f" (not accepted after {tried} so far)" if rollback.attempts else ""
        )
    if note := dry_run_unsent_note(deploy.state, rollback):
        return f"failed: the verdict failed; {note}"
    if rollback.state == "failed":
        how = f"after {tried}, not delivered" if rollback.attempts else "unsent"
        return f"failed: the verdict failed; its rollback was given up {how} (below: why)"
    return f"failed: the verdict failed; its rollback is {rollback.state}"


def _lacking_evidence(deploy: Deploy) -> int:
    """How many rules of a pass lacked evidence of one: inconclusive, or passed by the
    sequential policy with a bound its evidence did not show holding. Only a pass under
    `pass_on: no_failure` has any (`evidence` passes every rule on evidence), whose
    headline said "its reason says on what evidence" of a rule ending "not enough
    evidence"."""
    return sum(
        1
        for r in _verdict_rules(deploy)
        if r.outcome == "inconclusive"
        or (
            r.outcome == "pass"
            and r.evidence.get("policy") == "sequential"
            and not _held(r.evidence.get("evidence"))
        )
    )


def _held(reached: Any) -> bool:
    """A sequential rule's `evidence` entries, each of a bound it reached: all held."""
    return (
        isinstance(reached, list)
        and bool(reached)
        and all(isinstance(r, dict) and r.get("holds") is True for r in reached)
    )


def _verdict_rules(deploy: Deploy) -> list[RuleResult]:
    """The rules of the deploy's verdict ([] before it has one)."""
    return deploy.verdict.rules if deploy.verdict is not None else []


def _threshold_pass(deploy: Deploy) -> bool:
    """A verdict every rule of which the threshold policy judged (its evidence's `policy`):
    its pass rests on no evidence, where the headline said "its reason says on what
    evidence", as a sequential pass on evidence does."""
    rules = _verdict_rules(deploy)
    return bool(rules) and all(r.evidence.get("policy") == "threshold" for r in rules)


def print_json(data: Deploy | list[Deploy] | dict[str, Any]) -> None:
    if isinstance(data, Deploy):
        payload: Any = deploy_json(data)
    elif isinstance(data, list):
        payload = [deploy_json(d) for d in data]
    else:
        payload = data
    print(json.dumps(payload, indent=2, ensure_ascii=False), flush=True)


def deploys_table(deploys: Sequence[Deploy], style: Style) -> str:
    rows = []
    for d in deploys:
        reason = d.verdict.reason if d.verdict is not None else ""
        rows.append(
            [
                d.id,
                d.environment,
                d.version,
                DRY_RUN_STATE if dry_run_unsent_note(d.state, d.rollback) else d.shown_state,
                str(d.rounds),
                hms(d.deployed_at),
                d.verdict.outcome if d.verdict is not None else "—",
                reason,
            ]
        )
    text = table(
        ["id", "environment", "version", "state", "rounds", "deployed", "verdict", "reason"],
        rows,
        [30, 24, 24, len(DRY_RUN_STATE), 6, 24, 12, 60],
    )
    if style.color:
        lines = text.splitlines()
        for i, d in enumerate(deploys, start=1):
            shown = d.shown_state
            lines[i] = lines[i].replace(f"  {shown} ", f"  {style.state(shown)} ", 1)
        text = "\n".join(lines)
    return text
