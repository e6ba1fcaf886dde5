"""The heap set aside for the tests that count what a piece of code leaves for Python's
cycle collector (a pytest plugin, see tests/conftest.py).

Those tests turn the collector off (a collection would free what they look for), run the
code, and count the objects of a kind left (`gc.get_objects()`, or `gc.garbage` under
`gc.DEBUG_SAVEALL`), after a `gc.collect()` that frees what their warm-up left. In a whole
run's worker each such collection and count walked every object the worker held: hundreds
of thousands after a thousand tests, 0.6-0.9 s a collection at load 27 with a fresh
worker's heap, and the tests took 5-12 s each in a full run (the lean client's
closed-connection test 0.7 s alone, 10-12 s there) where their own work takes well under a
second. `heap_set_aside` freezes what exists as the test starts (`gc.freeze`: set aside as
it is, never walked, a list splice), so the test's collections and counts see only what it
made, as they did on a fresh heap; the test's own warm-up included."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture
def heap_set_aside() -> Iterator[None]:
    """What exists before the test is out of its collections and counts (frozen), and back
    in the collector's hands (its oldest generation) after it, to be kept or collected as
    before. Ask for it first (`pytest.mark.usefixtures`), before the fixtures whose objects
    the test counts."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
