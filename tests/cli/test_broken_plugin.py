"""A check plugin that cannot be imported: one clear line and exit 2, from every command
that builds the settings, never a traceback (a broken installation is a start-up error)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin_site import install_distribution

CONFIG = """\
server:
  api_tokens: [tok-1234567890abcdef]
environments:
  staging:
    base_url: http://127.0.0.1:9
    checks: [{name: health, type: http, path: /health}]
"""


@pytest.fixture
def broken_plugin(tmp_path: Path) -> dict[str, str]:
    """An installed distribution whose `postflight.checks` entry point names a module that
    is not there (a half-uninstalled package): found by importlib.metadata on PYTHONPATH."""
    site = tmp_path / "site"
    install_distribution(
        site,
        "postflight-broken-check",
        "[postflight.checks]\nbrokenimp = broken_check_missing:BrokenCheck\n",
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize(
    "command",
    [
        ["validate-config", "{config}"],
        ["check", "--config", "{config}", "--env", "staging"],
        ["run", "--config", "{config}"],
    ],
)
def test_a_broken_check_plugin_is_one_line_and_exit_2(
    command: list[str], broken_plugin: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "postflight.yaml"
    config.write_text(CONFIG)
    argv = [arg.format(config=config) for arg in command]
    done = subprocess.run(
        [sys.executable, "-m", "agent", *argv],
        env=broken_plugin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"postflight {argv[0]}: error: check plugin 'brokenimp'"), line
    assert line.endswith(" (exit 2)"), line
    assert "broken_check_missing" in line and "Reinstall or uninstall that package" in line


def test_with_json_logs_a_broken_check_plugin_at_run_is_one_json_record(
    broken_plugin: dict[str, str], tmp_path: Path
) -> None:
    """`run --log-format json`: the line a log shipper reads is JSON too."""
    config = tmp_path / "postflight.yaml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config), "--log-format", "json"],
        env=broken_plugin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "error", record
    assert record["msg"].startswith("check plugin 'brokenimp'"), record
