"""The mistakes a first configuration makes, said so that the fix is in the message.

Found by writing a config from the README alone: `intervall:` was only "unknown key",
`org: 1234` "Input should be a valid string", `max: 5%` "unable to parse string as a
number", `type: htp` pydantic's "Input tag 'htp' found using 'type' does not match…" at the
check rather than at its `type`, and `listen: 8787` "Input should be a valid string".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.cli.main import main
from agent.settings_file import ConfigError, load_config_text, load_settings_text
from tests.cli_process import validated_here

MINIMAL = """\
server:
  listen: 127.0.0.1:8787
  api_tokens: ["tok-1234567890abcdef"]
environments:
  production:
    base_url: http://127.0.0.1:9
    window: 10m
    interval: 30s
    checks:
      - name: api-health
        type: http
        path: /health
        expect: {status: 200}
    rules:
      - name: probe-errors
        source: checks
        metric: error_rate
        max: 0.05
    rollback:
      url: http://127.0.0.1:9998/rollback
      secret: shh-secret
"""


def problems(text: str) -> dict[str, str]:
    """`{path: message}` of what loading `text` reports; it must not load."""
    with pytest.raises(ConfigError) as err:
        load_settings_text(text, env={})
    return {p.path: p.message for p in err.value.problems}


@pytest.mark.parametrize(
    ("old", "new", "path", "meant"),
    [
        ("    interval: 30s", "    intervall: 30s", "production.intervall", "interval"),
        ("environments:", "enviroments:", "enviroments", "environments"),
        ("  api_tokens:", "  api_token:", "server.api_token", "api_tokens"),
        ("        max: 0.05", "        max_increse: 50%", "rules[0].max_increse", "max_increase"),
        (
            "      secret: shh-secret",
            "      secret: shh-secret\n      dry-run: true",
            "rollback.dry-run",
            "dry_run",
        ),
        # a check's keys are its own type's: `timeout` is an http check's
        ("        path: /health", "        path: /health\n        timout: 2s", "timout", "timeout"),
        ("        expect: {status: 200}", "        expect: {staus: 200}", "staus", "status"),
        # a key the file writes by its alias (`json`, the field json_fields)
        ("        expect: {status: 200}", "        expect: {jsno: {ok: true}}", "jsno", "json"),
    ],
    ids=["environment", "section", "server", "rule", "dash", "check", "expect", "alias"],
)
def test_an_unknown_key_names_the_key_it_most_likely_meant(
    old: str, new: str, path: str, meant: str
) -> None:
    text = MINIMAL.replace(old, new)
    assert text != MINIMAL
    found = {p: m for p, m in problems(text).items() if p.endswith(path)}
    assert list(found.values()) == [f"unknown key (did you mean {meant}?)"], problems(text)


def test_an_unknown_key_like_none_keeps_the_plain_advice() -> None:
    text = MINIMAL.replace("    interval: 30s", "    interval: 30s\n    colour: blue")
    assert problems(text) == {
        "environments.production.colour": "unknown key (check its spelling and indentation)"
    }


def test_a_number_where_text_goes_says_to_quote_it_without_printing_the_value() -> None:
    text = (
        MINIMAL.replace('["tok-1234567890abcdef"]', "[12345678901234567890]")
        .replace("secret: shh-secret", "secret: 987654321")
        .replace("      - name: api-health", "      - name: 404")
    )
    found = problems(text)
    quote = "should be text, but YAML reads this unquoted value as a number: quote it"
    assert found == {
        "server.api_tokens[0]": quote,
        "environments.production.checks[0].name": quote,
        "environments.production.rollback.secret": quote,
    }
    assert not any("987654321" in m or "1234567890" in m for m in found.values())


def test_yes_or_on_where_text_goes_is_said_as_true_false() -> None:
    text = MINIMAL.replace("      - name: probe-errors", "      - name: on")
    assert problems(text) == {
        "environments.production.rules[0].name": (
            "should be text, but YAML reads this unquoted value as true/false: quote it"
        )
    }


@pytest.mark.parametrize(("bound", "fraction"), [("max: 5%", "0.05"), ("max: 0.5 %", "0.005")])
def test_a_percentage_as_a_rules_absolute_bound_says_the_fraction_to_write(
    bound: str, fraction: str
) -> None:
    found = problems(MINIMAL.replace("max: 0.05", bound))
    message = found["environments.production.rules[0].max"]
    assert f"write {fraction} for" in message
    assert "% is for max_increase" in message


@pytest.mark.parametrize(
    ("old", "new", "path", "said"),
    [
        (
            "      secret: shh-secret",
            "      secret: shh-secret\n      dry_run: maybe",
            "environments.production.rollback.dry_run",
            "'maybe' is not true or false",
        ),
        (
            "  api_tokens:",
            "  ui: sometimes\n  api_tokens:",
            "server.ui",
            "'sometimes' is not true or false",
        ),
        (
            "      secret: shh-secret",
            "      secret: shh-secret\n      max_attempts: 0",
            "environments.production.rollback.max_attempts",
            "must be at least 1 (got 0)",
        ),
        (
            "      secret: shh-secret",
            "      secret: shh-secret\n      max_attempts: many",
            "environments.production.rollback.max_attempts",
            "'many' is not a whole number",
        ),
        (
            "    interval: 30s",
            "    interval: 30s\n    analysis: {failure_limit: 1.5}",
            "environments.production.analysis.failure_limit",
            "1.5 is not a whole number",
        ),
        (
            "    interval: 30s",
            "    interval: 30s\n    probes_per_round: 0",
            "environments.production.probes_per_round",
            "must be at least 1 (got 0)",
        ),
        (
            "    interval: 30s",
            "    interval: 30s\n    analysis: {confidence: high}",
            "environments.production.analysis.confidence",
            "'high' is not a number",
        ),
        (
            "max: 0.05",
            "max: high",
            "environments.production.rules[0].max",
            "'high' is not a number",
        ),
    ],
    ids=["bool", "ui", "at-least", "int", "fraction", "probes", "confidence", "bound"],
)
def test_a_number_or_a_yes_no_written_wrong_is_said_in_words_with_the_value(
    old: str, new: str, path: str, said: str
) -> None:
    """Where pydantic's own words reached the user: "Input should be a valid boolean,
    unable to interpret input", "Input should be greater than or equal to 1"."""
    text = MINIMAL.replace(old, new, 1)
    assert text != MINIMAL
    assert problems(text) == {path: said}


