"""The tests one pytest-xdist worker runs one after another (`--dist loadgroup`, see
pyproject's addopts): those whose verdict rests on timing under load (latency baselines,
chaos, the demo) and the CPU-bound ones (schemathesis, the hypothesis fuzzers and folds)
that would otherwise starve them of the machine's two cores from the other worker."""

from __future__ import annotations

import pytest

HEAVY = pytest.mark.xdist_group("heavy")
