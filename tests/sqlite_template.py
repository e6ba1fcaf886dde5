"""A migrated SQLite store to copy: the `store` fixtures' starting file (a plugin of the
suite, `tests/conftest.py`'s `pytest_plugins`)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent.store.sqlite import SqliteStore


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store made and migrated once a worker, then closed (its WAL folded in):
    the `store` fixtures open a copy of it (`shutil.copyfile`), the same schema with nothing
    in it. Each made its own, and its migrations' commit waited on the disk: 50-60 ms a
    test, where a copy is opened in 3-5 ms (the migrations on a new file still run here,
    in tests/store, and at every daemon's first start)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"

    async def make() -> None:
        db = SqliteStore(path)
        await db.open()
        await db.close()

    # in a thread of its own: asyncio.run wherever the first test that asks for it runs
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, make()).result()
    return path
