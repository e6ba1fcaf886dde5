"""The agent's own logs, Sentry and New Relic: on only when asked, never leaking secrets."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.logs import JsonFormatter, log_context, setup_logging
from agent.observability import _scrub, init_newrelic, init_sentry, sentry_dsn_problem
from common.redaction import Redactor
from tests.cli.test_run_start import ROOT, free_port


def test_sentry_stays_off_without_a_dsn() -> None:
    assert init_sentry(Redactor(), environ={}) is False


def test_newrelic_stays_off_without_a_license_key() -> None:
    assert init_newrelic(environ={}) is False


def test_sentry_events_are_scrubbed_of_secrets() -> None:
    redact = Redactor(["hunter2-secret-value"])
    event = {
        "message": "failed calling https://user:pw@hooks.example/x with hunter2-secret-value",
        "extra": {"headers": ["Authorization: Bearer abc.def"]},
    }
    scrubbed = json.dumps(_scrub(event, redact))
    assert "hunter2-secret-value" not in scrubbed
    assert "user:pw" not in scrubbed
    assert "abc.def" not in scrubbed


def test_json_logs_carry_deploy_and_environment_and_redact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("json", "info", Redactor(["s3cr3t-token-value"]))
    logging.getLogger("postflight.test").warning(
        "rollback to %s failed",
        "https://x/?t=s3cr3t-token-value",
        extra={"deploy_id": "dep_1", "environment": "production"},
    )
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["deploy_id"] == "dep_1"
    assert line["environment"] == "production"
    assert line["level"] == "warning"
    assert "s3cr3t-token-value" not in line["msg"]
    logging.getLogger().handlers.clear()


def test_debug_logs_leave_out_urllib3s_request_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """apprise sends through requests; urllib3's DEBUG line quotes each request's path and
    query, where a json:// channel may keep its token."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("json", "debug")
    logging.getLogger("urllib3.connectionpool").debug(
        '%s "POST /hooks/%s HTTP/1.1" 200 2', "http://127.0.0.1:1", "pathtok-1a2b3c4d"
    )
    assert "pathtok-1a2b3c4d" not in stream.getvalue()
    logging.getLogger().handlers.clear()


def test_asyncpgs_pool_does_not_log_a_traceback_for_each_reconnect_it_tries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A live audit's 3 s PostgreSQL restart: 3 WARNINGs 'Failed to restore the pool
    connection floor; retrying', each with a 25-line traceback, beside the one line each
    of the agent's loops says about the outage."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("json", "debug")
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except OSError:
        logging.getLogger("asyncpg.pool").warning(
            "Failed to restore the pool connection floor; retrying", exc_info=True
        )
    assert stream.getvalue() == ""
    logging.getLogger().handlers.clear()


async def test_a_module_that_knows_no_window_logs_the_window_it_works_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A window's watch sets `log_context` in its task; a provider's client, logging with
    no `extra`, in a task the watch started, carries its deploy id and environment. A
    record's own fields win, and outside a watch nothing is added."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("json", "info")
    provider = logging.getLogger("agent.providers.client")

    async def watch() -> None:
        log_context.set({"deploy_id": "dep_1", "environment": "production"})
        await asyncio.create_task(asyncio.to_thread(lambda: None))  # a hop, as fetches make

        async def fetch() -> None:
            provider.warning("sentry: rule errors: Sentry did not answer within 2s")
            provider.warning("other", extra={"deploy_id": "dep_2"})

        await asyncio.create_task(fetch())

    await asyncio.create_task(watch())
    provider.warning("no window here")
    lines = [json.loads(line) for line in stream.getvalue().strip().splitlines()]
    assert (lines[0]["deploy_id"], lines[0]["environment"]) == ("dep_1", "production")
    assert lines[1]["deploy_id"] == "dep_2"
    assert "deploy_id" not in lines[2] and "environment" not in lines[2]
    logging.getLogger().handlers.clear()


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad", None, exc_info)
        record.exc_text = logging.Formatter().formatException(exc_info)
    data = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in data["exc"]


async def test_sentry_reports_reach_a_real_endpoint_scrubbed(tmp_path: Any) -> None:
    """With SENTRY_DSN set, events go out (to a local Sentry stand-in) without secrets."""
    text = await sentry_received(
        lambda dsn: (
            "import asyncio, sentry_sdk\n"
            "from agent.observability import init_sentry\n"
            "from common.redaction import Redactor\n"
            "async def main():\n"
            f"    assert init_sentry(Redactor(['supersecret-value']), {{'SENTRY_DSN': '{dsn}'}})\n"
            "    sentry_sdk.capture_message('webhook refused supersecret-value')\n"
            "    sentry_sdk.flush(5)\n"
            "asyncio.run(main())\n"
        )
    )
    assert text, "no event reached the Sentry endpoint"
    assert "webhook refused" in text
    assert "supersecret-value" not in text


