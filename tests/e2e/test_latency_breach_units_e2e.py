"""The README's "The rollback webhook": for a latency rule, `observed` and `baseline` are
seconds, as numbers, and `threshold` is the rule's bound as text with its unit, as the
receiver gets them from a real `postflight run` whose latency rules fail (an absolute
bound and one relative to the background probes' baseline), on the threshold policy and on
the sequential one (the default) alike."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.cli_process import started_run, stop_run
from tests.e2e.conftest import LocalTarget
from tests.ports import free_port
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

TOKEN = "units-api-token-0123456789"
SECRET = "units-rollback-secret"
README = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
SLOW_S = 0.2
"""How long the release answers: far past the 20ms bound and the baseline's +20%, and past
any delay a loaded agent adds to its own readings (the overload guard's)."""


class Target(LocalTarget):
    """Answers at once until `slow`, then in `SLOW_S`."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = False

    async def health(self, request: web.Request) -> web.Response:
        if self.slow:
            await asyncio.sleep(SLOW_S)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)


RULES = {
    "p95-bound": ("{name: p95-bound, source: checks, metric: latency_p95, max: 20ms}", "max 20ms"),
    "p95-growth": (
        "{name: p95-growth, source: checks, metric: latency_p95, max_increase: 20%}",
        "max_increase 20%",
    ),
}
"""Each rule as configured, and its `threshold` as the receiver should read it."""

POLICIES = {
    "threshold": "{policy: threshold, failure_limit: 1}",
    "sequential": "{policy: sequential}",
}
"""Each policy's `analysis`. The threshold one rolls back at the first failing round, both
rules failing in it; the sequential one as soon as one rule has the evidence, its breach
alone in the body (the bound's after 9 samples, before the growth's), so each rule is a run
of its own there."""

CASES = [
    ("threshold", ("p95-bound", "p95-growth")),
    ("sequential", ("p95-bound",)),
    ("sequential", ("p95-growth",)),
]


def configuration(
    tmp_path: Path, port: int, target: str, receiver: str, policy: str, rules: tuple[str, ...]
) -> Path:
    path = tmp_path / "postflight.yaml"
    path.write_text(f"""\
server: {{listen: "127.0.0.1:{port}", api_tokens: [{TOKEN}]}}
store: {{url: "sqlite:///{tmp_path / "postflight.db"}"}}
environments:
  production:
    base_url: {target}
    window: 30s
    interval: 1s
    lookback: 1m
    background_interval: 200ms
    probes_per_round: 3
    checks:
      - {{name: health, type: http, path: /health}}
    analysis: {POLICIES[policy]}
    rules: [{", ".join(RULES[rule][0] for rule in rules)}]
    rollback: {{url: "{receiver}", secret: {SECRET}}}
""")
    return path


async def background_runs(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(f"{url}/metrics") as r:
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("postflight_check_runs_total{") and 'environment="production"' in line
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("policy", "rules"), CASES, ids=[f"{p}-{'+'.join(r)}" for p, r in CASES])
async def test_a_latency_breach_sends_seconds_and_the_bound_as_written(
    tmp_path: Path,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
    policy: str,
    rules: tuple[str, ...],
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    target = Target()
    await target.start()
    port = free_port()
    config = configuration(tmp_path, port, target.url, receiver.url, policy, rules)
    log = tmp_path / "agent.log"
    agent = await started_run(config, log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            # a baseline of background runs before the deploy: 40, where at 10 the sequential
            # growth rule could "detect no regression of any size four times in five" and
            # its window ended inconclusive (at 40: +41% or more, failed after 12 samples)
            for _ in range(600):
                try:
                    if await background_runs(http, url) >= 40:
                        break
                except aiohttp.ClientConnectionError:
                    pass
                assert agent.returncode is None, log.read_text()
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"fewer than 40 background runs in 60 s: {log.read_text()}")
            target.slow = True
            headers = {"Authorization": f"Bearer {TOKEN}"}
            body = {"environment": "production", "version": "v2"}
            async with http.post(f"{url}/v1/deploys", json=body, headers=headers) as r:
                assert r.status == 201, await r.text()
            for _ in range(600):
                if receiver.attempts:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"no rollback within 60 s: {log.read_text()}")
    finally:
        await stop_run(agent)
        await target.stop()
    assert receiver.attempts, log.read_text()
    breaches = {b["rule"]: b for b in json.loads(receiver.attempts[0].body)["breaches"]}
    assert sorted(breaches) == sorted(rules), breaches
    for rule, breach in breaches.items():
        assert breach["threshold"] == RULES[rule][1], breach
        # seconds: the release's 200 ms answers, not 200 (ms) nor "200ms"
        assert isinstance(breach["observed"], float), breach
        assert SLOW_S <= breach["observed"] < 2 * SLOW_S + 0.5, breach
        assert isinstance(breach["baseline"], float), breach
        assert 0 < breach["baseline"] < SLOW_S, breach
    said = (
        "For a latency rule, `observed` and `baseline` are seconds, as numbers "
        "(`0.087` for 87 ms), and `threshold` is the bound as text with its unit "
        "(`max 20ms`, `max_increase 20%`)"
    )
    assert said in README
