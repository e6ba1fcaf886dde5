"""The costly part of each deploy's page, built once per stored round.

Each round's event makes every open page of a deploy fetch its live part, and each fetch
read every round (with every probe's sample) and drew every chart again: a 720-round
window of 50 rules held the agent's loop 1.6 s per fetch, so ten open tabs made the
probes of every window it watches up to 13 s late. The fetches of one window at one
stored round now share the part `rounds_view` built (read and built once, off the loop).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.records import DeployWindow
from agent.web.view import DeployView

BUILT_WINDOWS = 16
"""Windows whose part is kept: the pages open at once in an incident, and a few more."""


@dataclass(frozen=True, slots=True)
class _Built:
    rounds: int
    state: str
    verdict: Any
    baseline: Any
    rules: object
    """The environment's configured rules it was built with (by identity)."""
    view: DeployView


class BuiltViews:
    """Each window's latest built part, kept while its stored round, state, verdict,
    baseline and configured rules are those it was built from; the `BUILT_WINDOWS` most
    recently shown windows only. A window's part is replaced by the next round's, and
    dropped when the window ends (an ended window's page is built once more, and kept
    as any other)."""

    def __init__(self, size: int = BUILT_WINDOWS) -> None:
        self._size = size
        self._built: OrderedDict[str, _Built] = OrderedDict()

    def get(self, window: DeployWindow, rules: object) -> DeployView | None:
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
        return built.view

    def put(self, window: DeployWindow, rules: object, view: DeployView) -> None:
        self._built[window.id] = _Built(
            window.rounds, window.state, window.verdict, window.baseline, rules, view
        )
        self._built.move_to_end(window.id)
        while len(self._built) > self._size:
            self._built.popitem(last=False)

    def __len__(self) -> int:
        return len(self._built)


BUILT_VIEWS = web.AppKey("built_views", BuiltViews)
