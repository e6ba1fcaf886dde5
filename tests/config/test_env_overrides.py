"""`POSTFLIGHT__SECTION__KEY` environment overrides: applied over the file, and a
wrong one is a configuration error naming its variable (exit 2), never a traceback."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from agent.settings_file import load_settings_text
from tests.cli_process import postflight, validated_here
from tests.config.test_validate_config import MINIMAL, error_lines, run_validate


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
        # check reads no server section: its environment's checks
        (
            "check",
            "POSTFLIGHT__ENVIRONMENTS__PRODUCTION__CHECKS",
            "{bad",
            "environments.production.checks",
        ),
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
    # validate-config in this process (it only reads the file and says what it found);
    # check and run each in a process of its own, as a user runs them
    read = validated_here if command == "validate-config" else postflight
    proc = read(command, *args, env={variable: value})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path} (from ${variable}): not valid JSON (" in proc.stderr, proc.stderr
    assert "1 configuration error" in proc.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "POSTFLIGHT__SERVER__LISTEN",
            "bad",
            "server.listen (from $POSTFLIGHT__SERVER__LISTEN): 'bad' is not HOST:PORT",
        ),
        (  # the file has no store section at all
            "POSTFLIGHT__STORE__URL",
            "mysql://x",
            "store.url (from $POSTFLIGHT__STORE__URL): must start with sqlite:///",
        ),
        (  # a list from the environment replaces the file's, items and all
            "POSTFLIGHT__SERVER__API_TOKENS",
            '[" "]',
            "server.api_tokens[0] (from $POSTFLIGHT__SERVER__API_TOKENS): must not be empty",
        ),
        (
            "POSTFLIGHT__SERVER__LISTN",
            "127.0.0.1:1",
            "server.listn (from $POSTFLIGHT__SERVER__LISTN): unknown key",
        ),
        (  # a map where the file has a list: it replaces the list, and is the error; said
            # in JSON's words, not YAML's ("[a, b], or one `- item` a line")
            "POSTFLIGHT__SERVER__API_TOKENS",
            "{}",
            "server.api_tokens (from $POSTFLIGHT__SERVER__API_TOKENS): should be a JSON list"
            ' (["a", "b"])',
        ),
        (  # not "YAML reads this unquoted value as a number"
            "POSTFLIGHT__SERVER__API_TOKENS",
            '["tok-1234567890abcdef", 5]',
            "server.api_tokens[1] (from $POSTFLIGHT__SERVER__API_TOKENS): should be text, but"
            " the JSON has a number here: quote it",
        ),
        (
            "POSTFLIGHT__STORE",
            "[]",
            "store (from $POSTFLIGHT__STORE): should be a JSON object"
            ' ({"key": "value"}), not a single value or a list',
        ),
        (  # a key below a value: the value became a map
            "POSTFLIGHT__SERVER__LISTEN__PORT",
            "1",
            "server.listen (from $POSTFLIGHT__SERVER__LISTEN__PORT): ",
        ),
        (  # an environment the file does not have
            "POSTFLIGHT__ENVIRONMENTS__STAGING__WINDOW",
            "5m",
            "environments.staging (from $POSTFLIGHT__ENVIRONMENTS__STAGING__WINDOW): the file"
            " has no environment 'staging' (its environments: production), so this variable"
            " adds one, which lacks base_url",
        ),
    ],
)
def test_an_error_in_an_overridden_value_names_its_variable_not_a_file_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, value)
    text = MINIMAL.replace("interval: 30s", "interval: soon")  # and one error in the file
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2
    assert expected in out, out
    line = text.splitlines().index("    interval: soon") + 1
    assert f"environments.production.interval (line {line}): " in out, out
    assert out.count("(line ") == 1, out  # no file line for the variable's error


def test_an_override_of_no_section_is_an_error_not_silently_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTFLIGHT__SERVR__LISTEN", "0.0.0.0:8787")
    code, out = run_validate(tmp_path, MINIMAL, capsys)
    assert code == 2, out
    assert "servr (from $POSTFLIGHT__SERVR__LISTEN): unknown section (check the" in out, out


@pytest.mark.parametrize(
    ("variable", "value", "path"),
    [
        ("POSTFLIGHT__SERVER", '{"listen": "127.0.0.1:1", "listen": "127.0.0.1:2"}', "server"),
        (
            "POSTFLIGHT__ENVIRONMENTS__PRODUCTION__CHECKS",
            '[{"name": "a", "type": "http", "path": "/a", "path": "/b"}]',
            "environments.production.checks",
        ),
    ],
)
def test_a_key_given_twice_in_an_overrides_json_is_an_error_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    path: str,
) -> None:
    """A key given twice in the file is an error at its second line; in an override's
    JSON it was taken silently as its last (`listen` 127.0.0.1:2, `path` /b), valid."""
    monkeypatch.setenv(variable, value)
    code, out = run_validate(tmp_path, MINIMAL, capsys)
    assert code == 2, out
    assert f"{path} (from ${variable}): " in out, out
    assert "is given twice in one object; give it once" in out, out


@pytest.mark.parametrize(
    ("variable", "value", "path", "said"),
    [
        (
            "POSTFLIGHT__STORE",
            "null",
            "store",
            'should be a JSON object ({"key": "value"}), not a single value or a list',
        ),
        (
            "POSTFLIGHT__SERVER__",
            "127.0.0.1:1",
            "server",
            "a key's name is empty (one `_` too many between two names?)",
        ),
    ],
)
def test_a_section_set_to_null_or_an_empty_key_is_an_error_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    path: str,
    said: str,
) -> None:
    """`POSTFLIGHT__STORE=null` validated and was ignored (the file's `store:` left empty
    is an error), and `POSTFLIGHT__SERVER__=…` was said at `server.`, an unknown key."""
    monkeypatch.setenv(variable, value)
    code, out = run_validate(tmp_path, MINIMAL, capsys)
    assert code == 2, out
    assert f"  {path} (from ${variable}): {said}\n" in out, out


def test_a_list_item_set_by_its_index_is_an_error_saying_lists_are_set_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__PRODUCTION__RULES__0__MAX", "bad")
    code, out = run_validate(tmp_path, MINIMAL, capsys)
    assert code == 2, out
    assert (
        "environments.production.rules (from $POSTFLIGHT__ENVIRONMENTS__PRODUCTION__RULES__0__MAX)"
        ": a list is set whole, as JSON (e.g. POSTFLIGHT__ENVIRONMENTS__PRODUCTION__RULES='[...]')"
    ) in out, out
    assert "(line " not in out


def test_an_override_reaches_a_key_the_file_writes_in_capitals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Variable names are case-blind (the shell's `…__PROD__…` is read as `prod`): it sets
    the file's `Prod` rather than adding a `prod` without a base_url."""
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__PROD__WINDOW", "15m")
    settings = load_settings_text(MINIMAL.replace("  production:", "  Prod:"))
    assert list(settings.environments) == ["Prod"]
    assert settings.environments["Prod"].window == 900.0


