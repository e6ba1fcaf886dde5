"""What `postflight run` says at start: which configuration and which store it uses."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli.stop_signals import STOP_SIGNALS
from agent.store.location import store_location
from tests.cli_process import stopped_as_the_block_ends, validated_here
from tests.ports import free_port as free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-1234567890abcdef"
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""What stops `run` cleanly: the contract's two, and SIGHUP."""


IDLE = "environments: {production: {base_url: 'http://127.0.0.1:9'}}\n"
"""One environment, `production`, whose target nothing listens on."""


def agent_config(tmp_path: Path, port: int, environments: str = IDLE) -> Path:
    """`tmp_path`/postflight.yaml: `run` listening on `port` with TOKEN, its SQLite store
    in `tmp_path`, and `environments` (YAML from the key on)."""
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: 127.0.0.1:{port}, api_tokens: [{TOKEN}]}}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/pf.db'}}\n{environments}"
    )
    return config


def agent_env() -> dict[str, str]:
    """This checkout's agent, with no Sentry and no configuration from the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("SENTRY_DSN", "POSTFLIGHT_CONFIG")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def listening(
    config: str, log: Path, cwd: Path | None = None, stdin: bytes | None = None
) -> subprocess.Popen[bytes]:
    """`postflight run --config CONFIG` (in `cwd`, its output in `log`, `stdin` written to
    its standard input), once it says it listens (90 s at most); killed if the wait is
    cut short."""
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", config],
            cwd=cwd,
            env=agent_env(),
            stdin=None if stdin is None else subprocess.PIPE,
            stdout=out,
            stderr=out,
        )
    try:
        if stdin is not None:
            assert agent.stdin is not None
            agent.stdin.write(stdin)
            agent.stdin.close()
        deadline = time.monotonic() + 90
        while "listening on" not in log.read_text():
            assert agent.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not listening within 90 s:\n{log.read_text()}"
            time.sleep(0.05)
    except BaseException:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        raise
    return agent


def stopped_once_listening(
    config: str,
    log: Path,
    sig: signal.Signals,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> str:
    """`postflight run --config CONFIG` (in `cwd`, given `stdin`) until it listens, then
    stopped by `sig`, which must end it with exit 0: its output."""
    with listening_until_stopped(config, log, sig, cwd, stdin):
        pass
    return log.read_text()


@contextlib.contextmanager
def listening_until_stopped(
    config: str,
    log: Path,
    sig: signal.Signals = signal.SIGTERM,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`listening`, then stopped by `sig` as the block ends, which must end it with exit
    0; killed if the block raised."""
    with stopped_as_the_block_ends(listening(config, log, cwd, stdin), log, sig) as agent:
        yield agent


@pytest.mark.timeout(120)
def test_the_start_log_names_the_config_file_and_the_stores_absolute_path(
    tmp_path: Path,
) -> None:
    """A relative `sqlite:///./postflight.db` is opened relative to the working directory
    (unchanged); started from another directory it is another store, so the start log
    names both files by absolute path."""
    config_dir, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    config_dir.mkdir()
    elsewhere.mkdir()
    port = free_port()
    (config_dir / "postflight.yaml").write_text(
        f"server: {{listen: 127.0.0.1:{port}, api_tokens: [{TOKEN}]}}\n"
        "store: {url: 'sqlite:///./postflight.db'}\n"
        "environments:\n"
        "  production:\n"
        f"    base_url: http://127.0.0.1:{free_port()}\n"
        "    checks: [{name: health, type: http, path: /health}]\n"
    )
    text = stopped_once_listening(
        "../conf/postflight.yaml", tmp_path / "agent.log", signal.SIGTERM, cwd=elsewhere
    )
    assert f"config {config_dir / 'postflight.yaml'}" in text, text
    assert f"store SQLite file {elsewhere / 'postflight.db'}" in text, text
    assert (elsewhere / "postflight.db").exists()  # relative to the working directory
    assert not (config_dir / "postflight.db").exists()


