"""`python -m tests.receivers target` as its own process: the target the replica tests'
daemons probe, so a busy test process is not a slow service to them."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.e2e.conftest import TargetProcess

pytestmark = pytest.mark.e2e


async def test_the_target_process_answers_by_the_mode_set_and_counts_what_came(
    target_process: TargetProcess,
) -> None:
    async with aiohttp.ClientSession() as http:

        async def statuses(n: int) -> list[int]:
            answers = []
            for _ in range(n):
                async with http.get(f"{target_process.url}/api/health") as r:
                    answers.append(r.status)
            return answers

        assert await statuses(5) == [200] * 5
        await target_process.go_bad()
        assert await statuses(5) == [503, 200, 200, 200, 503]  # the 6th and 10th: 2 in 5
        assert await target_process.arrivals() == 10  # the controls not counted
        await target_process.set_mode(bad=False, status=500, delay_ms=200)
        began = time.monotonic()
        assert await statuses(1) == [500]
        assert time.monotonic() - began >= 0.2
        await target_process.reset()
        assert await target_process.arrivals() == 0
        assert await statuses(2) == [200, 200]
