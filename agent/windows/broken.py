"""A part of the agent that raised during a window (a bug, not evidence about the deploy):
the window ends `inconclusive` naming it, pages on-call once, and is never rolled back.

Before, the exception ended the watch; the watcher logged it, claimed the window again,
and the same round raised again, for ever: no verdict, no alert, `register --wait` held
to its timeout. What is a bug: anything the judge raises (it is pure: the same state and
round raise again), and any other failure of a watch but the store's outage
(`store_outage`, retried as before) that repeats alike, making no progress
(`BUG_REPEATS`, `Watcher._bug_ends`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.records import DeployWindow, decided_verdict
from agent.settings import EnvironmentSettings
from agent.store.base import ProbeRun
from agent.windows.alert_once import alert_claim
from alerting.events import Alert
from common.redaction import truncate

if TYPE_CHECKING:  # the watch imports this module
    from agent.windows.lifecycle import WatchServices

log = logging.getLogger("postflight.window")

BUG_REPEATS = 3
"""Failures of a watch alike (the same exception type raised by the same line, no more than
the round under way stored between them) that make the watcher end its window as a bug: a
transient one passes before the third."""

MESSAGE_LIMIT = 300
"""The most of an exception's message a verdict's reason and its alert carry."""

_ROOT = Path(__file__).resolve().parents[2]
_PARTS = (
    ("agent/analysis/", "the judge"),
    ("agent/store/", "the store"),
    ("agent/providers/", "a provider"),
    ("alerting/", "alerting"),
    ("checks/", "a check"),
    ("agent/", "the window's watch"),
)
"""The parts by where their code is; a frame elsewhere (`common`, a library, a plugin) is
passed over for the part that called it."""


def part_of(exc: BaseException) -> str:
    """The part of the agent whose code raised `exc` (the innermost of its frames in one
    of `_PARTS`), in words: "the judge", "the store"…; "the window's watch" otherwise."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if path.is_relative_to(_ROOT):
            where = path.relative_to(_ROOT).as_posix()
            for prefix, part in _PARTS:
                if where.startswith(prefix):
                    return part
    return "the window's watch"


def raised_at(exc: BaseException) -> str:
    """The line that raised `exc` (`file:line` of its innermost frame), "" without one."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def raised_words(exc: BaseException, redact: Callable[[str], str]) -> str:
    """`exc` as a reason or an alert says it: its type and message, secrets redacted, at
    most `MESSAGE_LIMIT` of it."""
    said = truncate(redact(str(exc)), MESSAGE_LIMIT)
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


def bug_reason(part: str, exc: BaseException, redact: Callable[[str], str], when: str = "") -> str:
    """The verdict's reason: which part raised what, `when` ("at round 3" from the watch,
    "with 3 rounds stored" from the watcher), secrets redacted."""
    raised = raised_words(exc, redact)
    when = f" {when}" if when else ""
    return (
        f"{part} raised {raised}{when}: a bug in the agent (or a plugin), not evidence about"
        " the deploy; the window ends inconclusive and is never rolled back on it"
    )


async def end_broken(
    window: DeployWindow,
    env: EnvironmentSettings,
    s: WatchServices,
    reason: str,
    exc: BaseException,
    *,
    traced: bool = True,
    runs: Sequence[ProbeRun] = (),
) -> bool:
    """End `window` inconclusive for the bug `exc` (`reason`), its one alert claimed with
    the end (sent at once; `WindowAlerts.recover` sends it after a crash); logged as an
    ERROR, with the traceback when `traced`. False when it had ended or is no longer ours
    (the store refused the end: nothing sent, the bug a warning)."""
    now = s.clock()
    alert = Alert.for_window(
        window,
        "inconclusive",
        reason=reason,
        rollback_target=env.rollback.target if env.rollback else "webhook",
        on_evidence=False,
        bug=True,
    )
    rules = (window.verdict or {}).get("rules") or []  # the evidence so far, as it was shown
    verdict = decided_verdict("inconclusive", reason, now, rules)
    tags = env.alerts.tags
    if not await s.store.finish_window(
        window.id,
        "inconclusive",
        verdict,
        now,
        fence=window.fence,
        alerts=[alert_claim(alert, tags)],
        runs=runs,
    ):
        log.warning(
            "not ended as a bug, having ended or been taken over meanwhile: %s",
            reason,
            extra={"deploy_id": window.id, "environment": window.environment},
        )
        return False
    s.metrics.windows_total.labels(window.environment, "inconclusive").inc()
    log.error(
        "window inconclusive: %s",
        reason,
        exc_info=exc if traced else None,
        extra={"deploy_id": window.id, "environment": window.environment},
    )
    s.spawn(s.alerts.send_claimed(window, alert, tags, claimed_at=now))
    return True
