"""Every command's error end says its exit code as `register`'s does
(`postflight status: error: no deploy dep_… (exit 2)`), and an unknown environment is
said alike by `check` and the API: each through the real CLI, against a real daemon."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.cli.test_run_start import (
    TOKEN,
    agent_config,
    free_port,
    listening,
    listening_until_stopped,
)
from tests.cli_process import awaited_cli, cli_env

pytestmark = pytest.mark.timeout(180)


ONE_AGENT = pytest.mark.xdist_group("end-lines-agent")
"""The tests of `agent_url` on one worker, which starts it once (`--dist loadgroup`)."""


@pytest.fixture(scope="module")
def agent_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `postflight run` with one environment, `production`: its URL. One a module:
    its tests read it (errors, a refused registration) and one registers a deploy no other
    asks about, where each started an agent of its own (a start and a stop each)."""
    tmp_path = tmp_path_factory.mktemp("end-lines")
    port = free_port()
    agent = listening(str(agent_config(tmp_path, port)), tmp_path / "agent.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


@ONE_AGENT
async def test_status_and_rollback_errors_say_their_exit_code(agent_url: str) -> None:
    agent = ("--url", agent_url, "--token", TOKEN)
    code, out = await awaited_cli("status", "dep_nope", *agent)
    assert (code, last_line(out)) == (2, "postflight status: error: no deploy dep_nope (exit 2)")
    code, out = await awaited_cli("status", "--bogus", *agent)
    said = "postflight status: error: unrecognized arguments: --bogus (exit 2)"
    assert (code, last_line(out)) == (2, said), out
    code, out = await awaited_cli("status", "--limit", "0", *agent)
    said = "postflight status: error: --limit must be between 1 and 200 (exit 2)"
    assert (code, last_line(out)) == (2, said), out
    code, out = await awaited_cli("rollback", "dep_nope", "--reason", "bad", *agent)
    assert code == 2, out
    assert last_line(out).startswith("postflight rollback: error: "), out
    assert last_line(out).endswith(" (exit 2)"), out
    code, out = await awaited_cli("status", "--url", agent_url, "--token", "tok-wrong-0123456789")
    assert code == 2, out  # auth: 2, as the contract gives it
    assert last_line(out).startswith("postflight status: error: "), out
    assert last_line(out).endswith(" (exit 2)"), out
    code, out = await awaited_cli("status", *agent)  # and a shown list ends 0
    assert code == 0, out


@ONE_AGENT
async def test_a_rollback_by_hand_where_none_is_configured_is_refused_exit_1(
    agent_url: str,
) -> None:
    """README's `postflight rollback`: refused (exit 1) for an environment with no `rollback`,
    saying so, as for a deploy that already has one; the README named only those refusals
    (a walk-through of a fresh `postflight run`)."""
    agent = ("--url", agent_url, "--token", TOKEN)
    code, out = await awaited_cli("register", "--env", "production", "--version", "v2", *agent)
    assert code == 0, out
    (deploy_id,) = set(re.findall(r"\bdep_[0-9A-Z]{26}\b", out))
    code, out = await awaited_cli("rollback", deploy_id, "--reason", "by hand", *agent)
    said = (
        "postflight rollback: error: environment 'production' has no rollback configured"
        " (HTTP 409) (exit 1)"
    )
    assert (code, last_line(out)) == (1, said), out


@ONE_AGENT
async def test_register_and_status_take_the_url_and_token_from_the_environment(
    agent_url: str,
) -> None:
    """Contract §1: `--url`/`--token` "also from `$POSTFLIGHT_URL`/`$POSTFLIGHT_TOKEN`",
    through the real CLI with neither flag: the deploy registered and shown (exit 0), and
    a wrong `$POSTFLIGHT_TOKEN` an auth error (exit 2). Only the in-process client test
    (tests/cli/test_client.py) set both variables."""
    env = cli_env(POSTFLIGHT_URL=agent_url, POSTFLIGHT_TOKEN=TOKEN)
    # --quiet: the id alone (the module's agent may have a window this one supersedes,
    # which a plain register names too)
    argv = ("register", "--env", "production", "--version", "v9", "--quiet")
    code, out = await awaited_cli(*argv, env=env)
    assert code == 0, out
    deploy_id = out.strip()
    assert re.fullmatch(r"dep_[0-9A-Z]{26}", deploy_id), out
    code, out = await awaited_cli("status", deploy_id, "--json", env=env)
    assert code == 0, out
    shown = json.loads(out[out.index("{") :])
    assert (shown["id"], shown["version"]) == (deploy_id, "v9"), shown
    wrong = cli_env(POSTFLIGHT_URL=agent_url, POSTFLIGHT_TOKEN="tok-wrong-0123456789")
    code, out = await awaited_cli("status", deploy_id, env=wrong)
    assert code == 2 and "401" in out, out
    async with (  # ended, so no other test's registration here supersedes it
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        http.post(f"{agent_url}/v1/deploys/{deploy_id}/cancel") as cancelled,
    ):
        assert cancelled.status == 200, await cancelled.text()


async def test_an_unreachable_agent_is_said_with_the_exit_code() -> None:
    agent = ("--url", f"http://127.0.0.1:{free_port()}", "--token", TOKEN)
    register = ("register", "--env", "production", "--version", "v1")  # contract §1: 2
    for argv in (("status",), ("rollback", "dep_x", "--reason", "bad"), register):
        code, out = await awaited_cli(*argv, *agent)
        line = last_line(out)
        assert code == 2, out
        assert line.startswith(f"postflight {argv[0]}: error: cannot reach the agent at "), out
        assert line.endswith(" (exit 2)"), out


@ONE_AGENT
async def test_check_ends_with_its_exit_code_and_names_environments_as_the_api_does(
    tmp_path: Path, target: TestServer, agent_url: str
) -> None:
    url = str(target.make_url("")).rstrip("/")
    config = tmp_path / "check.yaml"
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        "environments:\n"
        "  staging:\n"
        f"    base_url: {url}\n"
        "    checks:\n"
        "      - {name: health, type: http, path: /health}\n"
        "      - {name: second, type: http, path: /broken}\n"
        "  production: {base_url: 'http://127.0.0.1:9'}\n"
    )
    code, out = await awaited_cli("check", "--config", str(config), "--env", "staging")
    assert (code, last_line(out)) == (1, "1 passed, 1 failed (exit 1)"), out
    code, out = await awaited_cli("check", "--config", str(config), "--env", "moon")
    said = "unknown environment 'moon'; configured: production, staging"
    assert (code, out) == (2, f"postflight check: error: {said} (exit 2)\n"), out
    # the API says the same words of an environment it does not have
    agent = ("--url", agent_url, "--token", TOKEN)
    code, out = await awaited_cli("register", "--env", "moon", "--version", "v1", *agent)
    assert code == 2, out
    assert "unknown environment 'moon'; configured: production (HTTP 404) (exit 2)" in out, out


