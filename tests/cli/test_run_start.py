"""What `postflight run` says at start: which configuration and which store it uses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.store.location import store_location

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-1234567890abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def agent_env() -> dict[str, str]:
    """This checkout's agent, with no Sentry and no configuration from the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("SENTRY_DSN", "POSTFLIGHT_CONFIG")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


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
    log = tmp_path / "agent.log"
    env = agent_env()
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", "../conf/postflight.yaml"],
            cwd=elsewhere,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 90
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            assert agent.poll() is None, log.read_text()
            time.sleep(0.1)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0, log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    text = log.read_text()
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
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
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