def test_an_override_reaches_an_environment_whose_name_has_a_dash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell variable's name cannot hold a `-` (`export POSTFLIGHT__ENVIRONMENTS__EU-WEST__…`
    is refused), so `…__EU_WEST__…` sets the file's `eu-west`: it added an `eu_west`
    environment, `environments.eu_west.base_url: required, but missing`."""
    text = MINIMAL.replace("  production:", "  eu-west:")
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__EU_WEST__WINDOW", "15m")
    settings = load_settings_text(text)
    assert list(settings.environments) == ["eu-west"]
    assert settings.environments["eu-west"].window == 900.0
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__EU_WEST__WINDOW", "1s")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert (
        "environments.eu-west.window (from $POSTFLIGHT__ENVIRONMENTS__EU_WEST__WINDOW):"
        " window (1s) must be at least one interval (30s)"
    ) in out, out


def test_an_override_of_an_environment_the_file_lacks_names_the_ones_it_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`…__PROD__WINDOW` beside a file's `production`: it added a `prod` environment, and
    the one error was `environments.prod.base_url (from $…__PROD__WINDOW): required, but
    missing`, read as the variable's fault for a key it never named."""
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__PROD__WINDOW", "15m")
    assert error_lines(tmp_path, MINIMAL, capsys) == [
        "environments.prod (from $POSTFLIGHT__ENVIRONMENTS__PROD__WINDOW): the file has no"
        " environment 'prod' (did you mean production?), so this variable adds one, which"
        " lacks base_url; check the variable's spelling"
    ]


