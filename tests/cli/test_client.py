"""`postflight register` / `postflight status` against a real API server.

The server runs on its own loop in a thread (the commands run `asyncio.run`
themselves, as they do from the console script). A scripted stand-in for the
watcher moves each window through rounds to the final state a test asks for.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import io
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.api.models import DeployRequest
from agent.appkeys import FORESIGHT
from agent.cli import commands as cli_client
from agent.cli.arguments import (
    add_register_arguments,
    add_rollback_arguments,
    add_status_arguments,
)
from agent.cli.commands import register_command, status_command
from agent.cli.render import Progress, Style
from agent.cli.rollback import rollback_command
from agent.client import ApiError, BadResponse, ClientError, PostflightClient, Unreachable
from agent.records import DeployWindow, RollbackIntent, RoundRecord
from agent.store.sqlite import SqliteStore
from common.times import rfc3339
from tests.api.harness import TOKEN, ScriptedWatcher, make_app, rule
from tests.cli_process import start_cli, stopped_by_each_signal
from tests.ports import free_port
from tests.store.peek import set_rollback

T = TypeVar("T")
Script = Callable[[SqliteStore, str], Coroutine[Any, Any, None]]
STEP = 0.15


class AgentThread:
    """The API on a real port, served from a background thread."""

    def __init__(self, tmp_path: Path, foresight: Any = None) -> None:
        self.foresight = foresight
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.store = SqliteStore(tmp_path / "cli.db")
        self.watcher = ScriptedWatcher(store=self.store)
        self.runner: web.AppRunner | None = None
        self.port = self.call(self._start())
        self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        await self.store.open()
        app = make_app(self.store, self.watcher)
        if self.foresight is not None:
            app[FORESIGHT] = self.foresight
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return int(self.runner.addresses[0][1])

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        async def stop() -> None:
            for task in list(self.watcher.tasks):
                task.cancel()
            if self.runner is not None:
                await self.runner.cleanup()
            await self.store.close()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentThread]:
    monkeypatch.setattr(cli_client, "POLL_INTERVAL_S", 0.05)
    monkeypatch.delenv("POSTFLIGHT_URL", raising=False)
    monkeypatch.delenv("POSTFLIGHT_TOKEN", raising=False)
    monkeypatch.delenv("POSTFLIGHT_API_TOKEN", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    server = AgentThread(tmp_path)
    yield server
    server.stop()


def register_args(agent: AgentThread | None, *extra: str, token: str = TOKEN) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="postflight register")
    add_register_arguments(parser)
    connection = ["--url", agent.url, "--token", token] if agent is not None else []
    return parser.parse_args([*connection, "--env", "production", "--version", "v2.4.1", *extra])


def status_args(agent: AgentThread, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="postflight status")
    add_status_arguments(parser)
    return parser.parse_args(["--url", agent.url, "--token", TOKEN, *extra])


def no_traceback(captured: Any) -> None:
    assert "Traceback" not in captured.out + captured.err


# --- scripts: what the "watcher" does with a window ------------------------------------


def pending(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"outcome": "pending", "decided_at": None, "reason": "", "rules": list(rules)}


async def two_rounds(store: SqliteStore, window_id: str) -> None:
    await asyncio.sleep(STEP)
    await store.record_round(
        RoundRecord(window_id, 1, time.time(), {}), pending(rule("probe-errors", "pass"))
    )
    await asyncio.sleep(STEP)
    await store.record_round(
        RoundRecord(window_id, 2, time.time(), {}), pending(rule("probe-errors", "pass"))
    )
    await asyncio.sleep(STEP)


async def fail_with_rollback(store: SqliteStore, window_id: str, now: float) -> RollbackIntent:
    """The window's verdict fails on its error rule, with a rollback still pending."""
    verdict = {
        "outcome": "fail",
        "decided_at": now,
        "reason": "probe-errors: error_rate 0.31 > max 0.05 for 3 rounds",
        "rules": [rule("probe-errors", "fail", 0.31)],
    }
    intent = RollbackIntent(window_id, "pending", "{}", now)
    await store.finish_window(window_id, "failed", verdict, now, intent)
    return intent


def ends_in(state: str) -> Script:
    async def script(store: SqliteStore, window_id: str) -> None:
        await two_rounds(store, window_id)
        now = time.time()
        if state in ("failed", "rolled_back"):
            intent = await fail_with_rollback(store, window_id, now)
            if state == "rolled_back":
                intent.state, intent.attempts, intent.last_status = "delivered", 2, 200
            else:  # the receiver refused it: the window stays failed
                intent.state, intent.attempts, intent.last_status = "failed", 1, 400
            await set_rollback(store, intent)
        elif state == "cancelled":
            await store.cancel_window(window_id, now)
        elif state == "superseded":
            newer = DeployWindow(
                id="dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
                environment="production",
                version="v9",
                previous_version=None,
                commit=None,
                labels={},
                state="watching",
                deployed_at=now,
                ends_at=now + 600,
                created_at=now,
            )
            await store.create_window(newer)
        else:
            outcome = {"passed": "pass", "inconclusive": "inconclusive"}[state]
            verdict = {
                "outcome": outcome,
                "decided_at": now,
                "reason": "",
                "rules": [rule("probe-errors", outcome)],
            }
            await store.finish_window(window_id, state, verdict, now)  # type: ignore[arg-type]

    return script


# --- register ------------------------------------------------------------------------