def test_an_alert_channel_written_as_its_url_alone_says_how_to_write_one() -> None:
    """`channels: [- json://…]` (apprise's own configs list bare URLs) was "should be a
    mapping (key: value pairs), not a single value or a list"; the URL is never quoted
    (it holds tokens)."""
    text = MINIMAL.replace(
        "environments:", "alerting:\n  channels:\n    - json://127.0.0.1:9/a-secret\nenvironments:"
    )
    assert problems(text) == {
        "alerting.channels[0]": (
            "a channel is written `- url: <apprise URL>` with its `tags: [...]` on the next"
            " line, not the URL alone"
        )
    }


def test_an_unknown_check_type_is_said_at_its_type_with_the_types_there_are() -> None:
    found = problems(MINIMAL.replace("type: http", "type: htp"))
    message = found["environments.production.checks[0].type"]
    assert message.startswith("unknown check type 'htp' (one of: ")
    assert "http" in message and "smoke" in message and "load" in message


def test_a_port_alone_as_listen_says_the_host_port_to_write() -> None:
    found = problems(MINIMAL.replace("listen: 127.0.0.1:8787", "listen: 8787"))
    assert found == {"server.listen": "'8787' is not HOST:PORT: write 127.0.0.1:8787"}


@pytest.mark.parametrize(
    ("listen", "said"),
    [
        # validated, with `http://127.0.0.1` as the host: run could not bind it
        ("http://127.0.0.1:8787", "'http://127.0.0.1:8787' is a URL: write 127.0.0.1:8787"),
        ("https://0.0.0.0:443/", "'https://0.0.0.0:443/' is a URL: write 0.0.0.0:443"),
        ("my host:80", "'my host:80' is not HOST:PORT (e.g. 127.0.0.1:8787)"),
    ],
)
def test_a_url_or_a_host_with_a_space_as_listen_is_refused(listen: str, said: str) -> None:
    found = problems(MINIMAL.replace("listen: 127.0.0.1:8787", f"listen: {listen}"))
    assert found == {"server.listen": said}


