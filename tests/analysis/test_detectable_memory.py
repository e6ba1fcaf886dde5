"""What a rule keeps of its can-detect searches stays as small as one search's, whatever
the traffic does.

The exceedance path (`SequentialRule._exceedance_rounds`: one float a round of the window)
was kept by traffic and scale, up to 1,024 paths a rule, and the traffic, rounded to two
digits, changes whenever probes are dropped or late (an agent behind, a target timing
out): `bench/footprint.py`'s 200 one-hour windows at 1 s on a loaded machine kept 23 MB of
paths in 4 minutes (tracemalloc), RSS 171 -> 405 MB in 10 (+195 MB/h), up to 29 MB a
rule. Only one search reads the paths it keeps (its look and its e-process bisect the same
scales), so a search at another traffic starts them afresh."""

from __future__ import annotations

import numpy as np

from tests.analysis.latency_rules import lognormal_rule


def kept_bytes(rule: object) -> int:
    return sum(a.nbytes for a in rule._exceeding.values())  # type: ignore[attr-defined]


def test_a_rule_whose_traffic_varies_keeps_one_searchs_paths() -> None:
    rule = lognormal_rule(np.random.default_rng(3), base_n=600, rounds=3600)
    first = rule._easiest(10.0)
    one_search = kept_bytes(rule)
    assert one_search > 0  # its exceedance test's paths, one float a round each
    for tenths in range(10, 100):  # 1.0 to 9.9 probes a round, as drops make it
        rule._easiest(tenths / 10)
    assert kept_bytes(rule) <= 2 * one_search
    assert rule._easiest(10.0) == first
