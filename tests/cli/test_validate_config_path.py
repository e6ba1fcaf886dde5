"""`postflight validate-config` names its file as the contract does (`PATH`) and as `run`
and `check` do (`--config PATH`), else reads `$POSTFLIGHT_CONFIG`, else
`./postflight.yaml`: `validate-config --config PATH` was refused, `unrecognized arguments:
--config`, exit 2, where a pipeline validating the file its `run` reads wrote the same
flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_process import cli_env, validated_here

TOKEN = "t" * 32
NAMES = ("postflight.yaml", "from-variable.yaml", "from-flag.yaml", "from-path.yaml")


def _validated(
    cwd: Path, *args: str, variable: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`postflight validate-config ARGS` in `cwd`, `$POSTFLIGHT_CONFIG` set to `variable`:
    the CLI's main in this process (`validated_here`), where each of these six reads started
    a Python (54 s of the first test's four at load 28 in a full run); the standard input's
    test keeps its process, whose stdin it writes."""
    env = {"POSTFLIGHT_CONFIG": variable} if variable else {}
    return validated_here("validate-config", *args, env=env, cwd=cwd)


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    """A directory of valid configurations, one under each name, each saying which it is
    by the one environment it has."""
    for name in NAMES:
        env = name.removesuffix(".yaml").replace("-", "_")
        (tmp_path / name).write_text(
            f"server: {{api_tokens: [{TOKEN}]}}\n"
            f"environments: {{{env}: {{base_url: 'http://127.0.0.1:9'}}}}\n"
        )
    return tmp_path


def _read(done: subprocess.CompletedProcess[str]) -> str:
    """The file validate-config read, from its `FILE: valid — …` line (exit 0)."""
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.partition(": valid")[0]


def test_config_flag_then_the_variable_then_the_default(configs: Path) -> None:
    assert _read(_validated(configs)) == "postflight.yaml"
    assert _read(_validated(configs, variable="from-variable.yaml")) == "from-variable.yaml"
    flagged = _validated(configs, "--config", "from-flag.yaml", variable="from-variable.yaml")
    assert _read(flagged) == "from-flag.yaml"
    assert "from_flag (0 checks" in flagged.stdout, flagged.stdout
    positional = _validated(configs, "from-path.yaml", variable="from-variable.yaml")
    assert _read(positional) == "from-path.yaml"


def test_config_flag_reads_standard_input_as_the_path_does(configs: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "validate-config", "--config", "-"],
        cwd=configs,
        env=cli_env(),
        input=(configs / "from-flag.yaml").read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert _read(done) == "(standard input)"


def test_a_path_and_the_same_config_flag_are_one_file(configs: Path) -> None:
    done = _validated(configs, "from-flag.yaml", "--config", "./from-flag.yaml")
    assert _read(done) == "from-flag.yaml"


def test_a_path_and_another_config_flag_are_a_usage_error(configs: Path) -> None:
    done = _validated(configs, "from-path.yaml", "--config", "from-flag.yaml")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("usage: postflight validate-config"), done.stderr
    assert done.stderr.splitlines()[-1] == (
        "postflight validate-config: error: PATH from-path.yaml and --config from-flag.yaml"
        " name two files: give one (exit 2)"
    ), done.stderr