def test_validate_config_counts_one_check_and_one_rule_in_the_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "postflight.yaml"
    path.write_text(MINIMAL)
    assert main(["validate-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == f"{path}: valid — environments: production (1 check, 1 rule, sequential)\n"


def test_a_bare_number_of_a_minute_or_more_as_a_request_time_is_a_warning() -> None:
    """`max_latency: 500` is 500 s (a bare number is seconds), and a latency rule's
    `max: 300` five minutes: neither can fail, and validate-config said "valid" alone."""
    text = MINIMAL.replace("expect: {status: 200}", "expect: {status: 200, max_latency: 500}")
    text = text.replace("        path: /health\n", "        path: /health\n        timeout: 2\n")
    text += (
        "  staging:\n"
        "    base_url: http://127.0.0.1:9\n"
        "    checks: [{name: api, type: http, path: /, timeout: 90}]\n"
        "    rules:\n"
        "      - {name: p95, source: checks, metric: latency_p95, max: 300}\n"
        "      - {name: p50, source: checks, metric: latency_p50, max: 300s}\n"
        "      - {name: errors, source: checks, metric: error_rate, max: 0.5}\n"
    )
    loaded = load_config_text(text, env={})
    said = {w.path: w.message for w in loaded.warnings if "bare number" in w.message}
    assert said == {
        "environments.production.checks[0].expect.max_latency": (
            "500 is a bare number, read as seconds: 8m20s for one request;"
            " write 500ms if you meant milliseconds, or 500s to keep it"
        ),
        "environments.staging.checks[0].timeout": (
            "90 is a bare number, read as seconds: 1m30s for one request;"
            " write 90ms if you meant milliseconds, or 90s to keep it"
        ),
        "environments.staging.rules[0].max": (
            "300 is a bare number, read as seconds: 5m for a latency bound;"
            " write 300ms if you meant milliseconds, or 300s to keep it"
        ),
    }
    # still valid, and what it says is what was read: seconds
    check = loaded.settings.environments["production"].checks[0]
    assert check.expect.max_latency == 500.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("timeout", "bound", "env"),
    [
        ("'90'", "'300'", {}),
        ('" 90 "', '" 300 "', {}),
        ('"${API_TIMEOUT}"', '"${P95_MAX}"', {"API_TIMEOUT": "90", "P95_MAX": "300"}),
    ],
    ids=["quoted", "quoted-with-spaces", "variables"],
)
def test_a_bare_number_quoted_or_from_a_variable_is_the_same_warning(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    timeout: str,
    bound: str,
    env: dict[str, str],
) -> None:
    """`max: '300'` and `max: "${P95_MAX}"` (a variable's value is text) are read as 300 s,
    as `max: 300` is, and validate-config said nothing of them where it warned of the
    number unquoted."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "postflight.yaml"
    path.write_text(
        MINIMAL + "  staging:\n"
        "    base_url: http://127.0.0.1:9\n"
        f"    checks: [{{name: api, type: http, path: /, timeout: {timeout}}}]\n"
        "    rules:\n"
        f"      - {{name: p95, source: checks, metric: latency_p95, max: {bound}}}\n"
        "      - {name: p50, source: checks, metric: latency_p50, max: '300s'}\n"
    )
    assert main(["validate-config", str(path)]) == 0
    said = capsys.readouterr().err
    assert (
        "environments.staging.checks[0].timeout (line 24): 90 is a bare number, read as"
        " seconds: 1m30s for one request; write 90ms if you meant milliseconds, or 90s to"
        " keep it"
    ) in said, said
    assert (
        "environments.staging.rules[0].max (line 26): 300 is a bare number, read as seconds:"
        " 5m for a latency bound; write 300ms if you meant milliseconds, or 300s to keep it"
    ) in said, said
    # with its unit (its 5m is past what a probe waits, a warning of its own)
    assert not [line for line in said.splitlines() if "rules[1]" in line and "bare" in line]


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["run"], "--config PATH"),
        (["check", "--env", "production"], "--config PATH"),
        (["validate-config"], "validate-config PATH"),
    ],
    ids=["run", "check", "validate-config"],
)
def test_a_default_config_not_found_says_it_was_the_default_and_where(
    tmp_path: Path, command: list[str], flag: str
) -> None:
    """`postflight run` in a directory without `postflight.yaml` said only `file not found:
    postflight.yaml`; which directory, and that no file was named, were left to guess.
    Each command in this process (`validated_here`, in `tmp_path`), where each of the six
    reads was a Python process of its own: the words are the subject, not the process."""
    env: dict[str, str] = {}

    def said() -> str:
        """The last line of stderr of the command, run in `tmp_path`; it exits 2."""
        done = validated_here(*command, env=env, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        return done.stderr.splitlines()[-1].strip()

    assert said() == (
        f"(top level): file not found: postflight.yaml (the default, in {tmp_path}:"
        f" name the file with {flag}, or set $POSTFLIGHT_CONFIG)"
    )
    env["POSTFLIGHT_CONFIG"] = "elsewhere.yaml"
    assert said() == ("(top level): file not found: elsewhere.yaml (from $POSTFLIGHT_CONFIG)")


def test_a_config_named_on_the_command_line_and_not_found_is_said_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate-config", str(tmp_path / "postflight.yaml")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].strip() == (
        f"(top level): file not found: {tmp_path / 'postflight.yaml'}"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["validate-config", ""],
        ["check", "--config", "", "--env", "production"],
        ["run", "--config", ""],
    ],
    ids=["validate-config", "check", "run"],
)
def test_an_empty_config_path_is_refused_not_read_as_the_default(
    tmp_path: Path, command: list[str]
) -> None:
    """`--config "$PF_CONFIG"` with the variable unset: the empty path fell through to
    $POSTFLIGHT_CONFIG or ./postflight.yaml, another file than the one meant, which a CI
    step then validated (exit 0) or checked. Exit 2, saying the path is empty."""
    (tmp_path / "postflight.yaml").write_text(MINIMAL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFLIGHT")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-m", "agent", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the configuration's path is empty" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("old", "new", "hint"),
    [
        ("    window: 10m", "\twindow: 10m", "indent with spaces; YAML does not allow tabs"),
        (
            "    window: 10m",
            "    window:\t10m",
            "replace the tab with a space; YAML does not allow tabs here",
        ),
    ],
    ids=["indentation", "after-the-colon"],
)
def test_a_tab_is_hinted_at_as_what_it_is(old: str, new: str, hint: str) -> None:
    """A tab after `window:` was told to "indent with spaces", which it already did. YAML
    allows a tab there, and libyaml's parser (the loader's where PyYAML has it) reads it
    so: the window is 10m; PyYAML's own refuses it, with that hint."""
    if "\t10m" in new and yaml.__with_libyaml__:
        window = load_settings_text(MINIMAL.replace(old, new)).environments["production"]
        assert window.window == 600.0
        return
    (message,) = problems(MINIMAL.replace(old, new)).values()
    assert message.endswith(f"; hint: {hint}"), message


