"""A window's latency sketch costs little memory per bucket: its buckets keep growing for
the whole window as the tails fill in (about 280 per window after 30 minutes at 200
windows), so what each new bucket costs, times the windows, is the agent's memory growth
(it was 170 bytes a bucket: ~12 MB/h at 200 windows, the footprint goal being 10)."""

from __future__ import annotations

import json
import math
import tracemalloc

from agent.analysis import sketch

BUCKET = math.log(sketch.GAMMA)


def _value(index: int) -> float:
    """A latency that falls in bucket `index`."""
    return math.exp((index - 0.5) * BUCKET)


def test_sketches_share_their_bucket_keys() -> None:
    a: dict[str, int] = {}
    b: dict[str, int] = {}
    sketch.add(a, [_value(-400), _value(-300)])
    sketch.add(b, [_value(-300)] * 100)  # the numpy path
    sketch.add(b, [_value(-400)])
    assert a.keys() == b.keys() == {"-400", "-300"}
    for key in a:
        assert next(k for k in b if k == key) is key


def test_a_new_bucket_costs_a_window_under_80_bytes() -> None:
    windows, buckets = 50, 120
    sketches: list[dict[str, int]] = [sketch.add({}, [0.001]) for _ in range(windows)]
    readers = [sketch.Reader() for _ in range(windows)]
    sketch.add({}, [_value(-500 + i) for i in range(buckets)])  # the process has seen them
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(buckets):  # a bucket more each round, read each round
            for sk, reader in zip(sketches, readers, strict=True):
                sketch.add(sk, [_value(-500 + i), 0.001])
                reader.quantile(sk, 0.95)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert all(len(sk) == buckets + 1 for sk in sketches)
    assert grown / (windows * buckets) < 80


def test_the_reader_follows_another_sketch_of_as_many_buckets() -> None:
    """The reader keeps no key set: a sketch with as many buckets but others, or one read
    back from the store (keys of its own), is read as `quantile` reads it."""
    reader = sketch.Reader()
    first = sketch.add({}, [_value(-400), _value(-390), _value(-380)])
    other = sketch.add({}, [_value(-200), _value(-190), _value(-180)])
    stored = json.loads(json.dumps(sketch.add(dict(first), [_value(-100)])))
    for sk in (first, other, first, stored, sketch.add(stored, [_value(-50)] * 5)):
        for q in (0.0, 0.5, 0.95, 1.0):
            assert reader.quantile(sk, q) == sketch.quantile(sk, q)
