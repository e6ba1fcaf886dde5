"""Command-line shapes users type."""

from __future__ import annotations

import argparse
import json
import logging
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


def test_a_register_usage_error_ends_as_its_other_errors_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`register --wait` without --env: `postflight: error: the following arguments are
    required: --env, --version`, where every other end of register names itself, its
    outcome and its exit code (`postflight register: error: … (exit 2)`)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["register", "--url", "http://127.0.0.1:9", "--token", "t", "--wait"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: postflight register"), err
    assert err.rstrip().splitlines()[-1] == (
        "postflight register: error: the following arguments are required: --env, --version"
        " (exit 2)"
    ), err


@pytest.mark.parametrize("argv", [[], ["--log-level", "debug"]])
def test_no_command_is_a_usage_error_not_a_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`postflight` alone, a new user's first try, raised a ValueError from the
    `--log-format json` look-ahead (zip of no words with one) before argparse could say
    that a command is needed."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "postflight: error: the following arguments are required: COMMAND" in err, err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["regster"], "invalid choice: 'regster' (did you mean register?"),
        (["validate", "x.yaml"], "invalid choice: 'validate' (did you mean validate-config?"),
        (["status", "--evn", "prod"], "unrecognized arguments: --evn (did you mean --env?)"),
        (["check", "--env", "prod", "--confg", "x"], "(did you mean --config?)"),
        (["register", "--env", "p", "--version", "v", "--wiat"], "(did you mean --wait?)"),
    ],
)
def test_a_typo_in_a_command_or_flag_names_the_one_meant(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`postflight regster`, `status --evn prod`: argparse listed every command, or said
    only `unrecognized arguments`, as config keys say `did you mean interval?`."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert said in err, err
    assert len(err.strip().splitlines()[-1:]) == 1


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
    assert err.rstrip().endswith(
        "postflight register: error: unrecognized arguments: minutes (exit 2)"
    ), err


DURATION_FLAGS = [
    (["register", "--env", "p", "--version", "v", "--wait"], "--timeout"),
    (["register", "--env", "p", "--version", "v"], "--request-timeout"),
    (["status"], "--request-timeout"),
    (["rollback", "dep_x", "--reason", "r"], "--request-timeout"),
]


@pytest.mark.parametrize(("command", "flag"), DURATION_FLAGS)
@pytest.mark.parametrize(
    ("value", "said"),
    [
        (["-1s"], "'-1s' is negative: give it more than 0s"),  # two words: argparse's flag
        (["-1"], "'-1' is negative: give it more than 0s"),
        (["=-0.5s"], "'-0.5s' is negative: give it more than 0s"),
        (["0s"], "'0s' is no time: give it more than 0s"),
        (["0"], "'0' is no time: give it more than 0s"),
        (["=-0s"], "'-0s' is no time: give it more than 0s"),  # not "negative"
        (["soon"], "'soon' is not a duration"),
    ],
)
def test_a_duration_flag_refuses_zero_negative_and_garbage_naming_itself(
    command: list[str],
    flag: str,
    value: list[str],
    said: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--timeout -1s` said only "argument --timeout: expected one argument" (argparse
    reads `-1s` as a flag), and `--request-timeout 0s` was taken (as 0.1 s), as was
    `--wait --timeout 0s` (giving up at once): each is one line naming the flag, exit 2,
    before anything is sent."""
    monkeypatch.setenv("POSTFLIGHT_URL", "http://127.0.0.1:9")  # never reached
    monkeypatch.setenv("POSTFLIGHT_TOKEN", "tok-1234567890abcdef")
    given = [flag + value[0]] if value[0].startswith("=") else [flag, *value]
    assert main([*command, *given]) == 2
    err = capsys.readouterr().err
    # each command's end says its outcome and code, as register's does
    assert err.startswith(f"postflight {command[0]}: error: {flag}: {said}"), err
    assert err.rstrip().endswith(" (exit 2)"), err
    assert len(err.strip().splitlines()) == 1, err


def test_window_refuses_zero_negative_and_garbage_naming_itself(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTFLIGHT_URL", "http://127.0.0.1:9")  # never reached
    monkeypatch.setenv("POSTFLIGHT_TOKEN", "tok-1234567890abcdef")
    register = ["register", "--env", "p", "--version", "v", "--window"]
    for value, said in [
        ("0s", "the window must be longer than 0s"),
        ("-5m", "'-5m' is negative: give it more than 0s"),  # two words
        ("forever", "'forever' is not a duration"),
    ]:
        assert main([*register, value]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"postflight register: error: --window: {said}"), err
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--env", "p", "--version", ""], "--version: must not be empty"),
        (["--env", "", "--version", "v"], "--env: must not be empty"),
        (["--env", "p", "--version", "v" * 129], "--version: is 129 characters; at most 128"),
        (["--env", "p", "--version", "v", "--commit", "c" * 200], "--commit: is 200 characters"),
        (["--env", "p", "--version", "v", "--label", "k" * 65 + "=v"], "is 65 characters; at"),
    ],
)
def test_a_flag_empty_or_too_long_is_said_in_words(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    said: str,
) -> None:
    """It was pydantic's "String should have at least 1 character"."""
    monkeypatch.setenv("POSTFLIGHT_URL", "http://127.0.0.1:9")  # never reached
    monkeypatch.setenv("POSTFLIGHT_TOKEN", "tok-1234567890abcdef")
    assert main(["register", *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and "String should" not in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("where", ["missing-dir/schema.json", "."])
def test_schema_to_a_path_it_cannot_write_is_one_line_and_exit_2(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / where
    assert main(["schema", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    said = f"postflight schema: error: cannot write {target}: "
    assert err.startswith(said) and "Traceback" not in err
    assert err.rstrip().endswith(" (exit 2)"), err
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


EXIT_CODES_OF = {
    "run": [
        "0 clean stop",
        "2 bad configuration, or a store or port it cannot use, or a usage error",
    ],
    "validate-config": ["0 valid", "2 invalid (every error said), or a usage error"],
    "register": [
        "0 registered",
        "1 failed or rolled back",
        "3 no verdict",
        "2 usage, connection or auth error",
        "129 hung up",
        "130 interrupted",
        "143 terminated",
    ],
    "status": ["0 shown", "2 usage, connection or auth error"],
    "check": [
        "0 all pass",
        "1 any fail",
        "2 bad configuration or unknown environment, or a usage error",
    ],
    "rollback": ["0 accepted", "1 refused", "2 usage, connection or auth error"],
    "demo": ["0 both outcomes as expected", "2 a usage error"],
    "schema": ["0 printed", "2 cannot write --output, or a usage error"],
}


@pytest.mark.parametrize("command", sorted(EXIT_CODES_OF))
def test_every_commands_help_says_what_it_does_and_its_exit_codes(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Contract §1 gives each command its exit codes; `--help` said none of them (but
    register's --wait), and `run --help` not even what the command does."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    rest = out.partition("\n\n")[2]  # after the usage
    assert rest and not rest.startswith(("options:", "positional arguments:")), out
    codes = " ".join(out.partition("exit codes:")[2].split())
    for said in EXIT_CODES_OF[command]:
        assert said in codes, (said, out)


def _every_action(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += [(f"{name} {flag}", a) for flag, a in _every_action(child)]
        else:
            found.append(("/".join(action.option_strings) or action.dest, action))
    return found


def test_every_option_says_what_it_does_and_its_default() -> None:
    """`--log-format {text,json}` and `--log-level` had no help at all; a default not
    said in `--help` is one the user has to find in the README."""
    for name, action in _every_action(build_parser()):
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        assert action.help, f"{name} has no help"
        default = action.default
        if default in (None, False, [], argparse.SUPPRESS):
            continue
        assert f"default: {default}" in action.help, f"{name}: {action.help!r}"


def test_the_top_level_help_names_the_variables_postflight_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for variable in (
        "$POSTFLIGHT_CONFIG",
        "$POSTFLIGHT_URL",
        "$POSTFLIGHT_TOKEN",
        "$POSTFLIGHT__<SECTION>__<KEY>",
        "$NO_COLOR",
    ):
        assert variable in out, (variable, out)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--log-format", "json", "--confg", "x.yaml"],
        ["--log-format=json", "run", "--log-level", "loud"],
    ],
)
def test_a_usage_error_of_run_with_json_logs_is_one_json_record(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A container's command with a typo printed `run`'s usage as text, the one part of the
    daemon's output a log shipper could not read; still exit 2."""
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
    finally:
        logging.getLogger().handlers.clear()
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "error", record
    assert record["msg"].startswith("usage error: ") and "postflight run --help" in record["msg"]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--confg", "x.yaml"],  # text logs
        ["register", "--version", "run", "--log-format", "json"],  # not run
        ["--log-level", "run", "--log-format", "json", "status", "--bad"],
    ],
)
def test_other_usage_errors_stay_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    said = f"postflight {argv[0]}: error: " if argv[0] in ("run", "register") else "error: "
    assert err.startswith("usage: postflight") and said in err, err
    assert err.rstrip().endswith(" (exit 2)"), err