async def test_a_rollback_by_hand_of_a_superseded_or_cancelled_deploy_is_refused_exit_1(
    tmp_path: Path,
) -> None:
    """README's `postflight rollback`: 1 refused when the deploy "was cancelled or
    superseded", in an environment that has a `rollback` (where none is configured, that
    is the refusal said first); through the real CLI against a real `postflight run`."""
    port = free_port()
    environments = (
        "environments: {production: {base_url: 'http://127.0.0.1:9', window: 10m,"
        " rollback: {url: 'http://127.0.0.1:9/rollback', secret: s3cret-0123}}}\n"
    )
    config = str(agent_config(tmp_path, port, environments))
    with listening_until_stopped(config, tmp_path / "agent.log"):
        connection = ("--url", f"http://127.0.0.1:{port}", "--token", TOKEN)
        ids: list[str] = []
        for version in ("v1", "v2"):
            code, out = await awaited_cli(
                "register", "--env", "production", "--version", version, *connection
            )
            assert code == 0, out
            ids += sorted(set(re.findall(r"\bdep_[0-9A-Z]{26}\b", out)) - set(ids))
        superseded, live = ids
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            http.post(f"http://127.0.0.1:{port}/v1/deploys/{live}/cancel") as answer,
        ):
            assert (await answer.json())["state"] == "cancelled"
        for deploy_id, state in ((superseded, "superseded"), (live, "cancelled")):
            code, out = await awaited_cli("rollback", deploy_id, "--reason", "by hand", *connection)
            assert code == 1, out
            line = last_line(out)
            assert line.startswith("postflight rollback: error: "), out
            assert state in line and line.endswith("(HTTP 409) (exit 1)"), out