def test_a_variables_own_error_in_an_environment_it_adds_is_said_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contract §1: every error, each with its path. `…__PROD__INTERVAL=30 sec` beside
    `…__PROD__WINDOW`: only the added environment's error was said, and the interval's own
    once the name was fixed, a second run."""
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__PROD__WINDOW", "15m")
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__PROD__INTERVAL", "30 sec")
    lines = error_lines(tmp_path, MINIMAL, capsys)
    assert [line.partition(":")[0] for line in lines] == [
        "environments.prod (from $POSTFLIGHT__ENVIRONMENTS__PROD__INTERVAL)",
        "environments.prod.interval (from $POSTFLIGHT__ENVIRONMENTS__PROD__INTERVAL)",
    ], lines
    assert "so this variable adds one, which lacks base_url" in lines[0], lines
    assert "'30 sec' is not a duration" in lines[1], lines


def test_an_environment_added_whole_by_variables_still_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__CANARY__BASE_URL", "http://127.0.0.1:7")
    settings = load_settings_text(MINIMAL)
    assert list(settings.environments) == ["production", "canary"]


def test_an_error_in_an_override_of_a_key_written_in_capitals_names_its_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`…__PROD__WINDOW=1s` over the file's `Prod` was said at the file's `window: 10m`
    line (`environments.Prod.window (line 7): window (1s) …`), a line that holds no 1s."""
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__PROD__WINDOW", "1s")
    code, out = run_validate(tmp_path, MINIMAL.replace("  production:", "  Prod:"), capsys)
    assert code == 2, out
    assert (
        "environments.Prod.window (from $POSTFLIGHT__ENVIRONMENTS__PROD__WINDOW): window (1s)"
        " must be at least one interval (30s)"
    ) in out, out
    assert "(line " not in out, out


def test_an_override_that_cannot_be_read_is_said_beside_every_other_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contract §1: every error. An override that is not JSON was the only error said (the
    file's, and another override's, hidden until it was fixed)."""
    monkeypatch.setenv("POSTFLIGHT__SERVER__API_TOKENS", "not json")
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__PRODUCTION__WINDOW", "soon")
    lines = error_lines(tmp_path, MINIMAL.replace("max: 0.05", "max: lots"), capsys)
    assert [line.partition(":")[0] for line in lines] == [
        "environments.production.rules[0].max (line 17)",
        "server.api_tokens (from $POSTFLIGHT__SERVER__API_TOKENS)",
        "environments.production.window (from $POSTFLIGHT__ENVIRONMENTS__PRODUCTION__WINDOW)",
    ], lines
    assert "not valid JSON" in lines[1] and "'soon' is not a duration" in lines[2]


def test_the_overrides_apply_beside_an_unset_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file with its API tokens from the environment and an unset `${VAR}`: the unset
    variable is the one error, not also the tokens the file leaves to the override."""
    monkeypatch.setenv("POSTFLIGHT__SERVER__API_TOKENS", '["tok-from-the-environment"]')
    monkeypatch.delenv("PF_UNSET_SECRET", raising=False)
    text = MINIMAL.replace('  api_tokens: ["tok-1234567890abcdef"]\n', "").replace(
        "shh-secret", "${PF_UNSET_SECRET}"
    )
    assert error_lines(tmp_path, text, capsys) == [
        "environments.production.rollback.secret (line 19):"
        " environment variable PF_UNSET_SECRET is not set"
    ]


def test_a_section_set_as_json_is_merged_key_by_key_and_its_value_taken_as_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README: a map or section written as JSON is merged into the file's key by key,
    and an override's value is used as is, with no `${VAR}` expansion."""
    monkeypatch.setenv("POSTFLIGHT__STORE", '{"url": "sqlite:////var/lib/postflight.db"}')
    monkeypatch.setenv("POSTFLIGHT__ENVIRONMENTS__PRODUCTION__ROLLBACK__URL", "http://h/${HOME}")
    store = "store: {url: 'sqlite:///x.db', lease: 12s}\n"
    settings = load_settings_text(MINIMAL.replace("environments:\n", store + "environments:\n"))
    assert settings.store.url == "sqlite:////var/lib/postflight.db"
    assert settings.store.lease == 12.0  # the file's, beside the section's override
    rollback = settings.environments["production"].rollback
    assert rollback is not None and rollback.url == "http://h/${HOME}"
    assert (
        rollback.secret is not None and rollback.secret.get_secret_value() == "shh-secret"
    )  # the file's