def test_a_store_is_named_by_where_it_is_never_by_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_location("sqlite:///./postflight.db") == f"SQLite file {tmp_path}/postflight.db"
    assert store_location("sqlite:///") == f"SQLite file {tmp_path}/postflight.db"
    assert store_location("sqlite:////var/lib/pf.db") == "SQLite file /var/lib/pf.db"
    assert store_location("sqlite:///:memory:").startswith("SQLite in memory")
    assert store_location("postgresql://pf:s3cret@db.internal:6543/postflight") == (
        "PostgreSQL db.internal:6543/postflight"
    )
    assert "s3cret" not in store_location("postgres:///pf?host=/run/pg&password=s3cret")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", SIGNALS, ids=[s.name for s in SIGNALS])
def test_a_stop_while_the_config_is_still_being_read_exits_0_at_once(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Contract §1: SIGTERM/SIGINT stop `run` with exit 0. Before the event loop takes
    them over nothing is held, so the stop is immediate. The configuration is a FIFO
    (`--config <(…)`) whose writer has not written yet: the signal lands while the agent
    is blocked reading it (before, SIGTERM killed it, -15, and SIGINT ended it with 130)."""
    fifo = tmp_path / "postflight.yaml"
    os.mkfifo(fifo)
    env = agent_env()
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(fifo)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = -1
    try:
        deadline = time.monotonic() + 40
        while writer < 0:  # the open succeeds once the agent has the FIFO open to read
            assert agent.poll() is None and time.monotonic() < deadline, agent.communicate()
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                time.sleep(0.02)
        agent.send_signal(sig)  # the agent waits in read() for a configuration
        _out, err = agent.communicate(timeout=10)
    finally:
        if writer >= 0:
            os.close(writer)
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, err
    assert "Traceback" not in err, err
    # said, where it exited without a line: to whoever ran it, a start that never happened
    assert f"{sig.name}: stopping before it started (nothing held yet)" in err, err


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", SIGNALS, ids=[s.name for s in SIGNALS])
def test_each_stop_signal_is_a_clean_stop_named_in_the_log(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGTERM and SIGINT (contract §1), and SIGHUP, which killed the serving daemon
    (exit 129, no `stopped`, deliveries in flight cut off): an operator's `kill -HUP` for a
    reload, or a terminal that closed. Now a clean stop, exit 0, its log line saying there
    is no reload."""
    port = free_port()
    config = agent_config(tmp_path, port)
    text = stopped_once_listening(str(config), tmp_path / "agent.log", sig)
    assert f"{sig.name}: stopping" in text, text
    assert text.rstrip().endswith("postflight: stopped"), text
    no_reload = "postflight does not reload its configuration on SIGHUP" in text
    assert no_reload == (sig == signal.SIGHUP), text


@pytest.mark.timeout(120)
def test_stop_signals_repeated_until_the_process_is_gone_still_exit_0(tmp_path: Path) -> None:
    """A supervisor sending SIGTERM again while the daemon ends (bench/stop_anytime.py's
    second SIGTERM, 1 trial in 40): one that came once the event loop had closed, or in
    the interpreter's last steps (which reset Python's handlers to the default), killed
    the stopped daemon (-15, a crash to the supervisor), where the contract (§1) promises
    exit 0, and one in an atexit callback printed a SystemExit traceback. SIGTERM is sent
    every 2 ms from the first until the process is gone, so every instant of the exit
    meets one."""
    port = free_port()
    config = agent_config(tmp_path, port)
    log = tmp_path / "agent.log"
    for _ in range(3):
        agent = listening(str(config), log)
        try:
            while agent.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    agent.send_signal(signal.SIGTERM)
                time.sleep(0.002)
            text = log.read_text()
            assert agent.wait() == 0, text
            assert "Traceback" not in text, text
            assert text.rstrip().endswith("postflight: stopped"), text
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of `text` as a JSON object (fails on a line that is not one)."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r} in\n{text}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def run_once(
    config: Path | None,
    *flags: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`postflight run` (`--config CONFIG` unless None) to its exit, in `cwd`, with `env`
    added to `agent_env()`."""
    named = [] if config is None else ["--config", str(config)]
    return subprocess.run(
        [sys.executable, "-m", "agent", "run", *named, *flags],
        cwd=cwd,
        env=agent_env() | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(120)
def test_with_json_logs_each_configuration_error_is_one_json_record(tmp_path: Path) -> None:
    """`run --log-format json` printed its configuration errors as text (the heading and
    one indented line each): the only lines of its output a log shipper could not read,
    and those saying why the agent is not running. Now one record per error, with its
    field path and line as fields; exit 2 as before. Text logs keep validate-config's
    form."""
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: 127.0.0.1:{free_port()}, api_tokens: [{TOKEN}]}}\n"
        "environments:\n"
        "  production:\n"
        "    base_url: http://127.0.0.1:9\n"
        "    window: abc\n"
        "    interval: 0s\n"
    )
    proc = run_once(config, "--log-format", "json")
    assert proc.returncode == 2, proc.stderr
    records = json_lines(proc.stderr)
    assert [(r["level"], r["field"], r["line"]) for r in records] == [
        ("error", "environments.production.window", 5),
        ("error", "environments.production.interval", 6),
    ], records
    assert all(r["config"] == str(config) for r in records), records
    assert "must be at least 10ms (got 0s)" in str(records[1]["msg"]), records

    text = run_once(config)  # text logs: as validate-config says them
    assert text.returncode == 2, text.stderr
    assert text.stderr.splitlines() == [
        f"{config}: 2 configuration errors (exit 2)",
        "  environments.production.window (line 5): 'abc' is not a duration;"
        " write it like 250ms, 30s, 10m or 1h",
        "  environments.production.interval (line 6): must be at least 10ms (got 0s): a shorter"
        " period only keeps the agent busy running checks and storing what they found",
    ], text.stderr


@pytest.mark.timeout(120)
def test_with_json_logs_a_file_not_found_and_a_port_in_use_are_json_too(tmp_path: Path) -> None:
    missing = run_once(tmp_path / "nope.yaml", "--log-format", "json")
    assert missing.returncode == 2, missing.stderr
    [record] = json_lines(missing.stderr)
    assert record["level"] == "error" and "file not found" in str(record["msg"]), record

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "postflight.yaml"
        config.write_text(
            f"server: {{listen: 127.0.0.1:{port}, api_tokens: [{TOKEN}]}}\n"
            f"store: {{url: 'sqlite:///{tmp_path}/pf.db'}}\n"
            "environments:\n"
            "  production:\n"
            "    base_url: http://127.0.0.1:9\n"
        )
        busy = run_once(config, "--log-format", "json")
    assert busy.returncode == 2, busy.stderr
    records = json_lines(busy.stderr)
    assert records[-1]["level"] == "error", records
    assert str(records[-1]["msg"]).startswith(f"cannot listen on 127.0.0.1:{port}: "), records


def last_record_when_the_daemon_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> dict[str, object]:
    """`postflight run --log-format json`, in this process, its daemon raising `error`:
    exit 1 checked, and its last JSON record on stderr."""
    import agent.app
    from agent.cli.main import main

    async def serve(*args: object) -> None:
        raise error

    monkeypatch.setattr(agent.app, "serve", serve)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: 127.0.0.1:{free_port()}, api_tokens: [{TOKEN}]}}\n"
        "environments: {production: {base_url: 'http://127.0.0.1:9'}}\n"
    )
    # `run` makes SIGTERM/SIGINT/SIGHUP exit 0 for its process: this one is pytest's
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        assert main(["run", "--config", str(config), "--log-format", "json"]) == 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        logging.getLogger().handlers.clear()
    return json_lines(stream.getvalue())[-1]


def test_with_json_logs_an_unexpected_error_is_one_record_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that ends the daemon printed Python's traceback, many lines of text, after
    its JSON logs: now one critical record carrying it, exit 1 as before."""
    last = last_record_when_the_daemon_raises(tmp_path, monkeypatch, RuntimeError("a bug"))
    assert last["level"] == "critical", last
    assert "RuntimeError: a bug" in str(last["exc"]), last


def readme_blocks(section: str) -> list[str]:
    """The `sh` blocks of the README's section `section`, as written."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", body, re.S)


@pytest.mark.timeout(120)
@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the README makes the token with openssl"
)
def test_the_readme_running_the_daemon_commands_run_as_written(tmp_path: Path) -> None:
    """The two blocks of "Running the daemon", run by bash in a directory holding the
    example as `config/postflight.example.yaml`, with the venv's commands on the PATH
    (the README's `. .venv/bin/activate`). Changed only where a test must: a free port
    (`POSTFLIGHT_LISTEN`, which the example reads, and the block's 8787), and the run,
    which the README leaves in the foreground, backgrounded until it listens, then stopped
    with SIGTERM. The four variables are the only ones set, `…` as their value."""
    start, talk = readme_blocks("Running the daemon")
    *prepare, run = start.strip().splitlines()
    assert run.startswith("postflight run "), run
    port = free_port()
    assert "127.0.0.1:8787" in talk
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "postflight.example.yaml", tmp_path / "config")
    script = "\n".join(
        [
            "set -eu",
            *prepare,
            f"{run} > agent.log 2>&1 &",
            "pid=$!",
            "for _ in $(seq 600); do grep -qs 'listening on' agent.log && break; sleep 0.1; done",
            talk.replace("127.0.0.1:8787", f"127.0.0.1:{port}"),
            "kill -TERM $pid",
            'set +e; wait $pid; echo "run exit $?"',
        ]
    )
    env = {
        k: v
        for k, v in agent_env().items()
        if not k.startswith("POSTFLIGHT") and not k.endswith("_URL") and k != "ROLLBACK_SECRET"
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["POSTFLIGHT_LISTEN"] = f"127.0.0.1:{port}"
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100
    )
    said = done.stdout + done.stderr
    log = (tmp_path / "agent.log").read_text()
    assert done.returncode == 0, said + log
    assert (
        "config/postflight.example.yaml: valid — environments: production (3 checks, 6 rules,"
        " sequential), staging (1 check, 1 rule, threshold)"
    ) in said, said
    assert "no deploy windows yet" in said, said  # `postflight status`, with the daemon's token
    assert said.rstrip().endswith("run exit 0"), said + log
    records = [json.loads(line) for line in log.splitlines()]  # `--log-format json`
    config, store = tmp_path / "config" / "postflight.example.yaml", tmp_path / "postflight.db"
    assert records[0]["msg"] == f"config {config}; store SQLite file {store}", records[0]
    assert any(r["msg"] == "SIGTERM: stopping" for r in records), log
    assert not [r for r in records if r["level"] in ("error", "critical")], log


def test_an_os_error_other_than_binding_is_not_said_as_cannot_listen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every OSError out of the running daemon was said as `cannot listen on HOST:PORT:
    …`, exit 2: an unwritable POSTFLIGHT_TRACEMALLOC directory, raised at the stop, read
    `cannot listen on 127.0.0.1:8787: [Errno 2] No such file or directory: '/proc/nope'`.
    Only the bind is; another is an unexpected error, with its traceback, exit 1."""
    error = FileNotFoundError(2, "No such file or directory", "/proc/nope")
    last = last_record_when_the_daemon_raises(tmp_path, monkeypatch, error)
    assert last["level"] == "critical" and "cannot listen" not in str(last["msg"]), last
    assert "FileNotFoundError" in str(last["exc"]), last


@pytest.mark.timeout(120)
def test_run_reads_its_configuration_from_standard_input_given_a_dash(tmp_path: Path) -> None:
    """The README: `-` is standard input for `run` too (`envsubst < t.yaml | postflight
    run --config -`); its first log line names it as such, beside the store's absolute
    path, and a SIGTERM still stops it cleanly, exit 0."""
    config = (
        f"server: {{listen: 127.0.0.1:{free_port()}, api_tokens: [{TOKEN}]}}\n"
        "store: {url: 'sqlite:///./from-stdin.db'}\n"
        "environments:\n"
        f"  production: {{base_url: 'http://127.0.0.1:{free_port()}'}}\n"
    )
    log = tmp_path / "agent.log"
    said = stopped_once_listening("-", log, signal.SIGTERM, tmp_path, config.encode())
    first = said.splitlines()[0]
    assert first.endswith(f"config (standard input); store SQLite file {tmp_path}/from-stdin.db")


@pytest.mark.timeout(120)
def test_with_json_logs_an_overrides_error_names_its_variable(tmp_path: Path) -> None:
    """The README's "Own observability": a configuration error from an override is a record
    with `variable` beside `config` and `field`, exit 2."""
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: 127.0.0.1:{free_port()}, api_tokens: [{TOKEN}]}}\n"
        "environments: {production: {base_url: 'http://127.0.0.1:9'}}\n"
    )
    done = run_once(
        config, "--log-format", "json", env={"POSTFLIGHT__SERVER__SHUTDOWN_TIMEOUT": "abc"}
    )
    assert done.returncode == 2, done.stderr
    [record] = json_lines(done.stderr)
    assert record["level"] == "error", record
    assert record["config"] == str(config) and record["field"] == "server.shutdown_timeout"
    assert record["variable"] == "POSTFLIGHT__SERVER__SHUTDOWN_TIMEOUT", record


