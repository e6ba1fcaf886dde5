"""The tests one pytest-xdist worker runs one after another (`--dist loadgroup`, see
pyproject's addopts): those whose verdict rests on timing under load (latency baselines,
chaos, the demo), so two of them never starve each other. (Adding the CPU-bound tests
to the group made that worker the long pole and its timing tests no safer.)"""

from __future__ import annotations

import pytest

HEAVY = pytest.mark.xdist_group("heavy")
