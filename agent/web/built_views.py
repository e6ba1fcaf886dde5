"""The costly part of each deploy's page, built once per stored round.

Each round's event makes every open page of a deploy fetch its live part, and each fetch
read every round (with every probe's sample) and drew every chart again: a 720-round
window of 50 rules held the agent's loop 1.6 s per fetch, so ten open tabs made the
probes of every window it watches up to 13 s late. The fetches of one window at one
stored round now share the part `rounds_view` built and its HTML (read, built and
rendered once, off the loop).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.records import DeployWindow, RoundRecord
from agent.web.compression import Deflated
from agent.web.view import DeployView

BUILT_WINDOWS = 4
"""Windows whose part is kept: the pages open at once in an incident. ~19 MB each for 720
rounds of 50 rules (its HTML 2.6 MB, its rounds as drawn 16 MB)."""


@dataclass(frozen=True, slots=True)
class BuiltPage:
    view: DeployView
    """`rounds_view`: the clock's, the rollback's and the alerts' parts added per fetch."""
    rounds_html: str
    """Its rules, rounds and check failures rendered (`rounds.html`, markup-safe): 2.6 MB
    for 720 rounds of 50 rules, 0.3 s of CPU rendered again by every fetch."""
    deflated: Deflated | None = None
    """`rounds_html` deflated once (`gzip_around`): each tab's fetch gzipped it again,
    ~50 ms of CPU for 2.6 MB. None: each fetch's response is compressed whole."""


@dataclass(frozen=True, slots=True)
class _Built:
    rounds: int
    state: str
    verdict: Any
    baseline: Any
    rules: object
    """The environment's configured rules it was built with (by identity)."""
    page: BuiltPage
    kept: list[RoundRecord]
    """The rounds read so far, as the page draws them (`as_drawn`):
    the next build reads only the rounds stored since."""
    pooled: dict[str, int]


class BuiltViews:
    """Each watched window's latest built part, kept while its stored round, state,
    verdict, baseline and configured rules are those it was built from, with the rounds
    it read; the `BUILT_WINDOWS` most recently shown windows only. A window's part is
    replaced by the next round's, and dropped when the window ends."""

    def __init__(self, size: int = BUILT_WINDOWS) -> None:
        self._size = size
        self._built: OrderedDict[str, _Built] = OrderedDict()

    def get(self, window: DeployWindow, rules: object) -> BuiltPage | None:
        built = self._built.get(window.id)
        if built is None:
            return None
        if (
            built.rounds != window.rounds
            or built.state != window.state
            or built.rules is not rules
            or built.verdict != window.verdict
            or built.baseline != window.baseline
        ):
            return None
        self._built.move_to_end(window.id)
        return built.page

    def earlier(self, window: DeployWindow) -> tuple[list[RoundRecord], dict[str, int]]:
        """The rounds the window's latest build read (`as_drawn`) and its samples pooled
        per observation: none for a window that ended."""
        built = self._built.get(window.id)
        if built is None or not window.active:
            return [], {}
        return list(built.kept), dict(built.pooled)

    def put(
        self,
        window: DeployWindow,
        rules: object,
        page: BuiltPage,
        kept: list[RoundRecord],
        pooled: dict[str, int],
    ) -> None:
        """Keep `page` for the next fetches of the window's stored round; a window that
        ended is dropped (its page is read whole when opened: its rounds may be pruned)."""
        if not window.active:
            self._built.pop(window.id, None)
            return
        self._built[window.id] = _Built(
            window.rounds, window.state, window.verdict, window.baseline, rules, page, kept, pooled
        )
        self._built.move_to_end(window.id)
        while len(self._built) > self._size:
            self._built.popitem(last=False)

    def __len__(self) -> int:
        return len(self._built)


BUILT_VIEWS = web.AppKey("built_views", BuiltViews)