def test_an_app_given_no_environment_reports_to_no_sentry(tmp_path: Any) -> None:
    """The demo builds its agent with `environ={}`: a SENTRY_DSN in the shell that runs it
    must not send its events anywhere ("nothing leaves this machine"); the daemon's own
    app (`environ` not given) reads it. One process builds both, `{}` first (sentry-sdk's
    client is the process's: once on, it stays on)."""
    script = (
        "import asyncio, os, sentry_sdk\n"
        "from aiohttp import web\n"
        "from agent.app import build_app\n"
        "from agent.settings_file import load_settings_text\n"
        "os.environ['SENTRY_DSN'] = 'http://publickey@127.0.0.1:9/1'\n"
        f"text = '''server: {{api_tokens: [tok-1234567890abcdef]}}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/x.db'}}\n"
        "environments: {prod: {base_url: 'http://127.0.0.1:9'}}'''\n"
        "async def active(environ):\n"
        "    settings = load_settings_text(text)\n"
        "    app = build_app(settings, background_probing=False, environ=environ)\n"
        "    runner = web.AppRunner(app)\n"
        "    await runner.setup()\n"
        "    print(sentry_sdk.get_client().is_active())\n"
        "    await runner.cleanup()\n"
        "async def main():\n"
        "    await active({})\n"
        "    await active(None)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-2:] == ["False", "True"], done.stdout


async def test_sentry_hears_the_agents_errors_not_a_targets_refused_connection() -> None:
    """A probe's refused connection is the target's failure, handled where it is awaited;
    sentry's asyncio integration reported each one as an unhandled error of the agent (a
    live run: 4 events in 4 s from an idle agent whose targets were down), burying the
    agent's own errors. An ERROR log, the agent's own, still goes out."""
    text = await sentry_received(
        lambda dsn: (
            "import asyncio, logging, sentry_sdk\n"
            "from agent.observability import init_sentry\n"
            "from common.redaction import Redactor\n"
            "async def dial():\n"
            "    raise ConnectionRefusedError(111, 'Connection refused')\n"
            "async def main():\n"
            f"    assert init_sentry(Redactor(), {{'SENTRY_DSN': '{dsn}'}})\n"
            "    try:\n"
            "        await asyncio.create_task(dial())\n"
            "    except ConnectionRefusedError:\n"
            "        pass  # the probe's outcome: a connection error of the target\n"
            "    logging.getLogger('postflight').error('watcher stopped on a bug')\n"
            "    sentry_sdk.flush(5)\n"
            "asyncio.run(main())\n"
        )
    )
    assert "watcher stopped on a bug" in text
    assert "ConnectionRefusedError" not in text


async def sentry_received(script: Callable[[str], str]) -> str:
    """What a local Sentry stand-in received from `script(dsn)` run as its own process
    (its exit must be 0): the envelopes' text."""
    import sys

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    received: list[bytes] = []

    async def envelope(request: web.Request) -> web.Response:
        received.append(await request.read())  # aiohttp undoes the gzip itself
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/1/envelope/", envelope)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        dsn = f"http://publickey@127.0.0.1:{server.port}/1"
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script(dsn))
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await server.close()
    return b"".join(received).decode("utf-8", "replace")


def test_a_python_warning_is_a_log_record_in_the_logs_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library's warning (apprise's `imghdr` DeprecationWarning, shown with
    PYTHONWARNINGS=default) was printed as two lines of text among the JSON logs."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logging.captureWarnings(False)  # from scratch: an earlier test's setup took the hook
    setup_logging("json", "info")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a library's warning", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        logging.getLogger().handlers.clear()
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"] == "py.warnings", record
    assert "UserWarning: a library's warning" in record["msg"], record


def _daemon_config(tmp_path: Path, port: int) -> Path:
    """`postflight run`'s configuration: one environment, listening on `port`, its SQLite
    store in `tmp_path`."""
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: 127.0.0.1:{port}, api_tokens: [tok-1234567890abcdef]}}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/pf.db'}}\n"
        "environments: {production: {base_url: 'http://127.0.0.1:9'}}\n"
    )
    return config


