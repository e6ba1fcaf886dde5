"""Which stored rounds carry the judge's whole state, and how a restart resumes from them.

Pure: no I/O. The judge's state is a few kilobytes (mostly the latency sketch); storing
it with every round was most of the store's growth and of each round's JSON work. A round
stores it only when needed for an exact resume: a restart takes the latest stored state
and replays the observations of the rounds stored after it, which gives the very same
state only when those observations come back from the store unchanged and the judge
is compiled against the same baseline. So the state is stored every `STATE_EVERY`
rounds (a restart replays fewer), with a round whose observations would not come back
unchanged (more raw values than a round keeps, NaN), with a canary's rounds (their
baseline moves each round) and with a round that decides the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from agent.analysis.judge import STATE_VERSION, State
from agent.analysis.types import Observation
from agent.windows.evidence import RAW_VALUES, bounded_observation_dict, observation_from_dict

STATE_EVERY = 60
"""Rounds between two stored judge states (a minute at `interval: 1s`)."""


def stored_observations(
    observations: Mapping[str, Observation], *, exact: bool
) -> dict[str, dict[str, Any]]:
    """A round's observations as stored; `exact` keeps raw values unrounded (a round
    without the judge's state is replayed from them)."""
    return {k: bounded_observation_dict(v, exact=exact) for k, v in observations.items()}


def replays_exactly(observations: Mapping[str, Observation]) -> bool:
    """Whether these observations, stored and read back, are the ones the judge saw:
    every raw value kept, none NaN, and every other number finite (JSON keeps a float
    exactly; a NaN never compares equal, and a NaN or infinite statistic is stored as
    null). Checked without encoding them, since it is asked every round (a test holds it
    to the JSON round trip)."""
    return all(_replays_exactly(obs) for obs in observations.values())


def _replays_exactly(obs: Observation) -> bool:
    if len(obs.values) > RAW_VALUES or any(v != v for v in obs.values):
        return False  # raw values are stored as they are: only a NaN comes back unequal
    numbers = (obs.value, obs.quantile, obs.seconds, obs.dispersion)
    return all(v is None or math.isfinite(v) for v in numbers)


def stores_state(
    number: int,
    observations: Mapping[str, Observation],
    *,
    moving_baseline: bool,
    decided: bool,
    every: int = STATE_EVERY,
) -> bool:
    """Whether round `number` (1-based) is stored with the judge's whole state."""
    return moving_baseline or decided or number % every == 0 or not replays_exactly(observations)


def resume_point(
    summaries: Iterable[Mapping[str, Any]], *, version: int = STATE_VERSION
) -> tuple[State | None, list[dict[str, Observation]]]:
    """From a window's stored round summaries (in order): the latest stored judge state
    (None: start afresh) and the observations of every round after it, to replay.

    A state stored by another version of the judge (an upgrade mid-window) is not used:
    its round's observations are replayed instead, so the window resumes rather than
    failing (exactly when those observations were stored whole, else from what a round
    keeps of them)."""
    state: State | None = None
    replay: list[dict[str, Observation]] = []
    for summary in summaries:
        stored = summary.get("judge")
        if isinstance(stored, dict) and stored.get("v") == version:
            state, replay = stored, []
        else:
            obs = summary.get("observations", {})
            replay.append({k: observation_from_dict(v) for k, v in obs.items()})
    return state, replay
