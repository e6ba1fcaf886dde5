"""How a provider whose fetches keep failing is logged: one WARNING when they start, at
most one reminder a minute counting the failed fetches in between, one INFO when it
answers again.

Why: the watcher asks each provider rule every round (and its missing baseline again),
so a provider down through a window logged the same WARNING twice a round: a 15 min
window of 30 s rounds, 60 lines per rule saying nothing new, the two an operator needs
(when it began, when it ended) lost among them. Nothing else is lost: each rule's detail
says why it is inconclusive, the window alerts once, and
`postflight_provider_requests_total{result="error"}` counts every failed fetch. The house
pattern of `agent.api.middleware.StoreRefusals`.

Which fetches an outage spans: any failure but the agent's own stall (`agent_lag`: the
provider did nothing wrong). It ends with an answer to a rule whose fetch failed during
it, or with any answer once no fetch has failed for a minute (the rules that failed may
belong to windows that ended). A rule that fails alone while the others are answered (a
query too slow, a bad NRQL) keeps the outage open, reminded once a minute, instead of
flapping between "failing" and "answers again" every round.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable

from common.durations import format_duration

REMIND_EVERY_S = 60.0
"""At most one line this often while a provider's fetches keep failing."""


class FailingFetches:
    """One provider's log of failed fetches: `failed()` for a rule's fetch that failed,
    `answered()` for one that did not."""

    def __init__(
        self,
        name: str,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._log = logger
        self._clock = clock
        self._failing: set[Hashable] = set()
        """The rules whose fetches failed during the outage under way."""
        self._began = -math.inf
        self._said_at = -math.inf
        self._failed_at = -math.inf
        self._untold = 0

    @property
    def down(self) -> bool:
        return bool(self._failing)

    def failed(self, rule: Hashable, label: str, error: str) -> None:
        """A fetch of `rule` (`label`: the rule and which period) failed with `error`."""
        now = self._clock()
        starts = not self._failing
        self._failing.add(rule)
        self._failed_at = now
        if starts:
            self._began = now
            self._log.warning(
                "%s: rule %s: %s (said again at most once a minute while its fetches fail)",
                self._name,
                label,
                error,
            )
        elif now - self._said_at < REMIND_EVERY_S:
            self._untold += 1
            return
        else:
            self._log.warning(
                "%s: still failing, for %s: rule %s: %s%s",
                self._name,
                format_duration(round(now - self._began)),
                label,
                error,
                self._since_the_last_line(),
            )
        self._said_at, self._untold = now, 0

    def answered(self, rule: Hashable, label: str) -> None:
        """A fetch of `rule` came back with no error: the outage under way may be over."""
        if not self._failing:
            return
        now = self._clock()
        if rule not in self._failing and now - self._failed_at < REMIND_EVERY_S:
            return  # another rule answered while one still fails: the outage goes on
        self._log.info(
            "%s answers again (rule %s), after %s of failed fetches%s",
            self._name,
            label,
            format_duration(round(now - self._began)),
            self._since_the_last_line(),
        )
        self._failing.clear()
        self._untold = 0

    def _since_the_last_line(self) -> str:
        if not self._untold:
            return ""
        plural = "es" if self._untold > 1 else ""
        return f" ({self._untold} more failed fetch{plural} since the last such line)"
