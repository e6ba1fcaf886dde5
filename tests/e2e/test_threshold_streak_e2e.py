"""Contract §6's `failure_limit` ("threshold policy: consecutive failing rounds") on the
running agent: breaching rounds that never come `failure_limit` in a row fail nothing,
however many there are; `failure_limit` in a row fail the window at the last of them.
Only the judge's unit tests (tests/analysis) held the streak's reset on a passing round.

The target fails its requests in blocks of one round's probes (5), counted from the
deploy on, each block followed by at least one round's worth of answers that pass; the
rule's bound is `max: 0.5`, so a block that straddles two rounds breaches exactly one of
them (3 + 2 of 5) whatever the alignment of the agent's rounds to the target's count:
`BAD_RUN` blocks in a row breach exactly that many rounds in a row. The truth of how many
rounds breached is read from the stored rounds; the outcome from the API."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from agent.appkeys import STORE
from agent.store.base import Store
from tests.e2e.conftest import AgentFactory, LocalTarget, RunningAgent, environment, unless_held

PROBES = 5
"""An http check's probes a round, and the target's block of failures."""
REPEATS = 4
"""Runs of breaching rounds one short of `failure_limit` the window sees before all fail."""


class Blocks(LocalTarget):
    """Answers 200 until `arm(pattern)`; then request i (counted from the arming) fails
    with a 503 when `pattern[i // PROBES]` is true, and every request past the pattern
    fails (`then_bad`) or passes."""

    def __init__(self) -> None:
        super().__init__()
        self.pattern: list[bool] | None = None
        self.then_bad = False
        self.seen = 0
        self.failed = 0

    def arm(self, pattern: list[bool], *, then_bad: bool) -> None:
        self.pattern, self.then_bad, self.seen = pattern, then_bad, 0

    async def health(self, request: web.Request) -> web.Response:
        if self.pattern is None:
            return web.json_response({"status": "ok"})
        block = self.seen // PROBES
        self.seen += 1
        bad = self.pattern[block] if block < len(self.pattern) else self.then_bad
        if bad:
            self.failed += 1
            return web.json_response({"status": "error"}, status=503)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


def pattern(limit: int, repeats: int) -> list[bool]:
    """`limit - 1` bad blocks, then a good one, `repeats` times: each a run of breaching
    rounds one short of `limit`."""
    return ([True] * (limit - 1) + [False]) * repeats


async def breaching_runs(store: Store, deploy_id: str) -> list[int]:
    """The lengths of the window's runs of breaching rounds, in order, as stored."""
    rounds = await store.rounds(deploy_id)
    runs: list[int] = []
    previous = 0
    for stored in sorted(rounds, key=lambda r: r.number):
        streak = int(stored.summary["rules"]["errors"].get("streak") or 0)
        if streak == 1:
            runs.append(1)
        elif streak > previous and runs:
            runs[-1] = streak
        previous = streak
    return runs


@pytest.mark.timeout(120)
@pytest.mark.parametrize("limit", [2, 3])
async def test_breaching_rounds_fail_the_window_only_failure_limit_in_a_row(
    start_agent: AgentFactory, limit: int
) -> None:
    served = len(pattern(limit, REPEATS)) + 2
    target = Blocks()
    await target.start()
    # what `run` saw while the pattern was served: the deploy, its runs of breaching rounds
    seen: dict[str, Any] = {}
    try:

        async def run() -> tuple[RunningAgent, dict[str, Any]]:
            agent = await start_agent(
                environment(
                    "production",
                    target.url,
                    window="30s",
                    interval="400ms",
                    background_interval="1h",
                    probes=PROBES,
                    analysis=f"{{policy: threshold, failure_limit: {limit}}}",
                    rules=("{name: errors, source: checks, metric: error_rate, max: 0.5}",),
                )
            )
            await agent.stored_runs("production", 1)  # the background's one run, before
            target.arm(pattern(limit, REPEATS), then_bad=False)
            calm = await agent.register("production", "v-calm", window="30s")
            # every block of the pattern served, and a round of passes after it (or the
            # window ended: failed, which this test must say)
            seen["during"] = await agent.wait_until(
                calm["id"], lambda d: d["rounds"] >= served or d["state"] != "watching", 60
            )
            seen["runs"] = await breaching_runs(agent.app[STORE], calm["id"])
            target.arm([], then_bad=True)  # from now on every answer fails
            return agent, await agent.settled(calm["id"], within=60)

        final = await unless_held(run)
        during, runs = seen["during"], seen["runs"]
        # runs of breaching rounds one short of the limit, `REPEATS` of them: no failure
        assert during["state"] == "watching", during
        assert during["verdict"] is None, during
        assert len(runs) >= REPEATS and max(runs) == limit - 1, runs
        # then `limit` breaching rounds in a row fail it at the last of them
        assert final["state"] == "failed", final
        (rule,) = final["verdict"]["rules"]
        assert rule["outcome"] == "fail", rule
        evidence = rule["evidence"]
        assert evidence["failed_at_round"] == final["rounds"], evidence
        assert evidence["failing_rounds"] == list(
            range(final["rounds"] - limit + 1, final["rounds"] + 1)
        ), evidence
    finally:
        await target.stop()
