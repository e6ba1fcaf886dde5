"""One collector a folder, however the command's paths interleave.

pytest 9.1 binds a conftest's fixtures to the first collector of its folder, and a
command naming a file of tests/ between two files of a subfolder (`pytest tests/e2e/a.py
tests/test_x.py tests/e2e/b.py`, with or without xdist) collects tests/ again for the
middle file, which made a second tests/e2e collector that no conftest fixture is bound
to: each test of the last file erred "fixture 'start_agent' not found", and one of
tests/api or tests/store got tests/conftest.py's `store` in place of its folder's
(pytest-dev/pytest#14971, #14997, #15071). Collecting a folder again now yields the
collector it made the first time, to which its conftest's fixtures are bound.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

_FOLDERS = pytest.StashKey[dict[Path, pytest.Directory]]()
"""A parent collector's folder collectors, by path."""


@pytest.hookimpl(wrapper=True)
def pytest_collect_directory(
    path: Path, parent: pytest.Collector
) -> Generator[None, pytest.Directory | None, pytest.Directory | None]:
    made = yield
    if made is None:
        return None
    return parent.stash.setdefault(_FOLDERS, {}).setdefault(path, made)
