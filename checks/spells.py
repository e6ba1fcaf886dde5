"""A check's runs that raise about their target, logged once a spell, not once a probe.

Why: a run that raises about the target (a refused connection, a reset, an HTTP error:
`checks.bugs.about_target`) is a failed probe, and each was logged as a WARNING: at 40
probes a round, several checks and environments, a target that went away filled the log
when it mattered most. As the watcher's store-outage log does
(`agent.store.outages.StoreOutageLog`), the spell's first such run of a check, in an
environment and on a target, is a WARNING, and its end one INFO line: a run that
returns, once none has raised for `SPELL_QUIET_S` (a target failing some of its runs
is one spell, not a line pair per flip). A spell still raising is said again at most
every `SPELL_REMIND_S`. The runs themselves count as they did (the result, the metric);
the rest of the spell's are logged at DEBUG. No I/O but the log; the caller gives the
time (the event loop's).
"""

from __future__ import annotations

import dataclasses
import logging

from common.words import counted

SPELL_QUIET_S = 30.0
"""How long a check's runs must raise no more before one that returns ends its spell: a
round at the default `interval`."""

SPELL_REMIND_S = 600.0
"""The least time between two lines saying a spell goes on (a long outage, or one met
again by a later window with no run between that returned)."""

SpellKey = tuple[str, str, str]
"""(environment, check, target): where a spell is."""


@dataclasses.dataclass(slots=True)
class _Spell:
    began: float
    last: float
    """When a run last raised."""
    said_at: float
    """When the spell was last logged."""
    raised: int = 1
    since_said: int = 0
    """Runs that raised since the spell was last logged."""


class RaisingSpells:
    """The spells of raising runs under way, by environment, check and target."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self.open: dict[SpellKey, _Spell] = {}

    def raised(
        self, key: SpellKey, kind: str, now: float, said: str, *, timed_out: bool = False
    ) -> bool:
        """A run of `key`'s check (of type `kind`) raised about its target, `said` the
        exception's words (redacted; the line says "crashed", or "timed out" for a
        `timed_out` run, itself): logged as a WARNING when it begins a spell or reminds of
        one, else at DEBUG. True if it was a WARNING."""
        environment, check, target = key
        verb, still = ("timed out", "times out") if timed_out else ("crashed", "crashes")
        on = _on(target)
        spell = self.open.get(key)
        if spell is None:
            self.open[key] = _Spell(began=now, last=now, said_at=now)
            self._log.warning(
                "check %s (%s) %s in environment %s%s: %s (each such run is a failed"
                ' probe, counted in postflight_check_runs_total{result="error"}; logged once'
                " while its runs raise about the target, and when they stop)",
                check,
                kind,
                verb,
                environment,
                on,
                said,
            )
            return True
        spell.last = now
        spell.raised += 1
        spell.since_said += 1
        if now - spell.said_at >= SPELL_REMIND_S:
            self._log.warning(
                "check %s (%s) still %s in environment %s%s: %s (%s since the last"
                " line, %s in %s s)",
                check,
                kind,
                still,
                environment,
                on,
                said,
                counted(spell.since_said, "run"),
                counted(spell.raised, "run"),
                _seconds(now - spell.began),
            )
            spell.said_at, spell.since_said = now, 0
            return True
        self._log.debug("check %s %s in environment %s%s: %s", check, verb, environment, on, said)
        return False

    def returned(self, key: SpellKey, now: float) -> None:
        """A run of `key`'s check returned a result (a pass or a failure of the target):
        its spell, if one is on and quiet for `SPELL_QUIET_S`, ends, said once."""
        spell = self.open.get(key)
        if spell is None or now - spell.last < SPELL_QUIET_S:
            return
        del self.open[key]
        environment, check, target = key
        on = _on(target)
        self._log.info(
            "check %s in environment %s%s: its runs return again (%s raised about the"
            " target in %s s)",
            check,
            environment,
            on,
            counted(spell.raised, "run"),
            _seconds(spell.last - spell.began),
        )


def _on(target: str) -> str:
    """Where a spell is, after its environment: nothing for the deploy (most checks')."""
    return "" if target == "deploy" else f" (its {target})"


def _seconds(span: float) -> str:
    return f"{span:.1f}" if span < 10 else f"{span:.0f}"
