"""`postflight check`: every check of an environment once, a table, exit 0/1/2."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.cli.main import main
from tests.cli_process import awaited_cli, cli_env, sigint_at_default, stopped_by_each_signal
from tests.plugin_site import install_distribution

CONFIG = """\
server:
  api_tokens: [tok-1234567890abcdef]
environments:
  staging:
    base_url: {url}
    checks:
      - name: health
        type: http
        path: /health
        expect: {{status: 200}}
      - name: {second}
        type: http
        path: {second_path}
        expect: {{status: 200}}
"""


def write(tmp_path: Path, target: TestServer, path: str) -> Path:
    config = tmp_path / "postflight.yaml"
    url = str(target.make_url("")).rstrip("/")
    config.write_text(CONFIG.format(url=url, second="second", second_path=path))
    return config


async def run_cli(*argv: str) -> int:
    import asyncio

    # `check` runs its own event loop: call it from a worker thread
    return await asyncio.to_thread(main, list(argv))


async def test_all_pass_exits_0_with_a_table(
    tmp_path: Path, target: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, target, "/health")
    assert await run_cli("check", "--config", str(config), "--env", "staging") == 0
    out = capsys.readouterr().out
    assert "CHECK" in out and "health" in out and "2 passed, 0 failed" in out
    # each run's time as every latency reads (`format_duration`), where a run of a few ms
    # read `2ms` or `0ms`: below 10 ms in three significant digits
    times = [line.split()[3] for line in out.splitlines() if line.startswith("health")]
    assert times and all(re.fullmatch(r"\d\.\d+ms|0\.\d+ms|\d{2,}ms|[\d.]+s", t) for t in times), (
        out
    )


async def test_a_failing_check_exits_1_and_says_why(
    tmp_path: Path, target: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, target, "/broken")
    assert await run_cli("check", "--config", str(config), "--env", "staging") == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "503" in out and "1 passed, 1 failed" in out


async def test_a_secret_read_from_a_variable_into_a_path_is_never_printed(
    tmp_path: Path,
    target: TestServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`path: /broken?key=${PF_HEALTH_TOKEN}` (a target that takes its key in the query):
    the failure printed the key, and the same detail reached alerts and the API. A value
    read from a variable named as a secret (…_TOKEN, …_SECRET, …_PASSWORD, …_KEY) is
    redacted as the SecretStr settings are."""
    monkeypatch.setenv("PF_HEALTH_TOKEN", "hk-0123456789abcdef")
    config = write(tmp_path, target, "/broken?key=${PF_HEALTH_TOKEN}")
    assert await run_cli("check", "--config", str(config), "--env", "staging") == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "503" in captured.out
    assert "GET /broken?key=***: status" in captured.out
    assert "0123456789abcdef" not in captured.out + captured.err


async def test_unknown_environment_exits_2(
    tmp_path: Path, target: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, target, "/health")
    assert await run_cli("check", "--config", str(config), "--env", "nope") == 2
    err = capsys.readouterr().err
    # named by its command, as every other command's error is (it said `postflight:`)
    assert err.startswith("postflight check: error: unknown environment 'nope'; configured: "), err


async def test_a_dash_reads_the_configuration_from_standard_input(
    tmp_path: Path, target: TestServer
) -> None:
    """The README: `-` is standard input for `check` too, as a CI step pipes a rendered
    configuration in (`envsubst < t.yaml | postflight check --config - --env staging`)."""
    text = write(tmp_path, target, "/broken").read_text()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent", "check", "--config", "-", "--env", "staging"),
        env=cli_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), 60)
    said = out.decode()
    assert proc.returncode == 1, said  # /broken answers 503: one check failed
    assert "1 passed, 1 failed" in said, said


ELSEWHERE = """\
server:
  api_tokens: ["${PF_API_TOKEN}"]
store: {url: "${PF_STORE}"}
providers: {sentry: {token: "${PF_SENTRY_TOKEN}", org: acme}}
alerting: {channels: [{url: "${PF_CHAT_URL}"}]}
environments:
  staging:
    base_url: {url}
    checks:
      - {name: health, type: http, path: "/health?key=${PF_HEALTH_KEY}"}
    baseline: {sentry: {project: web}}
    rules:
      - {name: errors, source: sentry, metric: error_rate, max: 0.05}
    rollback: {url: http://127.0.0.1:9/rb, secret: "${PF_ROLLBACK_SECRET}"}
  production:
    base_url: ${PF_PRODUCTION_URL}
"""