def test_register_prints_the_deploy_id_and_exits_0(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code = register_command(register_args(agent, "--label", "pipeline=run-1", "--commit", "abc"))
    captured = capsys.readouterr()
    assert code == 0
    page = agent.call(agent.store.list_windows())
    [window] = page.items
    assert window.id in captured.out
    assert window.labels == {"pipeline": "run-1"} and window.commit == "abc"
    assert f"postflight status {window.id}" in captured.out


def test_register_says_which_window_it_cut_short(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deploy while the environment's last one was still watched: that one ends
    superseded, with no verdict; the pipeline was told nothing of it."""
    assert register_command(register_args(agent)) == 0
    [first] = agent.call(agent.store.list_windows()).items
    capsys.readouterr()
    parser = argparse.ArgumentParser(prog="postflight register")
    add_register_arguments(parser)
    second = ["--url", agent.url, "--token", TOKEN, "--env", "production", "--version", "v2.4.2"]
    assert register_command(parser.parse_args(second)) == 0
    out = capsys.readouterr().out
    said = f"note: {first.id} (v2.4.1) was still watching, after 0 rounds, and is superseded now"
    assert said in out, out
    # a deploy to an environment with none watching says nothing of the kind
    staging = [*second[:5], "staging", *second[6:]]
    assert register_command(parser.parse_args(staging)) == 0
    assert "superseded" not in capsys.readouterr().out


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_previous_or_commit_is_none_not_a_usage_error(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], empty: str
) -> None:
    """A pipeline's first deploy: `--previous "$PREVIOUS" --commit "$SHA"` with both unset."""
    code = register_command(register_args(agent, "--previous", empty, "--commit", empty))
    assert code == 0, capsys.readouterr().err
    [window] = agent.call(agent.store.list_windows()).items
    assert window.previous_version is None and window.commit is None


def test_register_quiet_prints_only_the_id(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register_command(register_args(agent, "--quiet")) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("dep_") and "\n" not in out


def test_url_and_token_come_from_the_environment(
    agent: AgentThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSTFLIGHT_URL", agent.url)
    monkeypatch.setenv("POSTFLIGHT_TOKEN", TOKEN)
    assert register_command(register_args(None)) == 0
    assert "dep_" in capsys.readouterr().out


def test_the_daemons_token_variable_works_for_the_cli_too(
    agent: AgentThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README exports POSTFLIGHT_API_TOKEN for the daemon; the CLI takes it as well."""
    monkeypatch.setenv("POSTFLIGHT_URL", agent.url)
    monkeypatch.setenv("POSTFLIGHT_API_TOKEN", TOKEN)
    assert register_command(register_args(None)) == 0
    assert "dep_" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("state", "code", "says"),
    [
        ("passed", 0, "passed"),
        ("failed", 1, "failed"),
        ("rolled_back", 1, "rolled back"),
        ("inconclusive", 3, "inconclusive"),
        ("cancelled", 3, "cancelled"),
        ("superseded", 3, "superseded"),
    ],
)
def test_register_wait_exits_by_the_final_state(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], state: str, code: int, says: str
) -> None:
    agent.watcher.script = ends_in(state)
    assert register_command(register_args(agent, "--wait", "--timeout", "20s")) == code
    captured = capsys.readouterr()
    no_traceback(captured)
    assert says in captured.out
    # the round line (round 1, or round 2 if a slow poll missed the first) with its rule
    assert re.search(r"round +[12] +✓ pass probe-errors", captured.out), captured.out
    first_lines = captured.out.splitlines()[:3]
    page_line = [line.strip() for line in first_lines if line.strip().startswith("page: ")]
    assert page_line and page_line[0].startswith("page: http://") and "?view=" in page_line[0]
    if state == "rolled_back":
        assert "rollback  delivered after 2 attempts, last HTTP 200" in captured.out
        assert "probe-errors" in captured.out and "0.31" in captured.out


def test_register_wait_follows_a_rollback_still_being_delivered(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """The window is `failed` from its verdict until its webhook answers: a receiver that
    takes a second (the audit's took 2.5 s) must not be reported as "no rollback was
    delivered" (a pipeline could roll back a second time)."""

    async def script(store: SqliteStore, window_id: str) -> None:
        await two_rounds(store, window_id)
        intent = await fail_with_rollback(store, window_id, time.time())
        await asyncio.sleep(8 * STEP)  # the webhook's answer is on its way
        intent.state, intent.attempts, intent.last_status = "delivered", 1, 200
        await set_rollback(store, intent)

    agent.watcher.script = script
    assert register_command(register_args(agent, "--wait", "--timeout", "20s")) == 1
    captured = capsys.readouterr()
    no_traceback(captured)
    assert "no rollback was delivered" not in captured.out
    assert "rolled back: the rollback target accepted the request" in captured.out
    assert "rollback  delivered after 1 attempt" in captured.out


def test_register_wait_says_a_rollback_is_still_pending_when_it_stops_following_it(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_client, "ROLLBACK_SETTLE_S", 0.3)

    async def script(store: SqliteStore, window_id: str) -> None:
        await two_rounds(store, window_id)
        now = time.time()
        verdict = {"outcome": "fail", "decided_at": now, "reason": "x", "rules": []}
        intent = RollbackIntent(window_id, "pending", "{}", now)
        await store.finish_window(window_id, "failed", verdict, now, intent)

    agent.watcher.script = script
    assert register_command(register_args(agent, "--wait", "--timeout", "20s")) == 1
    captured = capsys.readouterr()
    assert "no rollback was delivered" not in captured.out
    assert "failed: a rollback was requested and is still being delivered" in captured.out


def test_register_wait_says_how_far_a_rollback_still_retried_got(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback refused twice and retried is still pending when the wait stops following
    it: its end line said "still being delivered" alone, as of one not yet tried."""
    monkeypatch.setattr(cli_client, "ROLLBACK_SETTLE_S", 0.3)

    async def script(store: SqliteStore, window_id: str) -> None:
        await two_rounds(store, window_id)
        now = time.time()
        verdict = {"outcome": "fail", "decided_at": now, "reason": "x", "rules": []}
        intent = RollbackIntent(window_id, "pending", "{}", now)
        await store.finish_window(window_id, "failed", verdict, now, intent)
        intent.attempts, intent.last_status = 2, 503  # refused twice, retried on
        await set_rollback(store, intent)

    agent.watcher.script = script
    assert register_command(register_args(agent, "--wait", "--timeout", "20s")) == 1
    out = capsys.readouterr().out
    assert (
        "failed: a rollback was requested and is still being delivered"
        " (not accepted after 2 attempts so far) (exit 1)"
    ) in out, out


def test_register_wait_json_prints_the_final_object(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    agent.watcher.script = ends_in("passed")
    assert register_command(register_args(agent, "--wait", "--json")) == 0
    captured = capsys.readouterr()
    final = json.loads(captured.out)
    assert final["state"] == "passed" and final["verdict"]["outcome"] == "pass"
    assert "registered" in captured.err  # progress goes to stderr with --json


def _api(agent: AgentThread, path: str) -> Any:
    """What the agent's API answers on `path` (with the token)."""
    import urllib.request

    request = urllib.request.Request(
        f"{agent.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _without_view_token(deploy: dict[str, Any]) -> dict[str, Any]:
    """The object with its page link cut before `?view=` (a fresh token each read)."""
    page = deploy["links"].get("page")
    links = {**deploy["links"], "page": page and page.split("?view=")[0]}
    return {**deploy, "links": links}


@pytest.mark.parametrize("state", ["passed", "rolled_back", "cancelled"])
def test_the_cli_json_objects_are_the_apis(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], state: str
) -> None:
    """`register --wait --json`, `status ID --json` and `status --json` print the deploy
    object the API answers, key for key: they printed `"warnings": null`, a key the API
    leaves out when there are none (only a registration's answer has it)."""
    agent.watcher.script = ends_in(state)
    register_command(register_args(agent, "--wait", "--json"))
    final = json.loads(capsys.readouterr().out)
    served = _api(agent, f"/v1/deploys/{final['id']}")
    assert served["state"] == state
    assert _without_view_token(final) == _without_view_token(served)
    assert status_command(status_args(agent, final["id"], "--json")) == 0
    assert _without_view_token(json.loads(capsys.readouterr().out)) == _without_view_token(served)
    status_command(status_args(agent, "--json"))
    (item,) = json.loads(capsys.readouterr().out)["items"]
    (listed,) = _api(agent, "/v1/deploys")["items"]
    assert _without_view_token(item) == _without_view_token(listed)


def test_register_wait_gives_up_at_the_timeout_with_3(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register_command(register_args(agent, "--wait", "--timeout", "300ms")) == 3
    captured = capsys.readouterr()
    assert "gave up waiting" in captured.err and "still watching" in captured.err
    no_traceback(captured)


def test_register_wait_giving_up_while_the_agent_is_away_says_the_state_is_the_last_heard(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said `dep_… is still watching` right under `! cannot reach the agent`: a state
    it could not know, the agent having been down for the last seconds of the wait."""

    async def agent_goes_away(store: SqliteStore, window_id: str) -> None:
        await asyncio.sleep(0.2)
        runner, agent.runner = agent.runner, None
        assert runner is not None
        await runner.cleanup()  # nothing listens on its port any more

    agent.watcher.script = agent_goes_away
    assert register_command(register_args(agent, "--wait", "--timeout", "2s")) == 3
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("timeout: gave up waiting after 2s: dep_"), last
    assert "was watching when the agent last answered, and it has not answered since" in last
    assert f"cannot reach the agent at {agent.url}" in last
    assert "still watching" not in last
    no_traceback(captured)


def test_idempotency_key_makes_a_repeat_safe(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register_command(register_args(agent, "--idempotency-key", "run-77")) == 0
    assert register_command(register_args(agent, "--idempotency-key", "run-77")) == 0
    assert "already registered" in capsys.readouterr().out
    assert len(agent.call(agent.store.list_windows()).items) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--label", "novalue"], "--label 'novalue': write it as KEY=VALUE"),
        (["--label", "a=1", "--label", "a=2"], "--label 'a' is given twice"),
        (["--timeout", "soon"], "--timeout"),
        (["--window", "forever"], "--window"),
        (["--deployed-at", "yesterday"], "--deployed-at"),
        (["--previous", "x" * 200], "--previous"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert register_command(register_args(agent, *extra)) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    no_traceback(captured)
    assert agent.call(agent.store.list_windows()).items == []


def test_timeout_without_wait_is_refused_not_taken_as_a_wait(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """`register … --timeout 20m` without `--wait` exited 0 as soon as the deploy was
    registered, before any verdict: a pipeline that meant to wait for the verdict (the
    exit code the contract's 1 and 3 give) passed every deploy. A usage error instead,
    nothing registered; `--wait --timeout` as before."""
    assert register_command(register_args(agent, "--timeout", "20m")) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("postflight register: error: --timeout is for --wait"), (
        captured.err
    )
    assert len(captured.err.strip().splitlines()) == 1
    assert agent.call(agent.store.list_windows()).items == []


def test_missing_url_or_token_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POSTFLIGHT_URL", raising=False)
    monkeypatch.delenv("POSTFLIGHT_TOKEN", raising=False)
    monkeypatch.delenv("POSTFLIGHT_API_TOKEN", raising=False)
    assert register_command(register_args(None)) == 2
    assert "--url" in capsys.readouterr().err
    monkeypatch.setenv("POSTFLIGHT_URL", "http://127.0.0.1:9")
    assert register_command(register_args(None)) == 2
    assert "--token" in capsys.readouterr().err
    monkeypatch.setenv("POSTFLIGHT_URL", "ftp://example")
    monkeypatch.setenv("POSTFLIGHT_TOKEN", "t")
    assert register_command(register_args(None)) == 2
    assert "http://" in capsys.readouterr().err


def test_credentials_in_the_agent_url_exit_2_with_one_line(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    args = register_args(agent)
    args.url = agent.url.replace("http://", "http://user:pw@")
    assert register_command(args) == 2
    captured = capsys.readouterr()
    assert "must not carry credentials" in captured.err and "pw" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    no_traceback(captured)


@pytest.mark.parametrize("where", ["token", "idempotency key"])
def test_a_control_character_in_an_option_exits_2_not_1(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """Exit 1 means "failed or rolled back": a pipeline must not read a typo as a bad deploy."""
    if where == "token":
        args = register_args(agent, token="tok\nen-1234567890abcdef")
    else:
        args = register_args(agent, "--idempotency-key", "a\nb")
    assert register_command(args) == 2
    captured = capsys.readouterr()
    assert "control character" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    no_traceback(captured)
    assert agent.call(agent.store.list_windows()).items == []


def test_an_id_is_one_path_segment_and_reaches_no_other_route(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status_command(status_args(agent, "../../metrics")) == 2
    captured = capsys.readouterr()
    assert "no deploy" in captured.err and "postflight_" not in captured.out
    no_traceback(captured)


def test_a_window_that_ended_before_it_was_registered_says_so_not_watching(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    three_days_ago = rfc3339(time.time() - 3 * 86400)
    assert register_command(register_args(agent, "--deployed-at", three_days_ago)) == 0
    out = capsys.readouterr().out
    assert "watching for" not in out
    assert "\n  already inconclusive: registered" in out
    assert out.count("after its window ended") == 1, out


def test_registration_warnings_are_printed_beside_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def foresee(*_: Any, **__: Any) -> list[str]:
        return ["production v2.4.1: rule apm-p95 can detect +60% or more; its bound is +20%"]

    monkeypatch.setenv("NO_COLOR", "1")
    agent = AgentThread(tmp_path, foresight=foresee)
    try:
        assert register_command(register_args(agent)) == 0
    finally:
        agent.stop()
    out = capsys.readouterr().out
    assert "\n  watching for 10m, until " in out
    assert "\n  warning: production v2.4.1: rule apm-p95 can detect +60% or more" in out


def test_warnings_that_cannot_be_worked_out_never_refuse_the_deploy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Warnings are advice: a store read failing under them (or a bug) registers the
    deploy without them, and logs why, instead of answering 500."""

    async def foresee(*_: Any, **__: Any) -> list[str]:
        raise RuntimeError("store read failed")

    agent = AgentThread(tmp_path, foresight=foresee)
    try:
        assert register_command(register_args(agent, "--json")) == 0
    finally:
        agent.stop()
    registered = json.loads(capsys.readouterr().out)
    assert registered["state"] == "watching" and not registered.get("warnings")
    assert "registration warnings not worked out" in caplog.text


def test_register_wait_json_carries_the_registrations_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the registration's answer has `warnings`: the final object printed by
    `--wait --json` had null, and a pipeline reading the JSON alone never saw them."""
    said = ["rule health-latency: cannot pass on evidence by the window's end …"]

    async def foresee(*_: Any, **__: Any) -> list[str]:
        return said

    agent = AgentThread(tmp_path, foresight=foresee)
    agent.watcher.script = ends_in("inconclusive")
    try:
        assert register_command(register_args(agent, "--wait", "--json")) == 3
    finally:
        agent.stop()
    final = json.loads(capsys.readouterr().out)
    assert final["state"] == "inconclusive" and final["warnings"] == said


def test_wrong_token_exits_2_and_says_so(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register_command(register_args(agent, token="wrong")) == 2
    captured = capsys.readouterr()
    assert "refused the token (401)" in captured.err
    no_traceback(captured)


def test_unknown_environment_exits_2_and_names_it(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    args = register_args(agent)
    args.env = "moon"
    assert register_command(args) == 2
    err = capsys.readouterr().err
    assert "unknown environment 'moon'" in err and "(HTTP 404)" in err


def test_an_unreachable_agent_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    parser = argparse.ArgumentParser()
    add_register_arguments(parser)
    args = parser.parse_args(
        ["--url", f"http://127.0.0.1:{port}", "--token", "t", "--env", "e", "--version", "v"]
    )
    monkeypatch.setattr(PostflightClient, "__init__", _fast_retries(PostflightClient.__init__))
    assert register_command(args) == 2
    captured = capsys.readouterr()
    # the system's words, as a probe says them: asyncio's own were "Connect call failed
    # ('127.0.0.1', 41235)"
    said = f"postflight register: error: cannot reach the agent at http://127.0.0.1:{port}:"
    assert captured.err.strip() == f"{said} Connection refused (exit 2)", captured.err
    no_traceback(captured)


@pytest.mark.parametrize("url", ["ftp://pf:pa55word@agent:8787", "agent:pa55word@host:8787"])
def test_a_url_of_the_wrong_scheme_is_said_without_its_password(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--url ftp://user:password@…` was quoted back whole, password and all, into a
    pipeline's log."""
    parser = argparse.ArgumentParser()
    add_status_arguments(parser)
    assert status_command(parser.parse_args(["--url", url, "--token", "t"])) == 2
    err = capsys.readouterr().err
    assert "--url must start with http:// or https://" in err, err
    assert "pa55word" not in err, err
    with pytest.raises(ClientError) as info:
        PostflightClient(url, "t")
    assert "pa55word" not in str(info.value), info.value


@pytest.mark.parametrize(
    "spell", ["HTTP://{host}", "Http://{host}/", " http://{host}", "http://{host}\n"]
)
def test_an_agent_url_spelt_another_way_reaches_the_agent(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], spell: str
) -> None:
    """A URL's scheme is case-insensitive (RFC 3986), and a `$POSTFLIGHT_URL` read from a
    CI variable may carry a space or a newline: `HTTP://…` and ` http://…` were refused,
    "--url must start with http:// or https://" (a trailing space was taken)."""
    url = spell.format(host=agent.url.removeprefix("http://"))
    parser = argparse.ArgumentParser()
    add_status_arguments(parser)
    assert status_command(parser.parse_args(["--url", url, "--token", TOKEN])) == 0
    captured = capsys.readouterr()
    assert captured.err == "", captured.err


@pytest.mark.parametrize("tail", ["?token=s3cr3t", "#status", "/?x=1"])
def test_an_agent_url_with_a_query_or_fragment_is_a_usage_error_naming_it(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], tail: str
) -> None:
    """`--url http://agent:8787?x=1` sent every request to `/?x=1/v1/deploys`: the agent's
    404 "no such route", which named neither the URL nor what was wrong with it."""
    parser = argparse.ArgumentParser()
    add_status_arguments(parser)
    args = parser.parse_args(["--url", agent.url + tail, "--token", TOKEN])
    assert status_command(args) == 2
    err = capsys.readouterr().err
    assert "--url is the agent's base URL: without a query (?…) or a fragment (#…)" in err, err
    assert "no such route" not in err and "s3cr3t" not in err, err


def _fast_retries(init: Callable[..., None]) -> Callable[..., None]:
    def wrapped(self: PostflightClient, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "backoff": 0.01})

    return wrapped


def test_missing_required_flags_are_usage_errors() -> None:
    parser = argparse.ArgumentParser()
    add_register_arguments(parser)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--version", "v1"])
    assert exc.value.code == 2


# --- status --------------------------------------------------------------------------


def test_status_lists_recent_windows_as_a_table(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for _ in range(2):
        assert register_command(register_args(agent, "--quiet")) == 0
        ids.append(capsys.readouterr().out.strip())
    assert status_command(status_args(agent)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "ENVIRONMENT", "VERSION", "STATE"]
    assert ids[1] in lines[1] and "watching" in lines[1]
    assert ids[0] in lines[2] and "superseded" in lines[2]


def test_status_filters_by_environment(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status_command(status_args(agent, "--env", "staging")) == 0
    assert "no deploy windows yet in staging" in capsys.readouterr().out


def test_status_with_a_state_filter_that_matches_nothing_says_so(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status_command(status_args(agent, "--env", "production", "--state", "passed")) == 0
    assert "no passed deploy windows in production" in capsys.readouterr().out


def test_status_of_one_id_with_filters_it_does_not_match_exits_2(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register_command(register_args(agent, "--quiet")) == 0
    deploy_id = capsys.readouterr().out.strip()
    assert status_command(status_args(agent, deploy_id, "--env", "staging")) == 2
    assert f"{deploy_id} is in production, not staging" in capsys.readouterr().err
    assert status_command(status_args(agent, deploy_id, "--state", "passed")) == 2
    assert "not passed" in capsys.readouterr().err
    assert status_command(status_args(agent, deploy_id, "--env", "production")) == 0


def test_status_of_an_unknown_environment_exits_2_like_register(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status_command(status_args(agent, "--env", "moon")) == 2
    captured = capsys.readouterr()
    assert "unknown environment 'moon'; configured: production, staging" in captured.err
    no_traceback(captured)
    args = register_args(agent)
    args.env = "moon"
    assert register_command(args) == 2
    assert "unknown environment 'moon'" in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["0", "-1", "201"])
def test_status_limit_out_of_range_is_refused(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    assert status_command(status_args(agent, "--limit", limit)) == 2
    assert "--limit must be between 1 and 200" in capsys.readouterr().err


def test_status_limit_is_honoured(agent: AgentThread, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        assert register_command(register_args(agent, "--quiet")) == 0
    capsys.readouterr()
    assert status_command(status_args(agent, "--limit", "2", "--quiet")) == 0
    assert len(capsys.readouterr().out.split()) == 2


def test_status_says_when_more_windows_follow_than_the_limit_shows(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table of the `--limit` newest said nothing of those past it: the list looked
    whole (live audit). Said on stderr, so stdout stays the table; nothing when none follow."""
    for _ in range(3):
        assert register_command(register_args(agent, "--quiet")) == 0
    capsys.readouterr()
    assert status_command(status_args(agent, "--limit", "2")) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3  # the header and two windows
    assert "the 2 newest shown; more with --limit 4" in captured.err, captured.err
    assert status_command(status_args(agent, "--limit", "3")) == 0
    assert "more with" not in capsys.readouterr().err


def test_status_shows_the_20_newest_by_default_as_the_readme_says(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README: `--limit` defaults to 20, and the line on stderr reads
    `(the 20 newest shown; more with --limit 40)`."""
    for _ in range(21):
        assert register_command(register_args(agent, "--quiet")) == 0
    capsys.readouterr()
    assert status_command(status_args(agent)) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 21  # the header and 20 windows
    assert "(the 20 newest shown; more with --limit 40)" in captured.err, captured.err


def test_register_wait_on_a_scheduled_window_waits_like_watching(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    ahead = rfc3339(time.time() + 1200)
    args = register_args(agent, "--deployed-at", ahead, "--wait", "--timeout", "1s")
    assert register_command(args) == 3
    captured = capsys.readouterr()
    assert f"scheduled: the first round starts at {ahead}" in captured.out
    assert "is still scheduled" in captured.err


def test_a_scheduled_window_shows_as_scheduled(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    ahead = rfc3339(time.time() + 1200)
    assert register_command(register_args(agent, "--deployed-at", ahead, "--quiet")) == 0
    capsys.readouterr()
    assert status_command(status_args(agent, "--state", "scheduled")) == 0
    out = capsys.readouterr().out
    assert " scheduled " in out.splitlines()[1]


def test_status_of_one_window_shows_its_verdict_rules(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    agent.watcher.script = ends_in("rolled_back")
    register_command(register_args(agent, "--wait", "--quiet"))
    [window] = agent.call(agent.store.list_windows()).items
    capsys.readouterr()
    assert status_command(status_args(agent, window.id)) == 0
    out = capsys.readouterr().out
    assert window.id in out and "rolled_back" in out
    assert "RULE" in out and "probe-errors" in out and "✗ fail" in out and "max 0.05" in out
    assert "rollback  delivered" in out


def test_status_json(agent: AgentThread, capsys: pytest.CaptureFixture[str]) -> None:
    register_command(register_args(agent, "--quiet"))
    capsys.readouterr()
    assert status_command(status_args(agent, "--json")) == 0
    page = json.loads(capsys.readouterr().out)
    assert len(page["items"]) == 1 and page["next"] is None


def test_status_of_an_unknown_id_exits_2(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status_command(status_args(agent, "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ")) == 2
    captured = capsys.readouterr()
    assert "no deploy dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ" in captured.err
    no_traceback(captured)


def test_status_with_a_wrong_token_exits_2(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    args = status_args(agent)
    args.token = "nope"
    assert status_command(args) == 2
    assert "401" in capsys.readouterr().err


@pytest.fixture
def not_an_agent() -> Iterator[str]:
    """Another HTTP server where `--url` points (the service itself, a proxy's default
    site): 404 `text/plain` for every path, as aiohttp's or nginx's own pages are."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def _not_found(self) -> None:
            body = b"" if self.path.startswith("/v1/deploys/") else b"404: Not Found"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _not_found

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_status_of_an_id_at_a_url_that_is_not_the_agent_does_not_say_no_deploy(
    not_an_agent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said `no deploy dep_…` of a deploy that exists, to an on-call who mistyped the
    port: the 404 was another server's, which knows nothing of deploys."""
    parser = argparse.ArgumentParser()
    add_status_arguments(parser)
    args = parser.parse_args(
        ["--url", not_an_agent, "--token", TOKEN, "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"]
    )
    assert status_command(args) == 2
    captured = capsys.readouterr()
    assert "no deploy" not in captured.err
    assert f"{not_an_agent} answered HTTP 404, not as" in captured.err  # no body to quote
    assert "is --url (or $POSTFLIGHT_URL) the agent's address?" in captured.err
    no_traceback(captured)


def test_register_and_rollback_at_a_url_that_is_not_the_agent_say_so(
    not_an_agent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_rollback_arguments(parser)
    args = parser.parse_args(["--url", not_an_agent, "--token", TOKEN, "dep_x", "--reason", "r"])
    assert rollback_command(args) == 2
    assert register_command(register_args(None, "--url", not_an_agent, "--token", TOKEN)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err  # was `404: Not Found (HTTP 404)`, twice
    assert all("answered HTTP 404" in line and "the agent's address?" in line for line in err)


def test_a_url_with_the_api_path_says_to_leave_the_path_out(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    args = status_args(agent)
    args.url = agent.url + "/v1"
    assert status_command(args) == 2
    err = capsys.readouterr().err
    assert "--url is the agent's base URL, without the path /v1" in err, err


def test_the_agents_422_names_the_flag_not_the_apis_field(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--deployed-at` two hours ahead was refused as `deployed_at: is 2h ahead …`."""
    ahead = rfc3339(time.time() + 7200)
    assert register_command(register_args(agent, "--deployed-at", ahead)) == 2
    err = capsys.readouterr().err
    assert err.startswith("postflight register: error: --deployed-at: is "), err
    assert "at most 1h ahead is accepted (HTTP 422)" in err


@pytest.mark.parametrize("env", ["prod env", "producci\u00f3n"])
def test_status_names_the_env_flag_as_register_does(
    agent: AgentThread, capsys: pytest.CaptureFixture[str], env: str
) -> None:
    """`status --env 'prod env'` was refused as `environment: not an environment name …`
    (the API's query field, a name the command line does not have), where register says
    `--env: …`."""
    assert status_command(status_args(agent, "--env", env)) == 2
    err = capsys.readouterr().err
    assert err.startswith("postflight status: error: --env: not an environment name"), err


@pytest.mark.timeout(60)
@stopped_by_each_signal
def test_ctrl_c_during_register_wait_names_the_deploy_the_agent_keeps_watching(
    agent: AgentThread, sig: signal.Signals, word: str, code: int
) -> None:
    """It said `interrupted; the agent keeps watching the deploy`: which one, the on-call
    had to find up the scrollback (or nowhere, in a pipeline's log cut at the signal).
    SIGTERM (a pipeline's job cancelled) ended it silently, -15, and SIGHUP (the session
    closed, `register --wait … >> deploy.log` left running) as silently, -1."""
    cli = start_cli(
        *("register", "--url", agent.url, "--token", TOKEN),
        *("--env", "production", "--version", "v2.4.1", "--wait", "--quiet"),
    )
    try:
        assert cli.stdout is not None
        deploy_id = cli.stdout.readline().decode().strip()  # --quiet: the id, once registered
        assert deploy_id.startswith("dep_"), cli.communicate()
        cli.send_signal(sig)  # the window stays watching: no script ends it
        _, err = cli.communicate(timeout=30)
    finally:
        cli.kill()
    assert cli.returncode == code, err
    said = err.decode()
    assert f"{word}; the agent keeps watching {deploy_id}" in said, said
    assert f"(postflight status {deploy_id}) (exit {code})" in said, said  # as every end says it
    assert "Traceback" not in said


# --- progress output -------------------------------------------------------------------


def _deploy(rounds: int, outcome: str = "pass", state: str = "watching") -> Any:
    from agent.api.models import Deploy

    now = time.time()
    return Deploy.model_validate(
        {
            "id": "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
            "environment": "production",
            "version": "v1",
            "state": state,
            "deployed_at": "2026-11-26T14:00:00Z",
            "ends_at": "2026-11-26T14:10:00Z",
            "rounds": rounds,
            "progress": pending(rule("probe-errors", outcome)) if rounds else None,
            "links": {"self": "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"},
            "_now": now,
        }
    )


def test_progress_without_a_terminal_prints_only_changes() -> None:
    out = io.StringIO()
    progress = Progress(out=out, style=Style(), live=False)
    for rounds in range(30):
        progress.update(_deploy(rounds, "fail" if rounds == 20 else "pass"))
    lines = out.getvalue().splitlines()
    # round 1 (first outcomes), round 20 (fail), round 21 (back to pass)
    assert [line.split()[1] for line in lines] == ["1", "20", "21"]
    assert "\r" not in out.getvalue()


def test_progress_on_a_terminal_prints_every_round_and_a_live_status() -> None:
    out = io.StringIO()
    progress = Progress(out=out, style=Style(), live=True)
    for rounds in range(5):
        progress.update(_deploy(rounds))
    progress.finish()
    text = out.getvalue()
    assert text.count("✓ pass probe-errors") == 4
    assert "watching · round 4" in text


def test_status_and_wait_say_which_round_the_progress_figures_are_of() -> None:
    """`status ID` (and the end of `register --wait`) show the round `progress` is of,
    and a `--wait` round line says so when its figures are of an earlier round."""
    from agent.cli.render import details

    deploy = _deploy(5)
    assert deploy.progress is not None
    deploy.progress.round = 3
    shown = details(deploy, Style())
    assert "verdict   pending (figures of round 3)" in shown
    assert "rounds 5" in shown
    out = io.StringIO()
    Progress(out=out, style=Style(), live=False).update(deploy)
    assert out.getvalue().startswith("  round   5 (figures of round 3)  ✓ pass probe-errors")
    deploy.progress.round = 5  # of this round: nothing more to say
    out = io.StringIO()
    Progress(out=out, style=Style(), live=False).update(deploy)
    assert "figures of" not in out.getvalue()
    deploy.progress.round = None  # stored by an agent that did not record it
    assert "figures of" not in details(deploy, Style())


# --- the client on its own ---------------------------------------------------------


async def test_client_retries_a_registration_with_the_same_idempotency_key(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> None:
    keys: list[str | None] = []
    deploy = _deploy(0).model_dump(mode="json", by_alias=True)

    async def flaky(request: web.Request) -> web.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        if len(keys) < 3:
            return web.Response(status=503, text="<html>upstream restarting</html>")
        return web.json_response(deploy, status=201)

    app = web.Application()
    app.router.add_post("/v1/deploys", flaky)
    server = await aiohttp_server(app)
    request = DeployRequest(environment="production", version="v1")
    async with PostflightClient(str(server.make_url("")), "t", backoff=0.01) as api:
        got, replayed = await api.register(request, idempotency_key="k-1")
    assert got.id == deploy["id"] and not replayed
    assert keys == ["k-1", "k-1", "k-1"]


async def test_a_registration_rides_out_503s_past_its_quick_tries_when_asked(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ride_out_s` (what `register --wait` gives): an agent answering 503 (its store
    restarting) past the three quick tries is asked again, same key, each answer told to
    `on_unreachable`; a refusal meanwhile (401) ends it at once. Without it, the third 503
    is raised, as before."""
    monkeypatch.setattr("agent.client.RIDE_OUT_PACE_S", 0.01)
    keys: list[str | None] = []
    script: list[int] = []
    deploy = _deploy(0).model_dump(mode="json", by_alias=True)

    async def restarting(request: web.Request) -> web.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        status = script.pop(0) if script else 201
        if status == 201:
            return web.json_response(deploy, status=201)
        return web.json_response({"status": status, "detail": "store away"}, status=status)

    app = web.Application()
    app.router.add_post("/v1/deploys", restarting)
    server = await aiohttp_server(app)
    request = DeployRequest(environment="production", version="v1")
    told: list[int] = []
    async with PostflightClient(str(server.make_url("")), "t", backoff=0.01) as api:
        script[:] = [503] * 7
        got, _ = await api.register(
            request,
            idempotency_key="k-1",
            ride_out_s=60.0,
            on_unreachable=lambda e: told.append(e.status if isinstance(e, ApiError) else 0),
        )
        assert got.id == deploy["id"] and keys == ["k-1"] * 8
        assert told == [503, 503]  # after the 3rd and the 6th: one call of 3 quick tries each
        script[:] = [503] * 3 + [401]
        with pytest.raises(ApiError) as refused:
            await api.register(request, idempotency_key="k-2", ride_out_s=60.0)
        assert refused.value.status == 401 and keys[8:] == ["k-2"] * 4
        script[:] = [503] * 3
        with pytest.raises(ApiError) as away:
            await api.register(request, idempotency_key="k-3")
        assert away.value.status == 503 and keys[12:] == ["k-3"] * 3


async def test_client_reports_a_non_api_answer_in_one_line(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418, text="<html>\n<b>I'm a teapot</b>\n</html>")

    app = web.Application()
    app.router.add_get("/v1/deploys", html)
    app.router.add_get("/v1/deploys/{id}", teapot)
    server = await aiohttp_server(app)
    async with PostflightClient(str(server.make_url("")), "t") as api:
        with pytest.raises(BadResponse) as bad:
            await api.list_deploys()
        with pytest.raises(ApiError) as err:
            await api.get_deploy("dep_x")
    assert "not JSON" in str(bad.value) and "\n" not in str(bad.value)
    assert err.value.status == 418 and "\n" not in str(err.value)


async def test_client_wait_survives_an_agent_restart(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> None:
    calls = 0
    done = _deploy(3, state="passed").model_dump(mode="json", by_alias=True)

    async def get(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=503)
        return web.json_response(done)

    app = web.Application()
    app.router.add_get("/v1/deploys/{id}", get)
    server = await aiohttp_server(app)
    hiccups: list[str] = []
    async with PostflightClient(str(server.make_url("")), "t") as api:
        final = await api.wait(
            "dep_x",
            give_up_after=5,
            poll_interval=0.01,
            on_unreachable=lambda e: hiccups.append(str(e)),
        )
    assert final.state == "passed" and len(hiccups) == 1


async def test_client_refuses_a_url_without_scheme() -> None:
    from agent.client import ClientError

    with pytest.raises(ClientError):
        PostflightClient("localhost:8787", "t")
    assert issubclass(Unreachable, ClientError)


def test_a_skipped_rollback_says_why_not_after_how_many_attempts() -> None:
    """A dry run's rollback read `skipped after 0 attempts` and then `last attempt: dry
    run: the webhook was not called`, of an attempt never made (seen in a live audit)."""
    from agent.api.models import Rollback
    from agent.cli.render import details

    deploy = _deploy(2, "fail", state="failed")
    deploy.rollback = Rollback.model_validate(
        {
            "state": "skipped",
            "attempts": 0,
            "last_status": None,
            "requested_at": "2026-11-26T14:01:30Z",
            "last_error": "dry run: the webhook was not called",
        }
    )
    shown = details(deploy, Style(color=False))
    assert "  rollback  skipped (dry run: the webhook was not called); requested " in shown
    assert "attempt" not in shown, shown


@pytest.mark.parametrize("state", ["superseded", "cancelled"])
@pytest.mark.parametrize("rounds", [0, 4])
def test_status_of_a_window_that_ended_without_a_verdict_says_none_will_come(
    state: str, rounds: int
) -> None:
    """`status ID` of a superseded or cancelled window says it ended with no verdict, where
    it read `verdict   pending` (or `none yet`) of a window that will never have one
    (seen in a live audit); its last figures are still shown, as of their round."""
    from agent.cli.render import details

    deploy = _deploy(rounds, state=state)
    if deploy.progress is not None:
        deploy.progress.round = 3
    shown = details(deploy, Style())
    verdict_line = next(line for line in shown.splitlines() if line.startswith("  verdict"))
    assert "pending" not in verdict_line and "yet" not in verdict_line, shown
    assert f"none: {state} before a verdict" in verdict_line, shown
    if rounds:
        assert "(figures of round 3)" in verdict_line, shown
        assert "probe-errors" in shown  # the rules' last figures, still shown


def test_status_shows_text_from_outside_with_its_controls_escaped() -> None:
    """A rule's detail and a verdict's reason carry words from targets and providers (an
    error message, a body's start); `status` and `register --wait` printed them raw, so an
    escape sequence in them reached the terminal. Escaped, whatever the agent sent."""
    from agent.api.models import Deploy
    from agent.cli.render import details, summary

    deploy = Deploy.model_validate(
        {
            "id": "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
            "environment": "production",
            "version": "v1",
            "state": "rolled_back",
            "deployed_at": "2026-11-26T14:00:00Z",
            "ends_at": "2026-11-26T14:10:00Z",
            "rounds": 3,
            "verdict": {
                "outcome": "fail",
                "decided_at": "2026-11-26T14:01:30Z",
                "reason": "sentry: \x1b]0;pwned\x07 failed",
                "rules": [rule("probe-errors", "fail", detail="body: \x1b[2Jboom")],
            },
            "rollback": {
                "state": "delivered",
                "attempts": 2,
                "last_status": 200,
                "requested_at": "2026-11-26T14:01:30Z",
                "last_error": "HTTP 503: \x1b[31mdown",
            },
            "links": {"self": "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"},
        }
    )
    for shown in (details(deploy, Style()), summary(deploy, Style(), 1)):
        assert "\x1b" not in shown and "\x07" not in shown, repr(shown)
        assert "\\x1b]0;pwned\\x07 failed" in shown and "\\x1b[2Jboom" in shown, shown
        assert "\\x1b[31mdown" in shown, shown


def test_a_rule_breaching_short_of_its_failure_limit_is_not_shown_as_a_pass() -> None:
    """Under the threshold policy a rule past its bound for fewer rounds than
    `failure_limit` is `pass` in the agent's progress (the verdict would pass if the
    window ended now); `register --wait` printed it `✓ pass probe-errors 1 (max 0.05)`
    at 100% errors, and `status` the same in its table (live audit). Shown as a breach
    with how far along the limit it is; the API's outcome is unchanged, and a decided
    verdict's rules are shown as decided."""
    from agent.api.models import Deploy
    from agent.cli.render import details

    streak = {
        "policy": "threshold",
        "streak": 3,
        "failure_limit": 4,
        "failing_rounds": [1, 2, 3],
        "breaches": ["max 0.05"],
    }
    breaching = rule("probe-errors", "pass", observed=1.0, evidence=streak)
    calm = rule("latency", "pass", evidence={**streak, "streak": 0, "breaches": []})
    deploy = _deploy(3)
    deploy = Deploy.model_validate(
        {
            **deploy.model_dump(mode="json"),
            "progress": {**pending(breaching, calm), "round": 3},
        }
    )
    out = io.StringIO()
    Progress(out=out, style=Style(), live=False).update(deploy)
    line = out.getvalue()
    assert "! breach probe-errors 100% (max 5%, 3 of 4 rounds)" in line, line
    assert "✓ pass latency" in line, line
    shown = details(deploy, Style())
    assert "probe-errors  ! breach" in shown, shown
    assert "max 5%, 3 of 4 rounds " in shown, shown  # was cut: `max 0.05, 3 of 4 ro…`
    decided = Deploy.model_validate(
        {
            **deploy.model_dump(mode="json"),
            "state": "passed",
            "progress": None,
            "verdict": {
                "outcome": "pass",
                "decided_at": "2026-11-26T14:10:00Z",
                "reason": "passed",
                "rules": [breaching],
            },
        }
    )
    assert "probe-errors  ! pass" in details(decided, Style())  # was `✓ pass` beside 1


def _short_window(counts: list[tuple[int, int] | None]) -> Any:
    """The verdict of a threshold window (max 0.05, failure_limit 2) over rounds of `counts`
    (failed, probes; None: no data), as the judge gives it, pure."""
    from agent.analysis.judge import judge
    from agent.analysis.types import Observation, Policy
    from agent.analysis.types import Rule as JudgedRule

    errors = JudgedRule("probe-errors", "checks", "error_rate", max=0.05)
    rounds = [
        {
            errors.name: Observation(None, error="no data")
            if c is None
            else Observation(c[0] / c[1], count=c[0], total=c[1])
        }
        for c in counts
    ]
    baseline = {errors.name: Observation(0.392, count=49, total=125)}
    return judge([errors], baseline, rounds, Policy("threshold", failure_limit=2), final=True)


def _decided(verdict: Any, state: str) -> Any:
    """A deploy of 2 rounds ended `state` with `verdict` (the judge's)."""
    from agent.api.models import Deploy
    from agent.windows.evidence import verdict_to_dict

    deploy = _deploy(2, state=state)
    return Deploy.model_validate(
        {
            **deploy.model_dump(mode="json"),
            "progress": None,
            "verdict": verdict_to_dict(verdict, decided_at=time.time()),
        }
    )


def test_a_window_passed_short_of_its_failure_limit_never_ends_on_a_tick_beside_its_breach() -> (
    None
):
    """A threshold window (max 0.05, failure_limit 2) over a 40%-errors target passed, its
    last round line `✓ pass probe-errors 0.4 (max 0.05)` (the shared run of the wait end
    lines, baseline 0.392). The pass is the policy's: the rule's last round with data was
    past its bound, one round of the two in a row that fail it, after one within it (the
    judge, pure, fed such rounds, passes them; two such rounds in a row fail). The line now
    says so, `! pass`."""
    from agent.cli.render import details

    verdict = _short_window([(0, 5), (2, 5)])
    assert verdict.decision == "pass"  # by the policy's rules: 1 of 2 rounds in a row
    assert _short_window([(2, 5)] * 2).decision == "fail"  # never two such rounds in a row
    deploy = _decided(verdict, "passed")
    out = io.StringIO()
    Progress(out=out, style=Style(), live=False).update(deploy)
    line = out.getvalue()
    assert "✓" not in line, line
    assert (
        "! pass probe-errors 40% (past max 5% in round 2: 1 of 2 rounds in a row, too few"
        " to fail)" in line
    ), line
    shown = details(deploy, Style())  # `status ID`, and the end of `register --wait`
    row = next(line for line in shown.splitlines() if line.strip().startswith("probe-errors"))
    assert "✓" not in row and "! pass" in row and "max 5%, 1 of 2 rounds" in row, shown


@pytest.mark.parametrize(
    "counts",
    [
        # round 1's probes all dropped as the agent's own lag (no data), round 2 at 0.4
        [None, (2, 5)],
        # round 2 had no data: round 1 at 0.4 was its only round with data
        [(2, 5), None],
    ],
    ids=["no data, then 0.4", "0.4, then no data"],
)
def test_a_window_whose_only_round_with_data_breached_ends_inconclusive_saying_so(
    counts: list[tuple[int, int] | None],
) -> None:
    """Its one round with data past its bound passed it (`! pass probe-errors 40% (past
    max 0.05 in round 2: 1 of 2 rounds in a row, too few to fail)`): no round showed the
    rule within its bound, so the window is `inconclusive`, and its lines say why."""
    from agent.cli.render import details

    verdict = _short_window(counts)
    assert verdict.decision == "inconclusive", verdict.reason
    deploy = _decided(verdict, "inconclusive")
    out = io.StringIO()
    Progress(out=out, style=Style(), live=False).update(deploy)
    line = out.getvalue()
    assert "✓" not in line and "! pass" not in line, line
    shown = details(deploy, Style())
    assert "had no round within its bound" in shown or "none within it" in shown, shown


def test_a_breach_starting_short_of_the_limit_is_a_line_in_a_ci_log() -> None:
    """Without a terminal a round line is printed when an outcome changes: a breach that
    starts (still `pass` in the API) is one, where the log stayed silent until it failed."""
    from agent.api.models import Deploy

    out = io.StringIO()
    progress = Progress(out=out, style=Style(), live=False)
    for rounds, streak in ((1, 0), (2, 0), (3, 1), (4, 2)):
        evidence = {"policy": "threshold", "streak": streak, "failure_limit": 3}
        deploy = _deploy(rounds)
        progress.update(
            Deploy.model_validate(
                {
                    **deploy.model_dump(mode="json"),
                    "progress": pending(rule("probe-errors", "pass", evidence=evidence)),
                }
            )
        )
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1", "3"], lines
    assert "! breach probe-errors" in lines[1] and "1 of 3 rounds" in lines[1], lines


ROLLED_BACK: dict[str, Any] = {
    "id": "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
    "environment": "staging",
    "version": "v1",
    "state": "failed",
    "deployed_at": "2026-11-26T14:00:00Z",
    "ends_at": "2026-11-26T14:10:00Z",
    "rounds": 2,
    "verdict": {
        "outcome": "fail",
        "decided_at": "2026-11-26T14:01:30Z",
        "reason": "by hand",
        "rules": [],
    },
    "rollback": {
        "state": "skipped",
        "attempts": 0,
        "last_status": None,
        "requested_at": "2026-11-26T14:01:30Z",
        "last_error": "dry run: the webhook was not called",
    },
    "links": {"self": "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"},
}
"""A failed deploy whose rollback the agent answered with (its dry run's)."""


def test_rollback_of_a_dry_run_environment_says_the_webhook_was_not_called(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It said 'accepted: skipped', which an on-call could take for a rollback under way:
    the environment's rollback.dry_run kept the webhook from being called (live audit)."""
    deploy = ROLLED_BACK

    out = rollback_printed(deploy, capsys)
    assert "accepted: skipped (dry run: the webhook was not called)" in out, out
    assert "postflight status" not in out, out  # nothing to deliver


def test_a_manual_rollback_accepted_says_where_its_delivery_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A new user's `postflight rollback` ended at "accepted: pending", with nothing to say
    where the webhook's answer would show."""
    deploy = {
        **ROLLED_BACK,
        "rollback": {"state": "pending", "attempts": 0, "requested_at": "2026-11-26T14:01:30Z"},
    }

    out = rollback_printed(deploy, capsys)

    said = "accepted: pending (its delivery: postflight status dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ)"
    assert said in out, out


def rollback_printed(deploy: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    """What `postflight rollback` prints for an agent that answers 202 with `deploy`."""

    class Agent(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = json.dumps(deploy).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        parser = argparse.ArgumentParser()
        add_rollback_arguments(parser)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = parser.parse_args(["--url", url, "--token", TOKEN, deploy["id"], "--reason", "r"])
        assert rollback_command(args) == 0
    finally:
        server.shutdown()
        server.server_close()
    return capsys.readouterr().out


@pytest.mark.timeout(60)
@stopped_by_each_signal
@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["status"], "postflight status: {word} before the agent answered: nothing shown"),
        (
            ["rollback", "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ", "--reason", "bad"],
            "postflight rollback: {word} before the agent answered: the rollback of"
            " dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ may or may not have been requested"
            " (postflight status dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ says)",
        ),
    ],
    ids=["status", "rollback"],
)
def test_status_and_rollback_stopped_by_a_signal_say_so(
    command: list[str], said: str, sig: signal.Signals, word: str, code: int
) -> None:
    """`status` and `rollback` waiting on a slow agent, stopped by SIGTERM (a pipeline's job
    cancelled) or SIGHUP (the session closed), ended silently, -15 or -1, and CTRL-C with a
    bare 130: a rollback's log said nothing of whether it was asked. Each says it was
    stopped and exits 128 + the signal, as `register --wait` and `check` do."""
    with socket.create_server(("127.0.0.1", 0)) as listener:  # answers nothing
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        cli = start_cli(*command, "--url", url, "--token", TOKEN)
        try:
            listener.settimeout(30)
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(30)
                assert connection.recv(65536)  # the request is out: the CLI waits on us
                cli.send_signal(sig)
                out, err = cli.communicate(timeout=30)
        finally:
            cli.kill()
    assert cli.returncode == code, err
    assert err.decode().strip() == said.format(word=word) + f" (exit {code})"
    assert out == b""


def test_a_sequential_rule_warned_breached_is_shown_so_pending_and_decided() -> None:
    """The sequential policy's `rule breached` warning (`breaching` in a rule's evidence)
    was shown `? inconclusive` (or `✓ pass` under `pass_on: no_failure`) while on-call had
    just been paged `breached`. Pending, `! breach` with its evidence against what fails it;
    a window passed so, `! pass` with the same words; an inconclusive one stays so."""
    from agent.api.models import Deploy
    from agent.cli.render import details

    warned = {
        "p_value": 0.2,
        "breaching": {
            "bound": "max",
            "likelihood_ratio": 7115.0,
            "likelihood_ratio_warned": 3969.0,
            "likelihood_ratio_needed": 250000.0,
        },
    }
    unsure = rule("probe-errors", "inconclusive", observed=0.5, evidence=warned)
    deploy = _deploy(4)
    deploy = Deploy.model_validate(
        {**deploy.model_dump(mode="json"), "progress": {**pending(unsure), "round": 4}}
    )
    out = io.StringIO()
    Progress(out=out, style=Style(), live=False).update(deploy)
    line = out.getvalue()
    assert "! breach probe-errors 50% (max 5%, 7,115 to 1 of 250,000)" in line, line
    assert "probe-errors  ! breach" in details(deploy, Style())

    def decided(outcome: str) -> str:
        verdict = {
            "outcome": outcome,
            "decided_at": "2026-11-26T14:10:00Z",
            "reason": outcome,
            "rules": [rule("probe-errors", outcome, observed=0.5, evidence=warned)],
        }
        body = {**deploy.model_dump(mode="json"), "progress": None, "verdict": verdict}
        return details(Deploy.model_validate({**body, "state": "passed"}), Style())

    assert "probe-errors  ! pass" in decided("pass")
    assert "probe-errors  ? inconclusive" in decided("inconclusive")


def test_register_with_a_misspelt_environment_names_the_one_meant(
    agent: AgentThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new user's `register --env mien` read "unknown environment 'mien'; configured:
    mine", where a misspelt key in the config says which was meant."""
    args = register_args(agent)
    args.env = "prodcution"
    assert register_command(args) == 2
    captured = capsys.readouterr()
    said = "unknown environment 'prodcution'; configured: production, staging"
    assert f"{said} (did you mean 'production'?)" in captured.err, captured.err
    no_traceback(captured)
