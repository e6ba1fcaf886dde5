"""Contract §6 through the real `postflight` process, on the contract's own
`postflight.example.yaml`: with its `${VAR}`s set it validates (exit 0), its secrets'
values never printed; with `${ROLLBACK_SECRET}` (no default) unset, `validate-config` and
`run` each exit 2 naming every field that reads it, with its file line, and `run` never
starts. Only in-process calls of the CLI's `main` (tests/config) held these."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_process import awaited_cli, cli_env
from tests.spec_example import EXAMPLE

pytestmark = pytest.mark.timeout(120)


SET = {
    "POSTFLIGHT_API_TOKEN": "example-process-api-token-0123456789",
    "SENTRY_AUTH_TOKEN": "sntrys_example-process-0123456789",
    "NEW_RELIC_API_KEY": "NRAK-EXAMPLEPROCESS0123456789",
    "ROLLBACK_SECRET": "example-process-rollback-secret",
}
"""The example's `${VAR}`s that have no default."""


def secret_lines() -> list[int]:
    """The example's lines that read `${ROLLBACK_SECRET}`, 1-based."""
    lines = EXAMPLE.read_text().splitlines()
    return [n for n, line in enumerate(lines, 1) if "${ROLLBACK_SECRET}" in line]


async def test_the_example_validates_with_its_variables_set_and_prints_none_of_them() -> None:
    code, said = await awaited_cli("validate-config", str(EXAMPLE), env=cli_env(**SET))
    assert code == 0, said
    assert not any(value in said for value in SET.values()), said


async def test_an_unset_variable_is_exit_2_naming_each_field_and_line_in_both_commands(
    tmp_path: Path,
) -> None:
    unset = {k: v for k, v in SET.items() if k != "ROLLBACK_SECRET"}
    env = cli_env(**unset, POSTFLIGHT_STORE=f"sqlite:///{tmp_path / 'pf.db'}")
    production, staging = secret_lines()
    expected = [
        f"environments.production.rollback.secret (line {production}): environment variable"
        " ROLLBACK_SECRET is not set",
        f"environments.staging.rollback.secret (line {staging}): environment variable"
        " ROLLBACK_SECRET is not set",
    ]
    for command in (["validate-config", str(EXAMPLE)], ["run", "--config", str(EXAMPLE)]):
        code, said = await awaited_cli(*command, env=env)
        assert code == 2, (command, said)
        errors = [
            m[1] for m in re.finditer(r"^\s+(environments\.\S+ \(line \d+\): .*)$", said, re.M)
        ]
        assert errors == expected, (command, said)
        assert not any(value in said for value in unset.values()), said
    assert not (tmp_path / "pf.db").exists()  # the daemon never started