async def test_only_the_variables_its_environments_checks_use_must_be_set(
    tmp_path: Path,
    target: TestServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CI step running staging's checks was refused (exit 2, five errors) for the
    server's token, the store, a provider, a channel, staging's rollback secret and
    another environment's URL: none of which a check reads. Its check's own variable is
    still demanded, named at its field, exit 2."""
    for name in ("API_TOKEN", "STORE", "SENTRY_TOKEN", "CHAT_URL", "ROLLBACK_SECRET"):
        monkeypatch.delenv(f"PF_{name}", raising=False)
    for name in ("PF_PRODUCTION_URL", "PF_HEALTH_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "postflight.yaml"
    url = str(target.make_url("")).rstrip("/")
    config.write_text(ELSEWHERE.replace("{url}", url))
    argv = ("check", "--config", str(config), "--env", "staging")
    assert await run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[1:] == [
        "  environments.staging.checks[0].path (line 10):"
        " environment variable PF_HEALTH_KEY is not set"
    ], err
    monkeypatch.setenv("PF_HEALTH_KEY", "k")
    assert await run_cli(*argv) == 0
    captured = capsys.readouterr()
    assert "1 passed, 0 failed" in captured.out, captured.out + captured.err
    assert await run_cli("check", "--config", str(config), "--env", "nope") == 2
    err = capsys.readouterr().err
    assert "unknown environment 'nope'; configured: production, staging (exit 2)" in err, err


async def test_an_environment_a_variable_adds_is_checked_as_the_files_are(
    tmp_path: Path,
    target: TestServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`POSTFLIGHT__ENVIRONMENTS__CANARY` set as JSON adds an environment the file lacks:
    `check --env canary` runs its checks, the file's other variables unset all the same."""
    monkeypatch.delenv("PF_API_TOKEN", raising=False)
    url = str(target.make_url("")).rstrip("/")
    canary = {"base_url": url, "checks": [{"name": "health", "type": "http", "path": "/health"}]}
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__CANARY", json.dumps(canary))
    config = tmp_path / "postflight.yaml"
    config.write_text(
        'server: {api_tokens: ["${PF_API_TOKEN}"]}\n'
        "environments: {staging: {base_url: 'http://127.0.0.1:9'}}\n"
    )
    assert await run_cli("check", "--config", str(config), "--env", "canary") == 0
    captured = capsys.readouterr()
    assert "1 passed, 0 failed" in captured.out, captured.out + captured.err


@pytest.mark.parametrize(("variable", "named"), [("STAGING", "STAGING"), ("EU_WEST", "eu-west")])
async def test_an_environment_a_variable_adds_is_named_as_run_names_it(
    tmp_path: Path,
    target: TestServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    named: str,
) -> None:
    """`POSTFLIGHT__ENVIRONMENTS__STAGING__…` adds `staging` (`…__EU_WEST__…` adds
    `eu_west`), the name `run` registers its deploys under: `check --env STAGING` (or
    `eu-west`) crashed with a KeyError, exit 1. A name `run` does not have is unknown,
    exit 2, with the names it has; the one it has runs the checks."""
    url = str(target.make_url("")).rstrip("/")
    monkeypatch.setenv(f"POSTFLIGHT__ENVIRONMENTS__{variable}__BASE_URL", url)
    health = [{"name": "health", "type": "http", "path": "/health"}]
    monkeypatch.setenv(f"POSTFLIGHT__ENVIRONMENTS__{variable}__CHECKS", json.dumps(health))
    config = tmp_path / "postflight.yaml"
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        "environments: {production: {base_url: 'http://127.0.0.1:9'}}\n"
    )
    from agent.settings_file import load_config

    run_names = list(load_config(config).settings.environments)
    assert run_names == ["production", variable.lower()]
    assert await run_cli("check", "--config", str(config), "--env", named) == 2
    err = capsys.readouterr().err
    known = f"configured: {', '.join(sorted(['production', variable.lower()]))}"
    if named == "eu-west":  # a near miss names the one meant
        known += " (did you mean 'eu_west'?)"
    known += " (exit 2)"
    assert err == f"postflight check: error: unknown environment {named!r}; {known}\n", err
    assert await run_cli("check", "--config", str(config), "--env", variable.lower()) == 0
    captured = capsys.readouterr()
    assert "1 passed, 0 failed" in captured.out, captured.out + captured.err


