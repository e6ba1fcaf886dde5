"""Command-line shapes users type."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.main import build_parser, main


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-format", "json", "run", "--config", "x.yaml"],
        ["run", "--config", "x.yaml", "--log-format", "json"],
    ],
)
def test_log_format_goes_before_or_after_run(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.config, args.log_format) == ("run", "x.yaml", "json")


def test_run_defaults_to_text_logs() -> None:
    assert build_parser().parse_args(["run"]).log_format == "text"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "postflight: error" in capsys.readouterr().err


def test_an_extra_word_is_said_with_the_commands_own_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--window 10 minutes` left `minutes` over, and the usage shown was the top level's
    (`postflight [-h] [--version] … COMMAND ...`), not register's flags."""
    with pytest.raises(SystemExit) as exit_info:
        main(["register", "--env", "production", "--version", "v1", "--window", "10", "minutes"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: postflight register "), err
    assert err.rstrip().endswith("postflight: error: unrecognized arguments: minutes")


@pytest.mark.parametrize("where", ["missing-dir/schema.json", "."])
def test_schema_to_a_path_it_cannot_write_is_one_line_and_exit_2(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / where
    assert main(["schema", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"postflight: cannot write {target}: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["check", "--help"], ["validate-config", "--help"]])
def test_the_help_of_the_commands_that_read_a_config_says_the_default(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(command)
    out = " ".join(capsys.readouterr().out.split())
    assert "(default $POSTFLIGHT_CONFIG or ./postflight.yaml)" in out, out


@pytest.mark.parametrize("command", ["register", "status", "rollback"])
def test_the_token_help_names_every_kind_of_token_the_agent_accepts(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A named token (`server.named_tokens`, recorded with a manual rollback) is accepted
    wherever an API token is; the help said only `one of server.api_tokens`."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "server.api_tokens or server.named_tokens" in out, out
