"""A provider plugin, installed as pip would, that answers its `values` and `period_sizes`
as one-shot generators: the daemon judges and stores them whole. Before, the checks of an
answer (`agent.windows.answers`) read them first and used them up: each round was stored
with no samples and the baseline with none and no periods (a distribution judged on
nothing), the window ending inconclusive for want of data."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from agent.store.sqlite import SqliteStore
from tests.e2e.crash import TOKEN, free_port
from tests.e2e.plugin_agent import registered, start
from tests.plugin_site import install_distribution

pytestmark = pytest.mark.e2e

PLUGIN = '''
"""Latencies answered as generators: the old release's baseline in two periods (3 and 2
samples), then five more samples at each round."""

from typing import ClassVar

from pydantic import BaseModel

from agent.analysis.types import Observation


class GenSettings(BaseModel):
    latency: float


class GenProvider:
    name = "gen"
    config_model: ClassVar[type[BaseModel]] = GenSettings

    def __init__(self, config, *, metrics, redact=None):
        self.config = config
        self.asked = 0

    async def fetch(self, rule, scope, period, release):
        base = self.config.latency
        if release != scope.version:  # the baseline: two periods
            values = [base * (1 + k / 100) for k in range(5)]
            return Observation(
                value=max(values),
                values=(v for v in values),
                period_sizes=(n for n in (3, 2)),
                quantile=0.95,
            )
        # since the deploy, as a provider answers it: five more each time it is asked
        self.asked += 1
        values = [base * (1 + k / 1000) for k in range(5 * self.asked)]
        return Observation(value=max(values), values=(v for v in values), quantile=0.95)

    async def mark(self, scope, event):
        return None

    def link(self, rule, scope, period, *, release=None):
        return None

    async def aclose(self):
        return None
'''


def config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "postflight.yaml"
    path.write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{tmp_path / 'postflight.db'}\n"
        "providers:\n  gen: {latency: 0.2}\n"
        "environments:\n"
        "  production:\n"
        f"    base_url: http://127.0.0.1:{free_port()}\n"
        "    window: 2s\n"
        "    interval: 500ms\n"
        "    checks: []\n"
        "    analysis: {policy: threshold, failure_limit: 1}\n"
        "    rules: [{name: gen-p95, source: gen, metric: latency_p95, max_increase: 50%}]\n"
    )
    return path


@pytest.mark.timeout(90)
async def test_a_plugins_generator_values_are_judged_and_stored_whole(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_distribution(
        site, "postflight-gen", "[postflight.providers]\ngen = gen_provider:GenProvider\n"
    )
    (site / "gen_provider.py").write_text(PLUGIN)
    port = free_port()
    agent = start(config(tmp_path, port), tmp_path / "agent.log", site)
    try:
        url = f"http://127.0.0.1:{port}"
        code, said, deploy_id = await registered(url, "--wait", "--timeout", "20s")
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            http.get(f"{url}/v1/deploys/{deploy_id}") as answer,
        ):
            deploy = await answer.json()
    finally:
        agent.send_signal(signal.SIGTERM)
        await asyncio.to_thread(agent.wait, 30)
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        window = await store.get_window(deploy_id)
        rounds = await store.rounds(deploy_id)
    finally:
        await store.close()
    assert window is not None and window.baseline is not None, window
    baseline = window.baseline["gen-p95"]
    # before: stored {'value': 0.204, 'quantile': 0.95}, no samples, no periods
    assert len(baseline.get("values", ())) == 5, baseline
    assert baseline.get("period_sizes") == [3, 2], baseline
    assert rounds, deploy
    stored = [r.summary["observations"]["gen-p95"] for r in rounds]
    # each round's own samples (`round_increment`: five a fetch; a round the fetch
    # missed has none, the next two fetches' ten), where the old code stored none
    answered = [len(o.get("values", ())) for o in stored if o["value"] is not None]
    assert answered and all(n >= 5 and n % 5 == 0 for n in answered), stored
    # every round within 50% of a baseline it had: judged, and passed on evidence
    assert deploy["state"] == "passed", deploy
    assert code == 0, said
