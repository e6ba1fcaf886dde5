"""Ville's inequality as a test's check: shared by the tests of stakes that must stay valid."""

from __future__ import annotations

import math

import numpy as np


def assert_within_ville(peaks: np.ndarray, levels: tuple[float, ...] = (1.0, 2.0, 3.0)) -> None:
    """The windows' largest log e-values (`peaks`) pass each x in `levels` no more often
    than e^-x (Ville's inequality for an e-process) plus three standard errors of that
    share over this many windows."""
    for x in levels:
        bound = math.exp(-x)
        slack = 3.0 * math.sqrt(bound * (1.0 - bound) / len(peaks))
        assert float(np.mean(peaks >= x)) <= bound + slack, (x, float(np.mean(peaks >= x)))
