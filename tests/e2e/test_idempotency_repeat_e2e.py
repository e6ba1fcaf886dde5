"""`Idempotency-Key` repeats on two `postflight run` replicas of one PostgreSQL whose
configurations differ in production's window (10m, and 15m on the replica started with
the changed configuration), as a pipeline's retries reach them (contract §2): a repeat
that leaves out the window the environment gives, or gives the one it left out, is the
same request, replayed; one that leaves it out where the configuration it reaches now
gives another is a 409 saying so; and the key the daemon stored is one the versions
before replay (tests/api/test_idempotency_versions.py pins their comparison)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.api.test_idempotency_versions import session_41_replays, session_42_replays
from tests.e2e.conftest import TOKEN, FlipTarget, environment
from tests.e2e.test_replicas import Daemon

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def config(pg_url: str, target: str, window: str) -> str:
    return (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: {pg_url}\n"
        "environments:\n"
        + textwrap.indent(
            environment("production", target, window=window, background_interval="1h"), "  "
        )
    )


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Daemon]]:
    daemons: list[Daemon] = []
    yield daemons
    for daemon in daemons:
        daemon.kill()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, daemon: Daemon, body: dict[str, Any], key: str
) -> tuple[int, Any]:
    async with http.post(
        f"{daemon.url}/v1/deploys", json=body, headers={"Idempotency-Key": key}
    ) as r:
        return r.status, await r.json()


async def test_repeats_across_a_changed_default_window(
    tmp_path: Path,
    pg_url: str,
    flip_target: FlipTarget,
    started: list[Daemon],
    http: aiohttp.ClientSession,
) -> None:
    ten = Daemon(tmp_path, "ten", config(pg_url, flip_target.url, "10m"), "replica-10m")
    started.append(ten)
    fifteen = Daemon(tmp_path, "fifteen", config(pg_url, flip_target.url, "15m"), "replica-15m")
    started.append(fifteen)
    await ten.ready(http)
    await fifteen.ready(http)
    bare = {"environment": "production", "version": "v1"}

    # left out on the 10m replica, then given as its 10m: one request, on either replica
    status, first = await post(http, ten, bare, "k-left-out")
    assert status == 201, first
    for daemon, repeat in (
        (ten, {**bare, "window": "10m"}),
        (fifteen, bare),  # the same body, whatever the configuration it reaches
        (fifteen, {**bare, "window": 600, "labels": None}),
    ):
        status, again = await post(http, daemon, repeat, "k-left-out")
        assert (status, again) == (200, first), (daemon.config.name, repeat, again)

    # given as 10m, then left out: the same on the 10m replica; the 15m one's is 15m now
    given = {"environment": "production", "version": "v2", "window": "10m"}
    status, second = await post(http, ten, given, "k-given")
    assert status == 201, second
    status, again = await post(http, ten, {**given, "window": None}, "k-given")
    assert (status, again) == (200, second), again
    status, refused = await post(
        http, fifteen, {"environment": "production", "version": "v2"}, "k-given"
    )
    assert status == 409, refused
    assert refused["type"].endswith("idempotency-key-reused")
    assert (
        f"it registered production v2 ({second['id']}), and this one differs in window"
        " (left out: production's window is 15m now, and the key's deploy is watched for 10m)."
        in refused["detail"]
    ), refused["detail"]

    # a version before, as a replica of a rolling upgrade, replays these keys' repeats
    conn = await asyncpg.connect(pg_url)
    try:
        stored = dict(await conn.fetch("SELECT key, request_hash FROM idempotency"))
    finally:
        await conn.close()
    for replays in (session_41_replays, session_42_replays):
        assert replays(stored["k-left-out"], {**bare, "labels": {}})
        assert replays(stored["k-given"], given)
        assert not replays(stored["k-given"], {**given, "version": "v3"})
    async with http.get(f"{ten.url}/v1/deploys?environment=production") as r:
        assert [d["version"] for d in (await r.json())["items"]] == ["v2", "v1"]