@pytest.mark.timeout(120)
def test_run_reads_config_then_the_variable_then_the_default(tmp_path: Path) -> None:
    """The README: `postflight run` reads `--config`, else `$POSTFLIGHT_CONFIG`, else
    `./postflight.yaml`. Each file here has an error of its own, so the exit-2 heading
    says which one `run` read. `run` in this process (`main`, which `python -m agent`
    exits with), where each read was a process of its own: which file is read is the
    subject, not the process (three starts, 17.8 s on -n 2 at load 15)."""
    for name in ("postflight.yaml", "from-variable.yaml", "from-flag.yaml"):
        (tmp_path / name).write_text(f"server: {{api_tokens: [{TOKEN}]}}\nenvironments: {{}}\n")

    def read(*flags: str, variable: str | None = None) -> str:
        env = {"POSTFLIGHT_CONFIG": variable} if variable else {}
        done = validated_here("run", *flags, env=env, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        return done.stderr.splitlines()[0]

    assert read() == "postflight.yaml: 1 configuration error (exit 2)"
    assert (
        read(variable="from-variable.yaml") == "from-variable.yaml: 1 configuration error (exit 2)"
    )
    said = read("--config", "from-flag.yaml", variable="from-variable.yaml")
    assert said == "from-flag.yaml: 1 configuration error (exit 2)"


@pytest.mark.timeout(120)
def test_the_start_names_up_to_10_environments_probed_between_windows_on_one_line(
    tmp_path: Path,
) -> None:
    """README, Configuration walkthrough: "At start the agent logs which environments it
    probes between windows, at which `base_url` and how often (one line, naming up to 10
    environments)"; a password in a base_url is not in it (test-only: it held)."""
    port = free_port()
    target = free_port()
    envs = "".join(
        f"  env{i:02d}:\n"
        f"    base_url: http://probe:hunter2-secret@127.0.0.1:{target}/e{i}\n"
        "    background_interval: 1h\n"
        "    checks: [{name: health, type: http, path: /health}]\n"
        for i in range(12)
    )
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: 127.0.0.1:{port}, api_tokens: [{TOKEN}]}}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/postflight.db'}}\n"
        f"environments:\n{envs}"
    )
    text = stopped_once_listening(str(config), tmp_path / "agent.log", signal.SIGTERM)
    [line] = [ln for ln in text.splitlines() if "between windows" in ln]
    assert "background probing 12 environments between windows: " in line, line
    for i in range(10):
        assert f"env{i:02d} at http://***@127.0.0.1:{target}/e{i} (health every 1h)" in line
    assert "env10" not in line and "env11" not in line
    assert line.endswith("; and 2 more"), line
    assert "hunter2" not in text