@pytest.mark.timeout(120)
def test_run_listens_and_stores_where_the_readmes_overrides_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`postflight run` itself, with the README's two forms: a key
    (`POSTFLIGHT__SERVER__LISTEN=…`) and a section as JSON (`POSTFLIGHT__STORE='{"url": …}'`)
    over a file that sets both otherwise: it listens and stores where the variables say."""
    from tests.cli.test_run_start import free_port, stopped_once_listening

    port = free_port()
    store = tmp_path / "from-the-environment.db"
    config = tmp_path / "postflight.yaml"
    config.write_text(
        MINIMAL.replace(
            "environments:\n", f"store: {{url: 'sqlite:///{tmp_path}/file.db'}}\nenvironments:\n", 1
        )
    )
    monkeypatch.setenv("POSTFLIGHT__SERVER__LISTEN", f"127.0.0.1:{port}")
    monkeypatch.setenv("POSTFLIGHT__STORE", f'{{"url": "sqlite:///{store}"}}')
    text = stopped_once_listening(str(config), tmp_path / "agent.log", signal.SIGTERM)
    assert f"store SQLite file {store}" in text, text
    assert f"listening on http://127.0.0.1:{port}" in text, text
    assert store.exists() and not (tmp_path / "file.db").exists()


def test_an_override_stands_in_for_the_files_unset_variable(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README: `POSTFLIGHT__…` overrides the file's values. A deployment that gives the
    secret as an override (`…__ROLLBACK__SECRET`) over a file reading `${ROLLBACK_SECRET}`
    needs no `ROLLBACK_SECRET` too: it was refused, exit 2, "environment variable
    ROLLBACK_SECRET is not set", for a value the override replaces. One it does not replace
    is still said."""
    config.write_text(
        MINIMAL.replace("shh-secret", "${PF_UNSET_SECRET}").replace(
            '["tok-1234567890abcdef"]', '["${PF_UNSET_TOKEN}"]'
        )
    )
    # validate-config in this process (`validated_here`), where each was a process of its own
    monkeypatch.delenv("PF_UNSET_SECRET", raising=False)
    monkeypatch.delenv("PF_UNSET_TOKEN", raising=False)
    env = {"POSTFLIGHT__ENVIRONMENTS__PRODUCTION__ROLLBACK__SECRET": "shh-from-the-environment"}
    proc = validated_here("validate-config", str(config), env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[1:] == [
        "  server.api_tokens[0] (line 3): environment variable PF_UNSET_TOKEN is not set"
    ], proc.stderr
    env["POSTFLIGHT__SERVER__API_TOKENS"] = '["tok-from-the-environment"]'
    proc = validated_here("validate-config", str(config), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "valid — environments: production" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("first", "second"), [("production", "Production"), ("eu_west", "eu-west")]
)
def test_two_environments_one_override_cannot_tell_apart_are_refused(
    tmp_path: Path, first: str, second: str
) -> None:
    """Override names are case-blind and read `_` as `-`, so `POSTFLIGHT__ENVIRONMENTS__
    PRODUCTION__WINDOW` over environments `production` and `Production` set one of them
    unsaid: the file validated, two environments named alike as a duplicate is meant."""
    staging = MINIMAL.split("environments:\n", 1)[1].replace("production:", f"{second}:", 1)
    config = tmp_path / "postflight.yaml"
    config.write_text(MINIMAL.replace("production:", f"{first}:", 1) + staging)
    proc = validated_here("validate-config", str(config), env={})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = MINIMAL.count("\n") + 1  # the second environment's name
    assert proc.stderr.splitlines()[1:] == [
        f"  environments.{second} (line {line}): environments {first!r} and {second!r} differ"
        f" only in case or - and _, which a POSTFLIGHT__ENVIRONMENTS__{first.upper()}__…"
        " variable cannot tell apart; rename one"
    ], proc.stderr