def test_names_and_empty_lists_are_said_in_words_not_as_pydantics_regex() -> None:
    """`String should match pattern '^[A-Za-z0-9_.:-]+$'`, `Dictionary should have at
    least 1 item after validation, not 0`, `String should have at least 1 character`."""
    text = (
        MINIMAL.replace('api_tokens: ["tok-1234567890abcdef"]', "api_tokens: []")
        .replace("      - name: api-health", "      - name: api health")
        .replace("      - name: probe-errors", '      - name: ""')
    )
    assert problems(text) == {
        "server.api_tokens": (
            "is empty; at least one token is needed, here or in server.named_tokens"
        ),
        "environments.production.checks[0].name": (
            "a name takes only letters, digits and _ . : - (no spaces)"
        ),
        "environments.production.rules[0].name": "must not be empty",
    }
    no_environment = MINIMAL[: MINIMAL.index("environments:")] + "environments: {}\n"
    assert problems(no_environment) == {"environments": "is empty; at least one is needed"}


def test_named_tokens_alone_are_a_configuration_and_no_token_at_all_is_not() -> None:
    """The README: `named_tokens` are tokens "accepted wherever an API token is". Given
    alone (every manual rollback then names who asked) they were refused with
    "server.api_tokens: required, but missing"; no token in either key is still an
    error, said at `api_tokens`."""
    alone = MINIMAL.replace(
        'api_tokens: ["tok-1234567890abcdef"]', "named_tokens: {alice: tok-1234567890abcdef}"
    )
    server = load_settings_text(alone, env={}).server
    assert [name for name, _ in server.token_names()] == ["alice"]
    missing = MINIMAL.replace('  api_tokens: ["tok-1234567890abcdef"]\n', "")
    assert problems(missing) == {
        "server.api_tokens": "required, but missing (or give server.named_tokens)"
    }
    both_empty = MINIMAL.replace(
        'api_tokens: ["tok-1234567890abcdef"]', "api_tokens: []\n  named_tokens: {}"
    )
    assert problems(both_empty) == {
        "server.api_tokens": (
            "is empty; at least one token is needed, here or in server.named_tokens"
        )
    }


