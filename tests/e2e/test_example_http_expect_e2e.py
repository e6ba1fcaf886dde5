"""Contract §6, "every key in it must do what its comment says", for the example's
`api-health` check (`timeout: 2s`, `expect: {status: 200, max_latency: 500ms, json:
{status: ok}}`, "values at these keys must match"), through the real `postflight check`
process and the running agent: an answer that is a 200 within the bound but says
`{"status": "degraded"}`, lacks the key, comes past `max_latency`, or none within the
timeout, is a failed probe: `check` rows FAIL and exits 1; the agent's window on such a
deploy fails on its error rate. Only the check's unit tests
(tests/checks/test_checks_http.py) held these, none through the CLI or the daemon."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.cli_process import awaited_cli
from tests.e2e.conftest import AgentFactory, environment
from tests.spec_example import example_check

pytestmark = pytest.mark.timeout(120)


SLOW_S = 0.8
"""The slow answer's delay: past the example's `max_latency: 500ms`, within its `timeout: 2s`."""
HANG_S = 3.0
"""The hung answer's delay: past the example's `timeout: 2s`."""


def api_health() -> dict[str, Any]:
    """The example's `api-health` check of production, as written (no `${VAR}` in it)."""
    check = example_check("production", "api-health")
    assert check["expect"] == {"status": 200, "max_latency": "500ms", "json": {"status": "ok"}}
    return check


ANSWERS = {
    "/ok": ({"status": "ok"}, 0.0),
    "/degraded": ({"status": "degraded"}, 0.0),
    "/no-key": ({"healthy": True}, 0.0),
    "/slow": ({"status": "ok"}, SLOW_S),
    "/hang": ({"status": "ok"}, HANG_S),
}
"""Each path of the target: its 200's body, after its delay in seconds."""


@pytest.fixture
async def target() -> AsyncIterator[TestServer]:
    async def answer(request: web.Request) -> web.Response:
        body, delay = ANSWERS[request.path]
        await asyncio.sleep(delay)
        return web.json_response(body)

    app = web.Application()
    for path in ANSWERS:
        app.router.add_get(path, answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_check_fails_an_answer_past_the_examples_expectations(
    tmp_path: Path, target: TestServer
) -> None:
    check = api_health()
    checks = [json.dumps({**check, "name": path.strip("/"), "path": path}) for path in ANSWERS]
    config = tmp_path / "postflight.yaml"
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        "environments:\n  production:\n"
        f"    base_url: {str(target.make_url('')).rstrip('/')}\n"
        "    checks:\n" + "".join(f"      - {c}\n" for c in checks)
    )
    for _ in range(3):  # a run the agent's own stall dropped is not judged: run it again
        code, out = await awaited_cli("check", "--config", str(config), "--env", "production")
        if "not judged (the agent itself was stalled" not in out:
            break
    assert code == 1, out
    rows = {line.split()[0]: line.split(None, 4) for line in out.splitlines() if line.split()}
    results = {name: rows[name][2] for name in ("ok", "degraded", "no-key", "slow", "hang")}
    assert results == {
        "ok": "pass",
        "degraded": "FAIL",
        "no-key": "FAIL",
        "slow": "FAIL",
        "hang": "FAIL",
    }, out
    assert rows["degraded"][4] == 'GET /degraded: status: expected "ok", got "degraded"', out
    assert rows["no-key"][4] == 'GET /no-key: status: expected "ok", got no such field', out
    assert rows["slow"][4].startswith("GET /slow: latency: expected ≤ 500ms, got "), out
    assert rows["hang"][4] == "GET /hang: no response within 2s", out
    assert "1 passed, 4 failed (exit 1)" in out.splitlines(), out


@pytest.mark.parametrize("path", ["/degraded", "/slow"])
async def test_a_deploy_answering_past_the_examples_expectations_fails_its_window(
    start_agent: AgentFactory, target: TestServer, path: str
) -> None:
    check = {**api_health(), "path": path}
    probed = environment(
        "production",
        str(target.make_url("")).rstrip("/"),
        window="20s",
        interval="1s",
        probes=3,
        timeout="2s",
        analysis="{policy: threshold, failure_limit: 2}",
    )
    written = "    - {name: api-health, type: http, path: /api/health, timeout: 2s}"
    assert written in probed, probed
    agent = await start_agent(probed.replace(written, f"    - {json.dumps(check)}"))
    deploy = await agent.register("production", "v-past")
    final = await agent.settled(deploy["id"], within=60)
    assert final["state"] == "failed", final
    (rule,) = final["verdict"]["rules"]
    assert (rule["name"], rule["outcome"], rule["observed"]) == ("probe-errors", "fail", 1), rule
