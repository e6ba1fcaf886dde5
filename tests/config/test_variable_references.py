"""`${VAR}` references in the odd forms users write: each either works as a shell user
expects or is an error at its field that says what to write instead."""

from __future__ import annotations

import pytest

from agent.settings_file import ConfigError, load_settings_text
from tests.config.test_validate_config import MINIMAL

URL = "base_url: http://127.0.0.1:9"


def base_url(value: str, env: dict[str, str]) -> str:
    settings = load_settings_text(MINIMAL.replace(URL, f'base_url: "{value}"'), env=env)
    return settings.environments["production"].base_url


def problems(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_settings_text(text, env=env or {})
    return {p.path: p.message for p in info.value.problems}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://127.0.0.1:3"),
        ({"PF_OUTER": "http://127.0.0.1:1"}, "http://127.0.0.1:1"),
        ({"PF_INNER": "http://127.0.0.1:2"}, "http://127.0.0.1:2"),
        ({"PF_OUTER": "", "PF_INNER": "http://127.0.0.1:2"}, "http://127.0.0.1:2"),
    ],
)
def test_a_default_may_itself_be_a_reference_with_a_default(
    env: dict[str, str], expected: str
) -> None:
    assert base_url("${PF_OUTER:-${PF_INNER:-http://127.0.0.1:3}}", env) == expected


def test_an_unset_variable_in_a_nested_default_is_named() -> None:
    text = MINIMAL.replace(URL, 'base_url: "${PF_OUTER:-${PF_INNER}}"')
    found = problems(text)
    assert found == {"environments.production.base_url": "environment variable PF_INNER is not set"}


def test_a_default_with_braces_is_kept_whole() -> None:
    text = MINIMAL.replace("secret: shh-secret", 'secret: "${PF_UNSET:-{a}b}"')
    settings = load_settings_text(text, env={})
    rollback = settings.environments["production"].rollback
    assert rollback is not None and rollback.secret is not None
    assert rollback.secret.get_secret_value() == "{a}b"


@pytest.mark.parametrize("reference", ["${PF_URL-http://a}", "${PF_URL:?set it}", "${PF_URL:=x}"])
def test_a_shell_form_the_loader_does_not_read_says_which_forms_it_does(reference: str) -> None:
    message = problems(MINIMAL.replace(URL, f'base_url: "{reference}"'))[
        "environments.production.base_url"
    ]
    assert "starts no ${NAME} reference" in message
    assert "${NAME:-default}" in message and "PF_URL" in message


def test_a_broken_reference_in_a_secret_does_not_quote_the_secret() -> None:
    text = MINIMAL.replace("secret: shh-secret", 'secret: "hunter2${x-y"')
    message = problems(text)["environments.production.rollback.secret"]
    assert "starts no ${NAME} reference" in message and "hunter2" not in message


def test_a_reference_in_a_key_is_an_error_at_that_key_not_a_strange_name() -> None:
    text = MINIMAL.replace("  production:\n", "  ${PF_ENV}:\n")
    found = problems(text, {"PF_ENV": "production"})
    assert list(found) == ["environments.${PF_ENV}"], found
    assert "only in values" in found["environments.${PF_ENV}"]


def test_a_literal_dollar_brace_in_a_key_is_written_with_two_dollars() -> None:
    text = MINIMAL.replace(
        "        path: /health\n",
        "        path: /health\n        json:\n          price$${raw}: v\n",
    )
    settings = load_settings_text(text, env={})
    check = settings.environments["production"].checks[0]
    assert check.json_body == {"price${raw}": "v"}  # type: ignore[attr-defined]


def test_a_whole_value_written_as_dollar_name_says_to_write_braces() -> None:
    """`token: $SENTRY_AUTH_TOKEN` (a shell's form) was the literal text, a token that
    validated and then was refused (401) at every request."""
    text = MINIMAL.replace("secret: shh-secret", "secret: $PF_ROLLBACK_SECRET")
    found = problems(text, {"PF_ROLLBACK_SECRET": "from-the-environment"})
    assert found == {
        "environments.production.rollback.secret": (
            "$PF_ROLLBACK_SECRET is not read from the environment: write ${PF_ROLLBACK_SECRET}"
            " (or $$PF_ROLLBACK_SECRET for the text itself)"
        )
    }


