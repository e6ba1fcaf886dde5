"""Contract §6, "every key in it must do what its comment says", for the example's
`feed-latency` load check (`rate: 20/s  # open model: constant arrival rate`), through the
real `postflight check` process: its duration cut to 1 s, at a target answering each
request after 300 ms, the target counts the rate's requests (a second of warm-up and the
measured second: 40), several open at once (a closed model, one answer awaited before the
next request, holds one), and the row passes. Only the check's unit tests
(tests/checks/test_checks_load.py) held the open model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from checks.load import LoadCheckConfig
from tests.cli_process import awaited_cli

pytestmark = pytest.mark.timeout(120)

SPEC = Path("/work/shared/spec/postflight.example.yaml")
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = SPEC if SPEC.exists() else ROOT / "config" / "postflight.example.yaml"

ANSWER_S = 0.3


def example_load_check() -> dict[str, Any]:
    """The example's `feed-latency` check of production, as written, but for a 1 s run."""
    production = yaml.safe_load(EXAMPLE.read_text())["environments"]["production"]
    check: dict[str, Any] = next(c for c in production["checks"] if c["name"] == "feed-latency")
    assert (check["type"], check["rate"]) == ("load", "20/s"), check
    return {**check, "duration": "1s"}


class Feed:
    """/api/feed answering after `ANSWER_S`: how many came, and the most open at once."""

    def __init__(self) -> None:
        self.hits = self.open = self.most_open = 0

    async def feed(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await asyncio.sleep(ANSWER_S)
            return web.json_response({"items": []})
        finally:
            self.open -= 1


@pytest.fixture
async def feed() -> AsyncIterator[tuple[Feed, TestServer]]:
    counted = Feed()
    app = web.Application()
    app.router.add_get("/api/feed", counted.feed)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield counted, server
    await server.close()


async def test_the_examples_load_check_sends_its_rate_whatever_the_answers_take(
    tmp_path: Path, feed: tuple[Feed, TestServer]
) -> None:
    counted, server = feed
    check = example_load_check()
    warm, measured = LoadCheckConfig.model_validate(check).requests()
    assert (warm, measured) == (20, 20)  # the default 1 s warm-up, and 1 s, at 20/s
    config = tmp_path / "postflight.yaml"
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        "environments:\n  production:\n"
        f"    base_url: {str(server.make_url('')).rstrip('/')}\n"
        f"    checks:\n      - {json.dumps(check)}\n"
    )
    code, out = await awaited_cli("check", "--config", str(config), "--env", "production")
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.startswith("feed-latency "))
    assert row.split()[2] == "pass", out
    assert counted.hits == warm + measured, (counted.hits, out)
    # 20/s of 300 ms answers: ~6 open at once; one at a time would be a closed model
    assert counted.most_open >= 3, (counted.most_open, out)