def _env_without_observability(**extra: str) -> dict[str, str]:
    """This environment without New Relic's and Sentry's variables (a developer's own
    must not decide the test), the checkout importable, and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEW_RELIC", "SENTRY_DSN"))}
    return env | {"PYTHONPATH": str(ROOT)} | extra


def _run_to_its_end(
    config: Path, env: dict[str, str], *flags: str
) -> subprocess.CompletedProcess[str]:
    """`postflight run` on `config` until it exits by itself (60 s at most)."""
    return subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("key", ["", "0123456789abcdef0123456789abcdef01234567"], ids=["off", "on"])
def test_the_daemon_runs_the_new_relic_agent_only_with_a_license_key(
    tmp_path: Path, key: str
) -> None:
    """The README: `postflight run` runs the New Relic agent only when
    NEW_RELIC_LICENSE_KEY is set. Counted at the collector's address (NEW_RELIC_HOST, a
    local socket that takes connections and never answers): with the key the agent
    connects once the daemon has served a request; without it nothing does. Either way
    SIGTERM is a clean stop, exit 0: with the agent's session thread in OpenSSL (its
    connection to a stalled collector) the interpreter's exit was a segfault, -11."""
    collector = socket.socket()
    collector.bind(("127.0.0.1", 0))
    collector.listen()
    collector.settimeout(0.2)
    port = free_port()
    config = _daemon_config(tmp_path, port)
    env = _env_without_observability(NEW_RELIC_LICENSE_KEY=key, NEW_RELIC_HOST="127.0.0.1")
    env["NEW_RELIC_PORT"] = str(collector.getsockname()[1])
    # certificates that take the agent a while to load (each connection loads them after
    # its TCP connect): the stop comes while its session thread is inside OpenSSL
    system = Path(ssl.get_default_verify_paths().openssl_cafile)
    if key and system.is_file():
        (tmp_path / "ca.pem").write_bytes(system.read_bytes() * 10)
        env["SSL_CERT_FILE"] = str(tmp_path / "ca.pem")
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=out,
        )
    held: list[socket.socket] = []  # accepted and never answered, as a stalled collector
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text():
            assert agent.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not listening within 60 s:\n{log.read_text()}"
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.status == 200
        deadline = time.monotonic() + (30 if key else 3)
        while time.monotonic() < deadline and not held:
            with contextlib.suppress(TimeoutError):
                held.append(collector.accept()[0])
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0, log.read_text()
    finally:
        for connection in held:
            connection.close()
        collector.close()
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert bool(held) == bool(key), log.read_text()
    assert ("New Relic agent enabled" in log.read_text()) == bool(key)


@pytest.mark.parametrize(
    "dsn", ["garbage", "https://public-key-0123456789@sentry.example/", "ftp://k@h/1"]
)
def test_a_sentry_dsn_sentry_cannot_use_is_named_without_its_key(dsn: str) -> None:
    """What `postflight run` says of a mistyped SENTRY_DSN before it starts: which
    variable, never the DSN's key (its user part)."""
    problem = sentry_dsn_problem({"SENTRY_DSN": dsn})
    assert problem is not None and problem.startswith("SENTRY_DSN is not a Sentry DSN ("), problem
    assert "public-key-0123456789" not in problem, problem


def test_a_sentry_dsn_sentry_cannot_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """`postflight run` with a mistyped SENTRY_DSN stopped with sentry-sdk's traceback
    (`BadDsn: Unsupported scheme ''`, exit 1) once it had started; now it says so in one
    line before it starts, exit 2, without the DSN's key (each way of mistyping it:
    `sentry_dsn_problem`, above)."""
    dsn = "https://public-key-0123456789@sentry.example/"
    done = _run_to_its_end(
        _daemon_config(tmp_path, free_port()), _env_without_observability(SENTRY_DSN=dsn)
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert "postflight run: error: SENTRY_DSN is not a Sentry DSN (" in said, said
    assert "Traceback" not in said and "listening on" not in said, said
    assert "public-key-0123456789" not in said, said
    # the README's "Own observability" quotes that line as it is printed
    line = next(x for x in said.splitlines() if "SENTRY_DSN is not" in x)
    quoted = "`" + line.split(" (", 1)[0] + " (…)`"
    assert quoted in " ".join((ROOT / "README.md").read_text().split()), quoted


def test_a_new_relic_configuration_it_cannot_read_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """With NEW_RELIC_LICENSE_KEY set, a NEW_RELIC_CONFIG_FILE the New Relic agent cannot
    open stopped `postflight run` with a bare traceback (outside its log's format), exit 1:
    now one line before it starts, exit 2, the key never shown."""
    env = _env_without_observability(
        NEW_RELIC_LICENSE_KEY="nr-license-0123456789abcdef",
        NEW_RELIC_CONFIG_FILE=str(tmp_path / "missing.ini"),
    )
    done = _run_to_its_end(_daemon_config(tmp_path, free_port()), env, "--log-format", "json")
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    last = json.loads(said.strip().splitlines()[-1])
    assert last["level"] == "error", last
    assert str(last["msg"]).startswith("the New Relic agent cannot start: "), last
    assert "missing.ini" in str(last["msg"]), last
    assert "Traceback" not in said and "0123456789abcdef" not in said, said