@pytest.mark.parametrize("value", ["pa$word", "$$PF_SECRET", "a $PF_SECRET b", "$lower"])
def test_a_dollar_inside_other_text_is_that_text(value: str) -> None:
    text = MINIMAL.replace("secret: shh-secret", f'secret: "{value}"')
    rollback = load_settings_text(text, env={}).environments["production"].rollback
    assert rollback is not None and rollback.secret is not None
    assert rollback.secret.get_secret_value() == value.replace("$$", "$")


def test_an_error_in_a_value_from_a_variable_names_the_variable() -> None:
    """The file shows `${PF_WINDOW}`, the error a value it does not: say where it came from."""
    text = MINIMAL.replace("window: 10m", "window: ${PF_WINDOW}").replace(
        "interval: 30s", "interval: ${PF_INTERVAL:-soon}"
    )
    found = problems(text, {"PF_WINDOW": "ten minutes"})
    assert found["environments.production.window"] == (
        "'ten minutes' is not a duration; write it like 250ms, 30s, 10m or 1h (from $PF_WINDOW)"
    )
    # the default is written in the file: nothing to add
    assert found["environments.production.interval"].endswith("10m or 1h")


def test_values_read_from_variables_named_as_secrets_are_redacted_like_secret_settings() -> None:
    """A `${VAR}` named as a secret (a part of its name between `_`s is TOKEN, SECRET,
    PASSWORD, PASS, KEY…) is hidden wherever the SecretStr settings are; other variables
    (a URL) and values too short to hide without garbling every message are not."""
    text = MINIMAL.replace(URL, 'base_url: "${PF_PROD_URL}"').replace(
        "        path: /health\n",
        '        path: "/health?a=${HEALTH_TOKEN}&b=${SMOKE_PASSWORD}&c=${NEW_RELIC_API_KEY}'
        '&d=${PF_TOKENS}&e=${SHORT_TOKEN}&f=${MONKEY_BUSINESS}&g=${PF_SECRETARY}"\n',
    )
    env = {
        "PF_PROD_URL": "http://127.0.0.1:9",
        "HEALTH_TOKEN": "ht-0123456789",
        "SMOKE_PASSWORD": "pw-0123456789",
        "NEW_RELIC_API_KEY": "NRAK-0123456789",
        "PF_TOKENS": "many-0123456789",
        "SHORT_TOKEN": "smoke",
        "MONKEY_BUSINESS": "not-a-secret-0",
        "PF_SECRETARY": "not-a-secret-1",
    }
    secrets = load_settings_text(text, env=env).secret_values()
    assert {"ht-0123456789", "pw-0123456789", "NRAK-0123456789", "many-0123456789"} <= set(secrets)
    assert not {"http://127.0.0.1:9", "smoke", "not-a-secret-0", "not-a-secret-1"} & set(secrets)


def test_a_value_from_a_variable_named_as_a_secret_is_not_quoted_by_its_error() -> None:
    """validate-config quoted it back ("'…' is not a duration (from $HEALTH_TOKEN)"), where
    a check's failure, an alert and the API hide it."""
    text = MINIMAL.replace(
        "        path: /health\n", '        path: /health\n        timeout: "${PF_HEALTH_TOKEN}"\n'
    )
    found = problems(text, {"PF_HEALTH_TOKEN": "sekrit-health-value"})
    message = found["environments.production.checks[0].timeout"]
    assert "sekrit-health-value" not in message, message
    assert message.startswith("'***' is not a duration"), message


def test_a_value_a_secret_key_reads_is_not_quoted_where_another_key_reads_it() -> None:
    """Contract §6: secrets are never printed. A variable whose name says nothing of a
    secret (`HOOK_SIGNING`) read by `rollback.secret` and, by mistake, by `interval` too
    was printed by validate-config ("'…' is not a duration (from $HOOK_SIGNING)"): what a
    secret key reads is a secret, whatever the variable's name."""
    text = MINIMAL.replace("secret: shh-secret", 'secret: "${HOOK_SIGNING}"').replace(
        "interval: 30s", 'interval: "${HOOK_SIGNING}"'
    )
    found = problems(text, {"HOOK_SIGNING": "sekrit-signing-value"})
    message = found["environments.production.interval"]
    assert message.startswith("'***' is not a duration"), message
