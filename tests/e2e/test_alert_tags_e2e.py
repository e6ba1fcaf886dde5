"""Contract §4, "`alerting.channels` is a list of apprise URLs, each with `tags`; an
environment's `alerts.tags` picks its channels", on the real `postflight run`: three
environments, each passing a deploy, over four `json://` channels tagged `oncall`,
`email`, both, and `pager`. Each environment's alert reaches the channels sharing a tag
with it and no other; one without `alerts` reaches every channel (README). Only the
notifier's unit test (tests/alerting/test_notifier.py) held a subset picked; the contract
run's environments all pick `oncall`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.cli.test_contract_cli import running_again
from tests.cli.test_run_start import TOKEN, agent_config, free_port
from tests.e2e.conftest import FlipTarget
from tests.receivers import JsonSink, alert_titled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHANNELS = {"chat": "[oncall]", "mail": "[email]", "both": "[oncall, email]", "pager": "[pager]"}
"""Each channel (its path at the sink) and its tags."""

PICKED = {
    "production": ("[oncall]", {"/chat", "/both"}),
    "staging": ("[email]", {"/mail", "/both"}),
    "dev": (None, {"/chat", "/mail", "/both", "/pager"}),
}
"""Each environment: its `alerts.tags` (None: no `alerts` key), and the channels its alert
must reach."""


def tagged_config(tmp_path: Path, port: int, sink: JsonSink, target: str) -> Path:
    channels = "".join(
        f"    - {{url: '{sink.url(path)}', tags: {tags}}}\n" for path, tags in CHANNELS.items()
    )
    environments = ""
    for name, (tags, _) in PICKED.items():
        environments += (
            f"  {name}:\n    base_url: {target}\n    window: 2s\n    interval: 500ms\n"
            "    checks:\n      - {name: health, type: http, path: /api/health}\n"
            "    analysis: {policy: threshold}\n"
            "    rules:\n      - {name: errors, source: checks, metric: error_rate, max: 0.5}\n"
        )
        if tags is not None:
            environments += f"    alerts: {{tags: {tags}}}\n"
    return agent_config(
        tmp_path, port, f"alerting:\n  channels:\n{channels}environments:\n{environments}"
    )


async def test_each_environments_tags_pick_its_channels(
    tmp_path: Path, json_sink: JsonSink, flip_target: FlipTarget
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = tagged_config(tmp_path, port, json_sink, flip_target.url)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with running_again(config, tmp_path / "agent.log"), aiohttp.ClientSession() as http:
        for name in PICKED:
            body = {"environment": name, "version": f"{name}-v2"}
            async with http.post(f"{url}/v1/deploys", json=body, headers=headers) as r:
                assert r.status == 201, await r.text()
        for name in PICKED:
            await alert_titled(json_sink, f"[postflight] {name} {name}-v2: ", within=60)
        await json_sink.wait_arrived(sum(len(paths) for _, paths in PICKED.values()), 30)
        await asyncio.sleep(1.0)  # any alert to a channel not picked would be there by now
    for name, (_, paths) in PICKED.items():
        reached = [n.path for n in json_sink.notifications if f" {name} {name}-v2: " in n.title]
        assert sorted(reached) == sorted(paths), (name, reached)
        titles = {n.title for n in json_sink.notifications if f" {name} {name}-v2: " in n.title}
        assert len(titles) == 1, (name, titles)  # its window's end (passed, unless held)