async def test_an_environment_only_variables_give_is_checked_without_the_files_section(
    tmp_path: Path,
    target: TestServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file with no `environments` at all, its one environment from variables: the
    same names (it read the whole file and crashed with a KeyError on `STAGING`)."""
    url = str(target.make_url("")).rstrip("/")
    canary = {"base_url": url, "checks": [{"name": "health", "type": "http", "path": "/health"}]}
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__STAGING", json.dumps(canary))
    config = tmp_path / "postflight.yaml"
    config.write_text("server: {api_tokens: [tok-1234567890abcdef]}\n")
    assert await run_cli("check", "--config", str(config), "--env", "STAGING") == 2
    err = capsys.readouterr().err
    said = "unknown environment 'STAGING'; configured: staging (exit 2)"
    assert err == f"postflight check: error: {said}\n", err
    assert await run_cli("check", "--config", str(config), "--env", "staging") == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


async def test_an_environment_without_checks_says_nothing_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed an empty table and '0 passed, 0 failed', exit 0: a CI smoke step that
    ran nothing read as one that passed (live audit). It says so instead, naming the key
    to add; exit 0 still (nothing failed: the contract's 0 is 'all pass')."""
    config = tmp_path / "postflight.yaml"
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        "environments: {bare: {base_url: 'http://127.0.0.1:9'}}\n"
    )
    assert await run_cli("check", "--config", str(config), "--env", "bare") == 0
    captured = capsys.readouterr()
    assert "CHECK" not in captured.out and "0 passed" not in captured.out, captured.out
    assert (
        "postflight check: bare has no checks: nothing ran (add them under"
        " environments.bare.checks)" in captured.err
    ), captured.err