def test_a_name_refused_for_one_character_says_which() -> None:
    """`producci\u00f3n` was told "a name takes only letters, digits and _ . : -", all of
    which it is to its writer (\u00f3 is a letter): the character refused is said, and a
    letter outside A-Z as such."""
    text = MINIMAL.replace("  production:", "  producci\u00f3n:").replace(
        "      - name: api-health", "      - name: api/health"
    )
    assert problems(text) == {
        "environments.producci\u00f3n": (
            "a name takes only the letters A-Z and a-z, digits and _ . : - (not '\u00f3')"
        ),
        "environments.producci\u00f3n.checks[0].name": (
            "a name takes only letters, digits and _ . : - (not '/')"
        ),
    }


def test_a_key_with_a_control_character_is_one_line_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key written `"prod\\n"` or `"\\e[2Jwindow"` (YAML's escapes): its path was printed
    raw, an error split over two lines and a terminal sequence run by validate-config's
    output. Each error is one line, the key shown escaped."""
    text = MINIMAL.replace("  production:", '  "prod\\n":').replace(
        "    interval: 30s", '    "\\e[2Jinterval": 30s'
    )
    path = tmp_path / "postflight.yaml"
    path.write_text(text)
    assert main(["validate-config", str(path)]) == 2
    out = capsys.readouterr()
    lines = (out.out + out.err).splitlines()
    assert "\x1b" not in out.out + out.err
    assert lines[1:] == [
        "  environments.'prod\\n' (line 5): a name takes only letters, digits and _ . : -"
        " (not '\\n')",
        "  environments.'prod\\n'.'\\x1b[2Jinterval' (line 8): unknown key (did you mean"
        " interval?)",
    ], lines


def test_a_single_value_where_a_list_goes_says_how_to_write_a_list() -> None:
    """`tags: oncall` was "Input should be a valid list"."""
    text = MINIMAL + "    alerts:\n      tags: oncall\n"
    assert problems(text) == {
        "environments.production.alerts.tags": "should be a list: [a, b], or one `- item` a line"
    }


def test_an_empty_secret_from_a_variable_names_the_variable() -> None:
    """`export POSTFLIGHT_API_TOKEN=` (set, to nothing) was "must not be empty" of a line
    that shows `["${POSTFLIGHT_API_TOKEN}"]`, not an empty value."""
    text = MINIMAL.replace('["tok-1234567890abcdef"]', '["${API_TOKEN}"]').replace(
        "secret: shh-secret", "secret: ${ROLLBACK_SECRET:-}"
    )
    with pytest.raises(ConfigError) as err:
        load_settings_text(text, env={"API_TOKEN": ""})
    assert {p.path: p.message for p in err.value.problems} == {
        "server.api_tokens[0]": "must not be empty ($API_TOKEN is set, to nothing)",
        "environments.production.rollback.secret": (
            "must not be empty ($ROLLBACK_SECRET is not set, and its default is empty)"
        ),
    }


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://127.0.0.1:9998/rollback", "not a URL to call: ftp:// is not http:// or https://"),
        ("HTTPS://127.0.0.1:9998/rollback", "not a URL to call: write its scheme in lower case"),
        ("127.0.0.1:9998/rollback", "not a URL: write it with http:// or https:// and a host"),
    ],
    ids=["ftp", "upper-case", "no-scheme"],
)
def test_a_url_of_another_scheme_is_said_by_its_scheme(url: str, said: str) -> None:
    """`ftp://…` was "not a URL: write it with http:// or https:// and a host", which it
    is and has; `HTTPS://…` was too."""
    found = problems(MINIMAL.replace("http://127.0.0.1:9998/rollback", url))
    assert list(found) == ["environments.production.rollback.url"], found
    assert found["environments.production.rollback.url"].startswith(said)
    assert "9998" not in found["environments.production.rollback.url"]  # never the URL itself


@pytest.mark.parametrize(("written", "confidence"), [("99%", 0.99), ("95.5%", 0.955), ("0.9", 0.9)])
def test_a_confidence_may_be_written_as_a_percentage(written: str, confidence: float) -> None:
    analysis = f"    analysis: {{confidence: {written}}}\n"
    text = MINIMAL.replace("    rollback:\n", analysis + "    rollback:\n")
    settings = load_settings_text(text, env={}).environments["production"].analysis
    assert settings.confidence == pytest.approx(confidence)


def test_a_confidence_of_99_says_it_is_a_probability() -> None:
    text = MINIMAL.replace("    rollback:\n", "    analysis: {confidence: 99}\n    rollback:\n")
    assert problems(text)["environments.production.analysis.confidence"] == (
        "must be more than 0.5 and less than 1 (got 99): a probability, such as 0.99 or 99%"
    )


@pytest.mark.parametrize(
    ("old", "key", "rule"),
    [
        ("        metric: error_rate   # error_rate | latency", "query", 0),
        ("        metric: error_rate   # error_rate | latency", "nrql", 0),
        ("        metric: error_rate   # error_count", "query", 3),
        ("        metric: error_rate   # error_count", "nrql", 3),
    ],
    ids=["checks-query", "checks-nrql", "sentry-query", "sentry-nrql"],
)
def test_a_query_on_a_rule_whose_source_reads_none_is_refused_at_it(
    tmp_path: Path, old: str, key: str, rule: int
) -> None:
    """The example's rules, run as `postflight validate-config`: a `query:` (or `nrql:`) on
    a checks or Sentry rule was read by nothing, and the file validated; the user's PromQL
    judged nothing while the rule judged its `metric`."""
    example = Path(__file__).resolve().parents[2] / "config" / "postflight.example.yaml"
    text = example.read_text()
    assert text.count(old) == 1
    config = tmp_path / "postflight.yaml"
    config.write_text(text.replace(old, f"{old.split('#')[0].rstrip()}\n        {key}: up #", 1))
    env = {
        "POSTFLIGHT_API_TOKEN": "tok-1234567890abcdef",
        "ROLLBACK_SECRET": "shh",
        "SENTRY_AUTH_TOKEN": "st",
        "NEW_RELIC_API_KEY": "nk",
    }
    proc = validated_here("validate-config", str(config), env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = proc.stderr.splitlines()[1:]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"  environments.production.rules[{rule}].{key} (line "), errors
    assert f"{key} is read only by" in errors[0], errors


def test_a_checks_rule_without_its_metric_says_it_is_required_not_none() -> None:
    """It said "metric must be one of … (got None)": Python's word for a key not written."""
    text = MINIMAL.replace("        metric: error_rate\n", "")
    assert problems(text) == {
        "environments.production.rules[0].metric": (
            "required for source checks: one of error_rate, latency_p50, latency_p95,"
            " latency_p99, throughput"
        )
    }


def test_a_sentry_rule_without_its_metric_says_it_is_required() -> None:
    """It said "… for source sentry (got 'query')", of a rule that wrote no query."""
    text = MINIMAL.replace(
        "    rollback:\n", "    baseline: {sentry: {project: web}}\n    rollback:\n"
    ).replace(
        "        metric: error_rate\n        max: 0.05\n",
        "        metric: error_rate\n        max: 0.05\n"
        "      - {name: sentry-errors, source: sentry, max_increase: 100%}\n",
    )
    text = "providers:\n  sentry: {org: acme, token: st}\n" + text
    assert problems(text) == {
        "environments.production.rules[1].metric": (
            "rule 'sentry-errors': required for source sentry: one of error_count, error_rate,"
            " crash_free_rate, p95_duration"
        )
    }


@pytest.mark.parametrize(
    ("old", "new", "path", "said"),
    [
        ("      secret: shh-secret", "      secret: [shh-secret]", "rollback.secret", "a list"),
        ("      secret: shh-secret", "      secret: {a: shh}", "rollback.secret", "a mapping"),
        (
            '  api_tokens: ["tok-1234567890abcdef"]',
            '  api_tokens: [{ci: "tok-1234567890abcdef"}]',
            "server.api_tokens[0]",
            "a mapping",
        ),
    ],
)
def test_a_list_or_a_mapping_where_text_goes_is_said_so(
    old: str, new: str, path: str, said: str
) -> None:
    """It was pydantic's "Input should be a valid string"."""
    assert MINIMAL.count(old) == 1
    text = MINIMAL.replace(old, new)
    found = {p.rpartition("production.")[2]: m for p, m in problems(text).items()}
    assert found == {path: f"should be text, not {said}"}, found
