"""`POSTFLIGHT__SECTION__KEY` environment overrides: applied over the file, and a
wrong one is a configuration error naming its variable (exit 2), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.settings_file import load_settings_text
from tests.config.test_validate_config import MINIMAL


def postflight(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m agent ARGS` with `env` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "postflight.yaml"
    path.write_text(MINIMAL)
    return path


def test_an_override_replaces_the_files_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTFLIGHT__SERVER__LISTEN", "127.0.0.1:9999")
    monkeypatch.setenv("POSTFLIGHT__SERVER__API_TOKENS", '["tok-from-the-environment"]')
    settings = load_settings_text(MINIMAL)
    assert settings.server.listen == "127.0.0.1:9999"
    assert [t.get_secret_value() for t in settings.server.api_tokens] == [
        "tok-from-the-environment"
    ]
    assert settings.environments["production"].window == 600.0  # the rest is the file's


@pytest.mark.parametrize(
    ("command", "variable", "value", "path"),
    [
        ("validate-config", "POSTFLIGHT__SERVER__API_TOKENS", "sometoken", "server.api_tokens"),
        ("validate-config", "POSTFLIGHT__ENVIRONMENTS", "{bad", "environments"),
        ("validate-config", "POSTFLIGHT__SERVER", "listen: 1", "server"),
        ("check", "POSTFLIGHT__SERVER__API_TOKENS", "sometoken", "server.api_tokens"),
        ("run", "POSTFLIGHT__ENVIRONMENTS", "{bad", "environments"),
    ],
)
def test_an_override_that_is_not_json_is_a_config_error_naming_it(
    config: Path, command: str, variable: str, value: str, path: str
) -> None:
    args = {
        "validate-config": [str(config)],
        "check": ["--config", str(config), "--env", "production"],
        "run": ["--config", str(config)],
    }[command]
    proc = postflight(command, *args, env={variable: value})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path} (from ${variable}): not valid JSON (" in proc.stderr, proc.stderr
    assert "1 configuration error" in proc.stderr