async def test_a_response_body_cannot_write_terminal_controls_through_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failing step quotes the start of the target's body; its escape sequences (clear
    the screen, retitle the terminal) and a bidirectional override reached the terminal
    raw through the table (live audit), as they did `status` and `register --wait` (the
    rule's detail). Shown escaped instead; the rest of the body as it was."""

    async def hostile(request: web.Request) -> web.Response:
        return web.Response(status=500, text="\x1b[2J\x1b]0;pwned\x07boom \u202eevil \u00e9t\u00e9")

    out = await failed_check_of(
        tmp_path,
        capsys,
        ("/x", hostile),
        "{name: s, type: smoke, steps: [{name: one, path: /x, expect: {status: 200}}]}",
    )
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, repr(out)
    assert "body: \\x1b[2J\\x1b]0;pwned\\x07boom \\u202eevil \u00e9t\u00e9" in out, out


async def test_a_json_field_cannot_write_terminal_controls_through_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A field's value quoted in a mismatch is JSON, whose escapes leave C1 controls (an
    8-bit CSI) and bidirectional overrides raw: the table shows them escaped too."""

    async def hostile(request: web.Request) -> web.Response:
        return web.json_response({"status": "\u009b2J\u202edown"})

    out = await failed_check_of(
        tmp_path,
        capsys,
        ("/h", hostile),
        "{name: h, type: http, path: /h, expect: {status: 200, json: {status: ok}}}",
    )
    assert "\u009b" not in out and "\u202e" not in out, repr(out)
    assert "\\x9b2J\\u202edown" in out, out


async def test_a_date_written_in_a_checks_json_is_the_text_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`expect: {json: {released: 2024-01-01}}`, a smoke step's `json: {when: 2024-01-01}`
    and a header `X-Day: 2024-01-01`: YAML 1.1 read each as a date, which no JSON holds,
    so the config validated and every run of both checks crashed, "TypeError: Object of
    type date is not JSON serializable" (an error each probe, in the daemon too), and the
    header was refused in pydantic's words ("Input should be a valid string"). As in YAML
    1.2 (and as for base-60 numbers), they are the text written: the date a JSON API
    sends, the body and header the target receives."""
    received: list[tuple[object, str]] = []

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"released": "2024-01-01"})

    async def echo(request: web.Request) -> web.Response:
        received.append((await request.json(), request.headers.get("X-Day", "")))
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_post("/echo", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        config = tmp_path / "postflight.yaml"
        url = str(server.make_url("")).rstrip("/")
        config.write_text(
            "server: {api_tokens: [tok-1234567890abcdef]}\n"
            f"environments: {{e: {{base_url: '{url}', checks: [\n"
            "  {name: v, type: http, path: /version, expect: {json: {released: 2024-01-01}}},\n"
            "  {name: s, type: smoke, steps: [{name: post, method: POST, path: /echo,\n"
            "    headers: {X-Day: 2024-01-01}, json: {when: 2024-01-01 10:30:00}}]}]}}\n"
        )
        code = await run_cli("check", "--config", str(config), "--env", "e")
    finally:
        await server.close()
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "2 passed, 0 failed" in captured.out
    assert received and received[0] == ({"when": "2024-01-01 10:30:00"}, "2024-01-01")


@pytest.fixture
def stalled_agent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The agent's loop read as stalled 10 s during the first `stalls[0]` runs and not at
    all after: the real `checks.lag.agents_part` decides, given a stall the test cannot make
    on demand, nor rule out (a loaded machine stalls a 200 ms wait past its tenth, and the
    run again was dropped too). A stalled run's timeout comes without the socket's silence
    seen (`checks.lag.UNANSWERED`), as through aiohttp (TLS), which cannot look: a timeout
    the lean client saw unanswered is the target's however the loop stalled."""
    from agent.windows.probing import EnvironmentProbe
    from checks import lag

    stalls = [1]

    def attributed(self, result, looplag, mark, late):  # type: ignore[no-untyped-def]
        stalled = 10.0 if stalls[0] > 0 else 0.0
        stalls[0] -= 1
        if stalled:
            unseen = {k: v for k, v in result.details.items() if k != lag.UNANSWERED}
            result = dataclasses.replace(result, details=unseen)
        return lag.agents_part(result, stalled, 0.0, late)[0]

    monkeypatch.setattr(EnvironmentProbe, "_attributed", attributed)
    return stalls


async def hang_target() -> TestServer:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_get("/hang", hang)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


HANG = """\
server:
  api_tokens: [tok-1234567890abcdef]
environments:
  staging:
    base_url: {url}
    checks:
      - {{name: hang, type: http, path: /hang, timeout: 200ms}}
"""


async def check_a_hang(tmp_path: Path) -> None:
    """`postflight check` of one probe of a target that never answers: exit 1."""
    server = await hang_target()
    try:
        config = tmp_path / "postflight.yaml"
        config.write_text(HANG.format(url=str(server.make_url("")).rstrip("/")))
        assert await run_cli("check", "--config", str(config), "--env", "staging") == 1
    finally:
        await server.close()


async def test_a_timeout_the_agents_stall_could_cause_is_run_again_not_passed(
    tmp_path: Path, stalled_agent: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    await check_a_hang(tmp_path)
    out = capsys.readouterr().out
    # the run again, with the agent listening: the target's own timeout
    assert "FAIL" in out and "no response within 200ms" in out and "0 passed, 1 failed" in out
    assert "dropped" not in out


async def test_a_run_the_agent_could_not_judge_twice_is_shown_as_such_and_is_no_pass(
    tmp_path: Path, stalled_agent: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    stalled_agent[0] = 2
    await check_a_hang(tmp_path)
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("hang"))
    assert "dropped" in row and "pass" not in row
    assert "0 passed, 0 failed, 1 not judged (the agent itself was stalled" in out


async def failed_check_of(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    route: tuple[str, Callable[[web.Request], Awaitable[web.Response]]],
    check: str,
) -> str:
    """`postflight check`'s output for one check (YAML flow text) against a target that
    answers `route`, which must fail it (exit 1)."""
    app = web.Application()
    app.router.add_get(*route)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        config = tmp_path / "postflight.yaml"
        url = str(server.make_url("")).rstrip("/")
        config.write_text(
            "server: {api_tokens: [tok-1234567890abcdef]}\n"
            f"environments: {{e: {{base_url: '{url}', checks: [{check}]}}}}\n"
        )
        assert await run_cli("check", "--config", str(config), "--env", "e") == 1
    finally:
        await server.close()
    return capsys.readouterr().out


async def slow_target(path: str) -> tuple[TestServer, asyncio.Event]:
    """A target that answers `path` only after 30 s, and the event set when it is asked."""
    asked = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        asked.set()
        await asyncio.sleep(30)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get(path, slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, asked


async def start_check(
    config: Path, environment: str, **env_vars: str
) -> asyncio.subprocess.Process:
    """`postflight check` in a process of its own (a signal's default is its own)."""
    with sigint_at_default():
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "check", "--config", str(config), "--env", environment,
            env=cli_env(**env_vars), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip


@pytest.mark.timeout(60)
@stopped_by_each_signal
async def test_a_check_stopped_by_a_signal_says_so(
    tmp_path: Path, sig: signal.Signals, word: str, code: int
) -> None:
    """A CI job cancelled (SIGTERM) while a check waited on a slow target ended `check`
    silently, exit -15: the step's log said nothing. It says it was stopped and exits
    128 + the signal, as `register --wait` and the demo do."""
    server, asked = await slow_target("/health")
    config = tmp_path / "postflight.yaml"
    url = str(server.make_url("")).rstrip("/")
    config.write_text(CONFIG.format(url=url, second="other", second_path="/health"))
    cli = await start_check(config, "staging")
    try:
        await asyncio.wait_for(asked.wait(), 30)  # a check is waiting on the target
        cli.send_signal(sig)
        out, err = await asyncio.wait_for(cli.communicate(), 30)
    finally:
        if cli.returncode is None:
            cli.kill()
        await server.close()
    said = err.decode()
    assert cli.returncode == code, said
    ended = f"{word} before its checks ended: nothing judged (exit {code})"
    assert said.strip() == f"postflight check: {ended}"
    assert out == b""


@pytest.mark.timeout(60)
async def test_a_load_check_stopped_mid_run_closes_its_connections(tmp_path: Path) -> None:
    """A load check's connections (its own pool, `checks.load.LoadPool`) are closed by
    `check` on every way out, a stop mid-run too: no unclosed-session warning or log on
    stderr."""
    server, asked = await slow_target("/slow")
    url = str(server.make_url("")).rstrip("/")
    config = tmp_path / "postflight.yaml"
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        f"environments: {{e: {{base_url: '{url}', checks: [{{name: feed, type: load,"
        " path: /slow, rate: 20/s, duration: 5s, warmup: 0s, timeout: 20s}]}}\n"
    )
    cli = await start_check(config, "e", PYTHONWARNINGS="always::ResourceWarning")
    try:
        await asyncio.wait_for(asked.wait(), 30)  # requests are in flight
        await asyncio.sleep(0.3)
        cli.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(cli.communicate(), 30)
    finally:
        if cli.returncode is None:
            cli.kill()
        await server.close()
    said = err.decode()
    assert cli.returncode == 143, said
    assert "Unclosed" not in said and "ResourceWarning" not in said, said


BUGGY_PLUGIN = """
from typing import Literal

from checks.base import Check, CheckConfig


class BuggyConfig(CheckConfig):
    type: Literal["buggy"] = "buggy"


class BuggyCheck(Check):
    type = "buggy"
    Config = BuggyConfig

    async def run(self, ctx):
        return {"status": 200}["latency"]
"""


async def test_a_checks_own_bug_is_shown_as_such_and_is_no_pass(
    tmp_path: Path, target: TestServer
) -> None:
    """A plugin's `KeyError` is its own bug, not the target's failure (`checks.bugs`): its
    row says ERROR and where, the summary does not count it failed, and the step still
    exits 1 (no check was made). Before, it was a failed probe: `FAIL`, `1 failed`."""
    site = tmp_path / "site"
    install_distribution(
        site, "postflight-buggy-cli", "[postflight.checks]\nbuggy = buggy_cli:BuggyCheck\n"
    )
    (site / "buggy_cli.py").write_text(BUGGY_PLUGIN)
    config = tmp_path / "postflight.yaml"
    url = str(target.make_url("")).rstrip("/")
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        "environments:\n"
        f"  e: {{base_url: '{url}', checks: [{{name: plug, type: buggy}},"
        " {name: health, type: http, path: /health}]}\n"
    )
    env = cli_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    code, out = await awaited_cli("check", "--config", str(config), "--env", "e", env=env)
    assert code == 1, out
    row = next(line for line in out.splitlines() if line.startswith("plug "))
    assert "ERROR" in row and "has a bug: KeyError: 'latency' at buggy_cli.py:" in row, out
    assert "1 passed, 0 failed, 1 not judged (a bug of the check itself" in out, out