@pytest.mark.timeout(120)
def test_run_listens_on_the_default_address_when_server_listen_is_left_out(
    tmp_path: Path,
) -> None:
    """Contract §2: "Listen address from `server.listen` (default `127.0.0.1:8787`)",
    through `postflight run` on a file without the key: it serves `/healthz` there. Where
    another process holds that port (this machine's tests and agents share it), the run
    refuses it by name (exit 2): either way the address it took is the default's."""
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{api_tokens: [{TOKEN}]}}\nstore: {{url: 'sqlite:///{tmp_path}/pf.db'}}\n{IDLE}"
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            env=agent_env(),
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 90
    try:
        while "listening on" not in log.read_text() and agent.poll() is None:
            assert time.monotonic() < deadline, f"not listening within 90 s:\n{log.read_text()}"
            time.sleep(0.05)
    except BaseException:
        agent.kill()
        agent.wait()
        raise
    said = log.read_text()
    if agent.poll() is not None:  # the port is another process's
        assert agent.returncode == 2, said
        assert "cannot listen on 127.0.0.1:8787: " in said, said
        return
    with stopped_as_the_block_ends(agent, log):
        assert "listening on http://127.0.0.1:8787 " in said, said
        with urllib.request.urlopen("http://127.0.0.1:8787/healthz", timeout=30) as answer:
            assert (answer.status, json.load(answer)) == (200, {"status": "ok"})
