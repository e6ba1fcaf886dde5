"""A baseline's samples in periods, each period slowed as a whole: what the rank and
exceedance tests' within-round correlations (`rank_bets`, `exceedance_bets`) are measured on."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from agent.analysis.stats import FloatArray


def slowed_periods(
    rng: np.random.Generator, common: float, spread: float, *, periods: int = 60, size: int = 30
) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Lognormal samples (log-sd `spread`), each period's times one shared lognormal factor
    (log-sd `common`): the samples sorted, and the period each came from."""
    period_of = np.repeat(np.arange(periods), size)
    shared = np.repeat(np.exp(common * rng.standard_normal(periods)), size)
    values = shared * rng.lognormal(0.0, spread, period_of.size)
    order = np.argsort(values, kind="stable")
    return values[order], period_of[order]
