"""`postflight validate-config`: every broken configuration is exit 2 with its field path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from agent.cli.main import main
from agent.settings_file import ConfigError, load_settings, load_settings_text
from checks.http import HttpCheckConfig

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
    rules:
      - name: probe-errors
        source: checks
        metric: error_rate
        max: 0.05
    rollback:
      url: http://127.0.0.1:9998/rollback
      secret: shh-secret
"""


def with_load_check(fields: str) -> str:
    """MINIMAL with a second check, a load check with `fields` (its interval is 30s)."""
    line = f"      - {{name: feed, type: load, path: /, rate: 5/s, {fields}}}\n"
    return MINIMAL.replace("        path: /health\n", "        path: /health\n" + line)


def run_validate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "postflight.yaml"
    path.write_text(text)
    code = main(["validate-config", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def error_lines(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What validate-config says of `text`, one line per error; it must exit 2."""
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    return [line.strip() for line in out.splitlines() if line.startswith("  ")]


def test_minimal_config_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_validate(tmp_path, MINIMAL, capsys)
    assert code == 0, out
    assert "valid" in out


BROKEN = [
    pytest.param(
        MINIMAL.replace("    window: 10m", "    windw: 10m"),
        "environments.production.windw",
        "unknown key",
        id="typo-key",
    ),
    pytest.param(
        MINIMAL.replace("interval: 30s", "interval: 30 sec"),
        "environments.production.interval",
        "not a duration",
        id="bad-duration",
    ),
    pytest.param(
        MINIMAL.replace("interval: 30s", "interval: 20m"),
        "environments.production",
        "at least one interval",
        id="interval-longer-than-window",
    ),
    pytest.param(
        MINIMAL.replace('  api_tokens: ["tok-1234567890abcdef"]\n', ""),
        "server.api_tokens",
        "required",
        id="missing-tokens",
    ),
    pytest.param(
        MINIMAL.replace("secret: shh-secret", "secret: ${POSTFLIGHT_TEST_UNSET_VAR}"),
        "environments.production.rollback.secret",
        "POSTFLIGHT_TEST_UNSET_VAR is not set",
        id="unset-variable",
    ),
    pytest.param(
        MINIMAL.replace("metric: error_rate", "metric: errors_per_second"),
        "environments.production.rules[0]",
        "metric must be one of",
        id="unknown-metric",
    ),
    pytest.param(
        MINIMAL.replace("        max: 0.05", "        check: nope\n        max: 0.05"),
        "environments.production",
        "names check 'nope'",
        id="rule-names-missing-check",
    ),
    pytest.param(
        MINIMAL.replace("source: checks", "source: sentry").replace(
            "    rollback:\n", "    baseline: {sentry: {project: web}}\n    rollback:\n"
        ),
        "providers.sentry",
        "providers.sentry",
        id="provider-not-configured",
    ),
    pytest.param(
        MINIMAL.replace("source: checks", "source: sentry"),
        "environments.production",
        "set baseline.sentry.project",
        id="sentry-rule-without-project",
    ),
    pytest.param(
        MINIMAL.replace(
            "    rollback:\n",
            "    baseline: {sentry: {project: web, release: web}}\n    rollback:\n",
        ),
        "environments.production.baseline.sentry.release",
        'must contain {version}, e.g. "web@{version}"',
        id="sentry-release-without-the-version",
    ),
    pytest.param(
        MINIMAL.replace(
            "    rollback:\n",
            '    baseline: {sentry: {project: web, release: "web@{sha}"}}\n    rollback:\n',
        ),
        "environments.production.baseline.sentry.release",
        "only {version} may be in braces (got {sha})",
        id="sentry-release-with-another-field",
    ),
    pytest.param(
        MINIMAL.replace("source: checks", "source: datadog"),
        "environments.production.rules[0].source",
        "unknown source 'datadog'",
        id="unknown-source",
    ),
    pytest.param(
        MINIMAL.replace("type: http", "type: carrier-pigeon"),
        "environments.production.checks[0]",
        "carrier-pigeon",
        id="unknown-check-type",
    ),
    pytest.param(
        MINIMAL.replace("listen: 127.0.0.1:8787", "listen: localhost"),
        "server.listen",
        "HOST:PORT",
        id="bad-listen",
    ),
    pytest.param(
        MINIMAL.replace("listen: 127.0.0.1:8787", "listen: 127.0.0.1:65536"),
        "server.listen",
        "port 65536 is not one of 0-65535",
        id="listen-port-65536",
    ),
    pytest.param(
        MINIMAL.replace("    rollback:\n", "    analysis:\n      confidence: 1.5\n    rollback:\n"),
        "environments.production.analysis.confidence",
        "less than 1",
        id="confidence-out-of-range",
    ),
    pytest.param(
        MINIMAL.replace('["tok-1234567890abcdef"]', '[""]'),
        "server.api_tokens",
        "must not be empty",
        id="empty-token",
    ),
    pytest.param(
        MINIMAL + "store:\n  url: mysql://x\n",
        "store.url",
        "sqlite:///",
        id="bad-store-url",
    ),
    pytest.param(  # was "valid", and `run` said "invalid literal for int() with base 10"
        MINIMAL + "store:\n  url: postgresql://pf:pw@db.internal:5432x/postflight\n",
        "store.url (line 22)",
        "a port in it is not a number from 1 to 65535",
        id="store-url-port-not-a-number",
    ),
    pytest.param(
        MINIMAL + "store:\n  url: postgresql://pf:pw@db1:5432,db2:99999/postflight\n",
        "store.url",
        "a port in it is not a number from 1 to 65535",
        id="store-url-port-out-of-range",
    ),
    pytest.param(  # was "valid": every probe then failed, the name not resolving
        MINIMAL.replace("base_url: http://127.0.0.1:9\n", 'base_url: "http://127.0.0 .1:9"\n'),
        "environments.production.base_url",
        "not a valid URL: its host has a space",
        id="base-url-host-with-a-space",
    ),
    pytest.param(
        MINIMAL.replace("max: 0.05", "max: lots"),
        "environments.production.rules[0].max",
        "'lots' is not a number",
        id="bound-not-a-number",
    ),
    pytest.param(
        with_load_check("duration: 40s"),
        "environments.production.checks[1].duration",
        "longer than this environment's interval (30s)",
        id="load-check-longer-than-the-interval",
    ),
    pytest.param(
        with_load_check("duration: 30s, warmup: 1s"),
        "environments.production.checks[1].warmup",
        "needs warmup 1s + duration 30s",
        id="load-check-warmup-cannot-fit",
    ),
]


def test_a_sentry_release_template_is_valid_and_names_the_release() -> None:
    text = MINIMAL.replace(
        "    rollback:\n",
        '    baseline: {sentry: {project: web, release: "web@{version}"}}\n    rollback:\n',
    )
    text += "providers:\n  sentry: {org: acme, token: sntrys_0123456789}\n"
    sentry = load_settings_text(text).environments["production"].baseline.sentry
    assert sentry is not None and sentry.release_name("v2") == "web@v2"


def test_a_load_check_as_long_as_the_interval_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its default warm-up is cut to fit the round (agent.windows.probing.fit_to_round)."""
    code, out = run_validate(tmp_path, with_load_check("duration: 30s"), capsys)
    assert code == 0, out


def test_a_load_check_too_slow_to_send_one_request_in_its_duration_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rate: 20/h` over `duration: 10s`: its first request is due after 3m, so it sent
    none and `postflight check` said "check did not finish within 9s" (in a round, every
    run was a failure of the target); validate-config said valid."""
    text = with_load_check("duration: 10s").replace("rate: 5/s", "rate: 20/h")
    assert error_lines(tmp_path, text, capsys) == [
        "environments.production.checks[1].rate (line 13): load check 'feed' at 20/h sends"
        " one request every 3m, longer than its duration (10s), so a run never ends: raise"
        " rate to at least 1/10s (6/m) or lengthen duration"
    ]
    code, out = run_validate(
        tmp_path, with_load_check("duration: 10s").replace("5/s", "6/m"), capsys
    )
    assert code == 0, out  # one request in 10s: enough to run


@pytest.mark.parametrize(("text", "path", "message"), BROKEN)
def test_broken_config_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, path: str, message: str
) -> None:
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2
    assert path in out
    assert message in out
    assert "Traceback" not in out


def test_errors_carry_the_file_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = MINIMAL.replace("interval: 30s", "interval: soon")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2
    line = text.splitlines().index("    interval: soon") + 1
    assert f"environments.production.interval (line {line})" in out


def test_every_error_is_listed_not_only_the_first(tmp_path: Path) -> None:
    text = MINIMAL.replace("interval: 30s", "interval: x").replace("max: 0.05", "max: y")
    with pytest.raises(ConfigError) as info:
        load_settings_text(text)
    paths = {p.path for p in info.value.problems}
    assert {"environments.production.interval", "environments.production.rules[0].max"} <= paths


RULE_ERRORS = (
    "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.1}\n"
    "      - {name: sentry-errors, source: sentry, metric: error_rate, max_increase: 50%}\n"
)
"""A rule named twice and a Sentry rule without a project, after MINIMAL's rule."""


@pytest.mark.parametrize(
    ("text", "also"),
    [
        (
            MINIMAL.replace("        max: 0.05\n", "        check: nope\n        max: 0.05\n"),
            ("rules[0].check", "names check 'nope'"),
        ),
        (with_load_check("duration: 5m"), ("checks[1].duration", "longer than this environment's")),
        (
            MINIMAL.replace("window: 10m", "window: 10s"),
            ("window", "window (10s) must be at least one interval (30s)"),
        ),
    ],
    ids=["misnamed-check", "load-beyond-the-interval", "window-below-the-interval"],
)
def test_an_environments_errors_of_every_kind_are_listed_in_one_pass(
    text: str, also: tuple[str, str]
) -> None:
    """A misnamed `check` or a load check longer than the interval, beside a rule named
    twice and a Sentry rule without a project: each was judged only once the errors judged
    before it were fixed (pydantic runs a whole-model validator only when every field is
    valid), so fixing one showed the next."""
    with pytest.raises(ConfigError) as info:
        load_settings_text(text.replace("        max: 0.05\n", "        max: 0.05\n" + RULE_ERRORS))
    found = {p.path: p.message for p in info.value.problems}
    at = "environments.production."
    assert also[1] in found[at + also[0]]
    assert "two rules are named 'probe-errors'" in found[at + "rules[1].name"]
    assert "set baseline.sentry.project" in found[at + "rules[2]"]


@pytest.mark.parametrize(
    "broken_checks",
    [
        "      - {name: api-health, type: http, path: /again}\n",  # a name given twice
        "      - {name: feed, type: load, path: /, rate: 5/s, duration: 5m}\n",  # too long
    ],
    ids=["check-named-twice", "load-beyond-the-interval"],
)
def test_a_misnamed_check_is_said_beside_its_checks_own_errors(broken_checks: str) -> None:
    """A check's own error leaves the checks out of what the rules are judged against
    (pydantic), and a rule's misnamed `check` was said only once it was fixed (review):
    read from the document too, said at once, once."""
    text = MINIMAL.replace("        path: /health\n", "        path: /health\n" + broken_checks)
    text = text.replace("        max: 0.05\n", "        check: nope\n        max: 0.05\n")
    with pytest.raises(ConfigError) as info:
        load_settings_text(text)
    said = [p.message for p in info.value.problems if p.path.endswith("rules[0].check")]
    assert len(said) == 1 and "names check 'nope'" in said[0]
    assert len(info.value.problems) == 2


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL.replace("source: checks", "source: sentri"),
        MINIMAL.replace("    rollback:\n", "    baseline: {sentri: {project: x}}\n    rollback:\n"),
    ],
    ids=["rule-source", "baseline-section"],
)
def test_a_mistyped_provider_is_one_error_not_also_an_unconfigured_one(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings_text(text)
    (problem,) = info.value.problems  # before (review): also "not configured", "needs …"
    assert "sentri" in problem.path + problem.message


def test_missing_file_is_an_error_not_an_empty_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["validate-config", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "file not found" in err


@pytest.mark.parametrize(("text", "said"), [(MINIMAL, "valid"), ("server: [\n", "invalid YAML")])
def test_a_dash_reads_the_configuration_from_standard_input(text: str, said: str) -> None:
    """`envsubst < t.yaml | postflight validate-config -`, as most tools read a `-`: it
    said `file not found: -`."""
    done = subprocess.run(
        [sys.executable, "-m", "agent", "validate-config", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout + done.stderr
    assert done.returncode == (0 if said == "valid" else 2), out
    assert out.startswith(f"(standard input): {'valid' if said == 'valid' else '1 configuration'}")
    assert said in out, out


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        ("server:\n\tlisten: x\n", "line 2, column 1", "indent with spaces"),
        ("server:\n  listen: a: b\n", "line 2, column 12", "quote a value that contains ': '"),
        ("server:\n  listen: [oops\n", "line 3, column 1", "close the list with ]"),
        ("server:\n  listen: 'oops\n", "line 3, column 1", "never closed"),
        ("server:\n  listen: x\n  oops\n  api: 1\n", "line 4, column 3", "needs ': '"),
        ("server:\n  listen: @x\n", "line 2, column 11", "quote values that start with @"),
        ("server:\n  api_tokens: [${TOKEN}]\n", "line 2, column 17", 'quote it: "${TOKEN}"'),
        ("a:\n  b: {c: 1, d: ${D:-x}}\n", "line 2, column 17", 'quote it: "${D:-…}"'),
    ],
    ids=[
        "tab",
        "colon-in-value",
        "open-list",
        "open-quote",
        "missing-colon",
        "reserved-char",
        "variable-in-flow-list",
        "variable-in-flow-map",
    ],
)
def test_invalid_yaml_gives_line_column_and_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str, hint: str
) -> None:
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2
    assert f"({where}): invalid YAML: " in out, out
    assert "; hint: " in out and hint in out, out
    assert "Traceback" not in out


def test_each_duplicate_key_is_an_error_at_its_second_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    production = MINIMAL[MINIMAL.index("  production:\n") :]
    text = (
        MINIMAL.replace("window: 10m", "window: 10m\n    window: 5m")
        .replace("interval: 30s", "interval: soon")
        .replace("environments:\n", "environments:\n  staging:\n    window: 1m\n")
        + production.replace("  production:", "  staging:")
        + "server:\n  listen: 127.0.0.1:9999\n"
    )
    lines = text.splitlines()

    def line(content: str, nth: int = 0) -> int:
        return [i for i, x in enumerate(lines, 1) if x == content][nth]

    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert (
        f"environments.production.window (line {line('    window: 5m')}):"
        f" duplicate key; first at line {line('    window: 10m')}"
    ) in out, out
    assert (
        f"environments.staging (line {line('  staging:', 1)}):"
        f" duplicate key; first at line {line('  staging:')}"
    ) in out, out
    assert f"server (line {line('server:', 1)}): duplicate key; first at line 1" in out, out
    assert "environments.production.interval (line " in out, out  # other errors still listed
    assert "Traceback" not in out


def test_a_duplicate_key_makes_an_otherwise_valid_config_invalid() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings_text(MINIMAL.replace("max: 0.05", "max: 0.05\n        max: 0.5"))
    assert [str(p) for p in info.value.problems] == [
        "environments.production.rules[0].max (line 18): duplicate key; first at line 17"
    ]


ANCHORED = (
    "x-http-check: &http-check\n"
    "  type: http\n"
    "  expect: {status: 200}\n"
    "x-unused: ${NEVER_SET}\n"
    + MINIMAL.replace(
        "      - name: api-health\n        type: http\n",
        "      - <<: *http-check\n        name: api-health\n",
    )
)


def test_top_level_x_keys_hold_anchors_as_in_docker_compose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`x-common: &common {…}` at the top level, merged in with `<<: *common`, was two
    errors, "x-common (line 1): unknown key": a file sharing its checks' fields through
    anchors (docker-compose's `x-` convention) could not be used. An `x-` key is the
    file's own: validate-config and run read it only through its anchors, and the JSON
    Schema an editor checks the file with allows it too."""
    import json

    import jsonschema
    import yaml

    code, out = run_validate(tmp_path, ANCHORED, capsys)
    assert code == 0, out
    assert "x-" not in out, out  # nothing said of them, an unset ${VAR} there included
    check = load_settings_text(ANCHORED).environments["production"].checks[0]
    assert isinstance(check, HttpCheckConfig)
    assert (check.name, check.type, check.expect.status) == ("api-health", "http", 200)
    root = Path(__file__).resolve().parents[2]
    schema = json.loads((root / "config" / "postflight.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(ANCHORED), schema)
    # a section's own `x-` key is still an unknown key: only the top level is the file's
    nested = MINIMAL.replace("    window: 10m", "    x-window: 10m")
    assert error_lines(tmp_path, nested, capsys) == [
        "environments.production.x-window (line 7): unknown key (did you mean window?)"
    ]


def test_a_short_api_token_is_a_warning_without_printing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The contract's reference config must validate with its ${VAR}s set: a pipeline's
    POSTFLIGHT_API_TOKEN=test-token is valid, and warned about."""
    text = MINIMAL.replace('["tok-1234567890abcdef"]', '["tok-1234567890abcdef", "hunter2-pw"]')
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 0, out
    assert "warning: server.api_tokens[1] (line " in out  # the token's own path
    assert "): has 10 characters; an API token shorter than 16 is guessable" in out
    assert "hunter2-pw" not in out
    one = MINIMAL.replace('["tok-1234567890abcdef"]', '["tok-1234567890abcdef", "x"]')
    code, out = run_validate(tmp_path, one, capsys)
    assert code == 0, out
    assert "): has 1 character; an API token shorter than 16 is guessable" in out


@pytest.mark.parametrize(
    ("listen", "links"),
    [
        ("0.0.0.0:8787", "http://0.0.0.0:8787"),
        ("[::]:8787", "http://[::]:8787"),
        (":::8787", "http://[::]:8787"),  # an IPv6 host without brackets is linked in them
        # port 0 is a free port taken at start, which the links name, never `:0`
        ("0.0.0.0:0", "http://0.0.0.0:<the port taken at start>"),
    ],
)
def test_listening_on_every_interface_without_a_public_url_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str, links: str
) -> None:
    """As the container image listens: the links would read http://0.0.0.0:8787/…."""
    text = MINIMAL.replace("listen: 127.0.0.1:8787", f"listen: '{listen}'")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 0, out
    assert "warning: server.listen (line " in out, out
    assert f"would read {links}/…, which no one can open" in out, out
    assert "set server.public_url" in out
    public = text.replace("  listen:", "  public_url: https://postflight.example.com\n  listen:")
    code, out = run_validate(tmp_path, public, capsys)
    assert code == 0 and "server.listen" not in out, out


def test_a_zero_interval_and_an_empty_token_are_named_by_their_own_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PF_EMPTY_TOKEN", "")
    text = MINIMAL.replace('["tok-1234567890abcdef"]', '["${PF_EMPTY_TOKEN}"]')
    text = text.replace("interval: 30s", "interval: 0s\n    background_interval: 0s")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2
    assert "server.api_tokens[0] (line " in out and "): must not be empty" in out, out
    assert ".interval (line " in out and ".background_interval (line " in out, out
    assert out.count("must be at least 10ms (got 0s)") == 2, out


def test_variables_expand_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_URL", "http://127.0.0.1:7")
    monkeypatch.delenv("PF_TEST_WINDOW", raising=False)
    text = MINIMAL.replace("base_url: http://127.0.0.1:9", "base_url: ${PF_TEST_URL}").replace(
        "window: 10m", "window: ${PF_TEST_WINDOW:-5m}"
    )
    settings = load_settings_text(text)
    env = settings.environments["production"]
    assert env.base_url == "http://127.0.0.1:7"
    assert env.window == 300.0


def test_secrets_are_secretstr_and_never_printed(tmp_path: Path) -> None:
    settings = load_settings_text(MINIMAL)
    rollback = settings.environments["production"].rollback
    assert rollback is not None and rollback.secret is not None
    assert "shh-secret" not in repr(settings)
    assert rollback.secret.get_secret_value() == "shh-secret"
    assert "shh-secret" in settings.secret_values()


def test_the_secret_parts_of_every_configured_url_are_secrets() -> None:
    """A receiver, a provider or a check's target may quote back a URL's password or
    token on its own, with no URL around it for the redactor to see: each part is a
    secret wherever the configuration's are hidden (a log, an alert, last_error)."""
    text = (
        MINIMAL.replace("path: /health\n", "path: /health?token=querytoken&page=onetwo\n").replace(
            "url: http://127.0.0.1:9998/rollback",
            "url: http://hook:hookpassword@127.0.0.1:9998/rollback?sig=signature%2Fpart",
        )
    ) + (
        "store:\n  url: postgresql://pf:pgpassword@db/pf\n"
        "providers:\n  prometheus:\n    url: http://prom:prompassword@127.0.0.1:9090\n"
        "alerting:\n  channels:\n"
        "    - url: json://alerts:channelpassword@127.0.0.1:8000/hooks/T0123ABCD/XyZ7wq\n"
    )
    secrets = set(load_settings_text(text).secret_values())
    found = {
        "pgpassword", "querytoken", "hookpassword", "signature%2Fpart", "signature/part",
        "prompassword", "channelpassword", "T0123ABCD", "XyZ7wq",
    }  # fmt: skip
    assert found <= secrets, found - secrets
    # the words around them are not: a URL's route, host and plain query values
    assert not {"onetwo", "hook", "alerts", "rollback", "127.0.0.1", "health", "hooks"} & secrets


def test_a_broken_config_never_prints_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server: 12\nenvironments: []\n")
    # both commands at once: each is a Python start that mostly waits on its imports' I/O
    commands = (["validate-config", str(path)], ["run", "--config", str(path)])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "agent", *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    said = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, stderr) in zip(procs, said, strict=True):
        assert proc.returncode == 2, stderr
        assert "Traceback" not in stderr
    assert "server" in said[0][1]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # an alias inside its own anchor: a mapping that contains itself (RecursionError)
        (
            MINIMAL.replace(
                "  listen: 127.0.0.1:8787\n", "  listen: 127.0.0.1:8787\n  x: *srv\n"
            ).replace("server:\n", "server: &srv\n"),
            "server.x (line 3): *srv is inside the &srv it names: a value that contains"
            " itself never ends (copy what is meant instead)",
        ),
        # keys YAML reads as a number, null or true at the top level (TypeError)
        (MINIMAL + "1: a\nnull: b\n", "null (line 22): unknown key"),
    ],
    ids=["recursive-alias", "keys-not-text"],
)
def test_a_config_python_cannot_take_as_keywords_is_said_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert said in out, out


def test_spec_example_validates_with_its_variables_set(example_env: dict[str, str]) -> None:
    spec = Path(__file__).resolve().parents[2] / "config" / "postflight.example.yaml"
    settings = load_settings(spec)
    production = settings.environments["production"]
    assert production.analysis.policy == "sequential"
    assert [c.name for c in production.checks] == ["api-health", "login-flow", "feed-latency"]
    assert production.rules[1].max == pytest.approx(0.3)  # 300ms
    assert production.rules[2].max_increase == pytest.approx(0.5)
    assert settings.environments["staging"].rollback is not None
    assert settings.environments["staging"].rollback.dry_run is True


def _without_defaults(node: Any) -> Any:
    """The document with every `${VAR:-default}` written `${VAR}`."""
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    if isinstance(node, str):
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-[^}]*\}", r"${\1}", node)
    return node


def _spec_example() -> Path:
    root = Path(__file__).resolve().parents[2]
    spec_path = root.parent / "shared" / "spec" / "postflight.example.yaml"
    if not spec_path.exists():
        pytest.skip(f"the shared spec is not beside this checkout ({spec_path})")
    return spec_path


def test_the_specs_example_validates_with_short_values_for_its_variables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contract section 6: the reference configuration validates with its ${VAR}s set,
    whatever values a pipeline (or an acceptance test) gives them."""
    for name in ("POSTFLIGHT_API_TOKEN", "SENTRY_AUTH_TOKEN", "NEW_RELIC_API_KEY"):
        monkeypatch.setenv(name, "test-token")
    monkeypatch.setenv("ROLLBACK_SECRET", "s")
    code, out = run_validate(tmp_path, _spec_example().read_text(), capsys)
    assert code == 0, out
    assert "server.api_tokens[0] (line 7): has 10 characters" in out  # a warning
    assert "test-token" not in out


def test_config_example_is_the_specs_but_for_local_defaults() -> None:
    """Ours differs from the contract's only in what `${VAR:-default}`s default to, and
    in documenting what the spec leaves to defaults: store retention (issue 9), Sentry's
    release name."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    ours = yaml.safe_load((root / "config" / "postflight.example.yaml").read_text())
    assert ours["store"].pop("retention") == {"rounds": "7d"}
    sentry = ours["environments"]["production"]["baseline"]["sentry"]
    assert sentry.pop("release") == "{version}"
    spec = yaml.safe_load(_spec_example().read_text())
    assert _without_defaults(ours) == _without_defaults(spec)


def test_the_contracts_own_example_still_validates_as_is(example_env: dict[str, str]) -> None:
    settings = load_settings(_spec_example())
    assert sorted(settings.environments) == ["production", "staging"]


def test_a_first_run_of_the_example_sends_nothing_off_the_machine(
    example_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only the secrets set, every URL the example configures is this machine's."""
    for name in ("PROD_URL", "STAGING_URL", "SENTRY_URL", "NEW_RELIC_API_URL", "PROMETHEUS_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("ROLLBACK_URL", "ONCALL_CHAT_URL", "ONCALL_EMAIL_URL", "POSTFLIGHT_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    root = Path(__file__).resolve().parents[2]
    settings = load_settings(root / "config" / "postflight.example.yaml")
    urls = [settings.providers.prometheus.url] if settings.providers.prometheus else []
    if settings.providers.sentry is not None:
        urls.append(settings.providers.sentry.base_url)
    if settings.providers.newrelic is not None:
        urls.append(settings.providers.newrelic.api_url)
    urls += [c.url.get_secret_value() for c in settings.alerting.channels]
    for env in settings.environments.values():
        urls.append(env.base_url)
        if env.rollback is not None:
            assert env.rollback.url is not None  # the example's rollbacks are webhooks
            urls.append(env.rollback.url)
    assert len(urls) == 9
    for url in urls:
        host = urlsplit(url).hostname
        assert host in ("127.0.0.1", "localhost"), url


def test_json_schema_is_generated_and_current() -> None:
    import json

    from agent.config_schema import config_schema

    root = Path(__file__).resolve().parents[2]
    stored = json.loads((root / "config" / "postflight.schema.json").read_text())
    assert stored == json.loads(json.dumps(config_schema())), (
        "config/postflight.schema.json is stale:"
        " run `postflight schema -o config/postflight.schema.json`"
    )


def test_postflight_schema_writes_the_stored_schema_byte_for_byte(tmp_path: Path) -> None:
    """The README: the schema is "generated from the settings models by `postflight
    schema`"; the command the message above names, run as a user runs it."""
    root = Path(__file__).resolve().parents[2]
    written = tmp_path / "schema.json"
    subprocess.run(
        [sys.executable, "-m", "agent", "schema", "-o", str(written)],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert written.read_bytes() == (root / "config" / "postflight.schema.json").read_bytes()


def test_the_example_validates_against_the_json_schema(example_env: dict[str, str]) -> None:
    import json

    import jsonschema
    import yaml

    root = Path(__file__).resolve().parents[2]
    schema = json.loads((root / "config" / "postflight.schema.json").read_text())
    from agent.settings_file import _expand

    raw = yaml.safe_load((root / "config" / "postflight.example.yaml").read_text())
    problems: list[Any] = []
    example = _expand(raw, (), os.environ, problems, {})  # `${VAR}` as the loader expands it
    assert not problems
    jsonschema.validate(example, schema)
    broken = dict(example, server={"listen": "x", "api_tokens": ["t"], "typo": 1})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_a_provider_rule_may_name_what_its_query_returns() -> None:
    text = (
        MINIMAL.replace(
            "      - name: probe-errors\n        source: checks\n        metric: error_rate\n"
            "        max: 0.05\n",
            "      - name: apm\n        source: newrelic\n        metric: latency_p95\n"
            "        nrql: SELECT percentile(duration, 95) FROM Transaction\n        max: 800ms\n",
        )
        + "providers:\n  newrelic: {account_id: 1, api_key: k3y-value}\n"
    )
    rule = load_settings_text(text).environments["production"].rules[0]
    assert rule.max == pytest.approx(0.8)
    assert rule.to_rule().metric == "latency_p95"


PROVIDER_RULE = (
    "      - name: probe-errors\n        source: checks\n        metric: error_rate\n"
    "        max: 0.05\n"
)
PROVIDERS = (
    "providers:\n  newrelic: {account_id: 1, api_key: k3y-value}\n"
    "  prometheus: {url: http://127.0.0.1:9}\n"
)


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        pytest.param(
            "      - name: apm\n        source: newrelic\n"
            "        query: SELECT count(*) FROM Transaction\n        max: 5\n",
            "environments.production.rules[0].query",
            "source newrelic takes nrql (NRQL), not query",
            id="newrelic-given-query",
        ),
        pytest.param(
            "      - name: prom\n        source: prometheus\n"
            "        nrql: sum(rate(http_requests_total[1m]))\n        max: 5\n",
            "environments.production.rules[0].nrql",
            "source prometheus takes query (PromQL), not nrql",
            id="prometheus-given-nrql",
        ),
        pytest.param(
            "      - name: apm\n        source: newrelic\n"
            "        nrql: SELECT count(*) FROM Transaction SINCE 1 hour ago\n        max: 5\n",
            "environments.production.rules[0].nrql",
            "must not contain SINCE or UNTIL",
            id="newrelic-nrql-with-since",
        ),
    ],
)
def test_a_provider_refuses_the_other_providers_query_key_at_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: str, path: str, message: str
) -> None:
    code, out = run_validate(tmp_path, MINIMAL.replace(PROVIDER_RULE, rule) + PROVIDERS, capsys)
    assert code == 2
    assert f"{path} (line" in out
    assert message in out


def test_each_provider_takes_its_own_query_key() -> None:
    rules = (
        "      - name: apm\n        source: newrelic\n"
        "        nrql: SELECT count(*) FROM Transaction\n        max: 5\n"
        "      - name: prom\n        source: prometheus\n"
        "        query: sum(rate(http_requests_total[1m]))\n        max: 5\n"
    )
    settings = load_settings_text(MINIMAL.replace(PROVIDER_RULE, rules) + PROVIDERS)
    apm, prom = (r.to_rule() for r in settings.environments["production"].rules)
    assert (apm.query_key, prom.query_key) == ("nrql", "query")


def test_errors_are_listed_in_the_files_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown top-level key near the top is read before an environment's error
    further down, as in the file (it came last: sections first, then the extras)."""
    text = MINIMAL.replace("environments:\n", "bogus: 1\nenvironments:\n").replace(
        "interval: 30s", "interval: 30 sec"
    )
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2
    assert out.index("bogus (line 4)") < out.index("environments.production.interval"), out


def test_a_rule_without_bounds_and_a_rollback_with_a_bad_url_say_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Contract §1: every error, each at its path. A rule with neither a bound nor a known
    metric said only the bound; a rollback whose `url` is not a URL hid that it has no
    `secret` (the model's check of two keys runs only once its fields are valid)."""
    text = MINIMAL.replace(
        "        metric: error_rate\n        max: 0.05\n", "        metric: error_ratez\n"
    )
    text = text.replace("      secret: shh-secret\n", "").replace(
        "http://127.0.0.1:9998/rollback", "ftp://127.0.0.1:9998/rollback"
    )
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2
    at = "environments.production."
    lines = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    expected = [
        (at + "rules[0] (line 14)", "give at least one bound"),
        (at + "rules[0].metric (line 16)", "metric must be one of error_rate"),
        (at + "rollback (line 17)", "target webhook needs secret"),
        (at + "rollback.url (line 18)", "not a URL"),
    ]
    for where, words in expected:
        said = [line for line in lines if line.startswith(where + ":") and words in line]
        assert len(said) == 1, (where, words, out)
    assert len(lines) == len(expected), out
    assert "4 configuration errors" in out


def test_the_check_of_a_rollback_s_keys_is_said_once_when_nothing_else_is_wrong() -> None:
    text = MINIMAL.replace("      secret: shh-secret\n", "")
    with pytest.raises(ConfigError) as info:
        load_settings_text(text)
    (problem,) = info.value.problems
    assert problem.path == "environments.production.rollback"
    assert problem.message == "target webhook needs secret"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "        metric: error_ratez\n        max: lots\n",
            {
                "rules[0].metric": "metric must be one of error_rate",
                "rules[0].max": "is not a number",
            },
        ),
        (
            "        metric: error_rate\n        min_samples: 0\n",
            {"rules[0]": "give at least one bound", "rules[0].min_samples": "must be at least 1"},
        ),
    ],
    ids=["metric-beside-a-bad-bound", "no-bound-beside-a-bad-key"],
)
def test_a_rules_checks_of_two_keys_are_said_beside_its_other_errors(
    rule: str, expected: dict[str, str]
) -> None:
    """Contract §1: validate-config prints every error. A checks rule's unknown metric
    beside `max: lots`, or a rule with no bound beside a bad `min_samples`, said only the
    field's error (the rule's own check of two keys runs once its fields are valid)."""
    text = MINIMAL.replace("        metric: error_rate\n        max: 0.05\n", rule)
    with pytest.raises(ConfigError) as info:
        load_settings_text(text)
    found = [(p.path, p.message) for p in info.value.problems]
    at = "environments.production."
    assert [path for path, _ in found] == [at + path for path in expected], found
    for (_, message), words in zip(found, expected.values(), strict=True):
        assert words in message, found


def test_an_unset_variable_is_said_beside_the_files_other_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contract §1: every error with its field path. An unset `${VAR}` was the only error
    said, the file's others hidden until it was set; what the value left out fails at its
    own key (an empty secret) is not said again."""
    monkeypatch.delenv("PF_UNSET_SECRET", raising=False)
    text = MINIMAL.replace("interval: 30s", "interval: soon").replace(
        "secret: shh-secret", "secret: ${PF_UNSET_SECRET}"
    )
    at = "environments.production."
    assert error_lines(tmp_path, text, capsys) == [
        f"{at}interval (line 8): 'soon' is not a duration; write it like 250ms, 30s, 10m or 1h",
        f"{at}rollback.secret (line 20): environment variable PF_UNSET_SECRET is not set",
    ]


def test_an_unset_variable_alone_is_still_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings_text(MINIMAL.replace("shh-secret", "${PF_UNSET_SECRET}"), env={})
    (problem,) = info.value.problems
    assert problem.path == "environments.production.rollback.secret"
    assert problem.message == "environment variable PF_UNSET_SECRET is not set"


SENTRY = (
    "providers:\n  sentry: {org: acme, token: tok-sentry}\n",
    "    baseline: {sentry: {project: web}}\n    rollback:\n",
)
"""MINIMAL's additions for a Sentry rule: the provider, and the environment's baseline."""


def broken(checks: str = "", rules: str = "", channels: str = "", sentry: bool = False) -> str:
    """MINIMAL with more checks, rules and alert channels after its own."""
    text = MINIMAL.replace("        path: /health\n", "        path: /health\n" + checks)
    text = text.replace("        max: 0.05\n", "        max: 0.05\n" + rules)
    if channels:
        text = text.replace("environments:\n", f"alerting:\n  channels:\n{channels}environments:\n")
    if sentry:
        text = text.replace("environments:\n", SENTRY[0] + "environments:\n")
        text = text.replace("    rollback:\n", SENTRY[1])
    return text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            broken(
                checks="      - {name: other, type: http, path: /x, timeout: soon}\n"
                "      - {name: api-health, type: http, path: /again}\n"
            ),
            {"checks[1].timeout": "not a duration", "checks[2].name": "two checks are named"},
        ),
        (
            broken(
                checks="      - {name: other, type: http, path: /x, timeout: soon}\n"
                "      - {name: feed, type: load, path: /, rate: 5/s, duration: 5m}\n"
            ),
            {"checks[1].timeout": "not a duration", "checks[2].duration": "longer than"},
        ),
        (
            broken(
                rules="      - {name: latency, source: checks, metric: latency_p95, max: slow}\n"
                "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.1}\n"
            ),
            {"rules[1].max": "not a duration", "rules[2].name": "two rules are named"},
        ),
        (
            broken(
                rules="      - {name: latency, source: checks, metric: latency_p95, max: slow}\n"
                "      - {name: sentry-errors, source: sentry, metric: latency, max: 1}\n",
                sentry=True,
            ),
            {
                "rules[1].max": "not a duration",
                "rules[2].metric": "metric must be one of error_count",
            },
        ),
        (
            broken(
                channels="    - {url: 'nosuchscheme://x', tags: [oncall]}\n"
                "    - {url: 'json://127.0.0.1:9/alerts', tags: oncall}\n"
            ),
            {"channels[0].url": "apprise cannot use", "channels[1].tags": "should be a list"},
        ),
        (
            broken(channels="    - {url: 'nosuchscheme://x', tags: oncall, extra: 1}\n"),
            {
                "channels[0].url": "apprise cannot use",
                "channels[0].tags": "should be a list",
                "channels[0].extra": "unknown key",
            },
        ),
    ],
    ids=[
        "check-named-twice",
        "load-beyond-the-interval",
        "rule-named-twice",
        "provider-rule",
        "unusable-channel",
        "unusable-channel-beside-its-own-keys",
    ],
)
def test_the_checks_across_a_lists_items_are_said_beside_another_items_error(
    text: str, expected: dict[str, str]
) -> None:
    """Contract §1: every error. Names given twice, a load check longer than the interval,
    a provider's judgement of its rule and a channel URL apprise cannot use were judged
    only once every item of their list was valid (pydantic validates a list's items
    first), so another check's bad `timeout`, another rule's bad bound or another
    channel's bad `tags` hid them until fixed."""
    with pytest.raises(ConfigError) as info:
        load_settings_text(text)
    found = {
        p.path.removeprefix("environments.production.").removeprefix("alerting."): p.message
        for p in info.value.problems
    }
    assert sorted(found) == sorted(expected), found
    for path, words in expected.items():
        assert words in found[path], found
    assert len(info.value.problems) == len(expected)


BARE = """\
server: {api_tokens: ["tok-1234567890abcdef"]}
providers:
  sentry: {org: acme, token: sntrys-token-value}
  newrelic: {account_id: 1, api_key: nrak-key-value}
  prometheus: {}
environments:
  production:
    base_url: http://127.0.0.1:9
    checks:
      - {name: api-health, type: http, path: /health}
      - {name: flow, type: smoke, steps: [{name: home}]}
      - {name: feed, type: load, rate: 5/s}
    rules: [{name: probe-errors, source: checks, metric: error_rate, max: 0.05}]
    baseline: {sentry: {project: web}}
    rollback: {url: http://127.0.0.1:9998/rollback, secret: shh-secret}
"""
"""A configuration that leaves every setting the README gives a default for unset."""

README_DEFAULTS: list[tuple[str, str, object]] = [
    ("`listen` (HOST:PORT, default `127.0.0.1:8787`;", "server.listen", "127.0.0.1:8787"),
    ("default `http://<listen>`", "server.base_url", "http://127.0.0.1:8787"),
    ("`ui` (default true", "server.ui", True),
    ("`view_ttl` (how long a link stays valid, default 168h,", "server.view_ttl", 168 * 3600.0),
    ("send what is due: default 8s, at most 10s", "server.shutdown_timeout", 8.0),
    ("`sqlite:///path` (embedded, WAL; the default;", "store.url", "sqlite:///./postflight.db"),
    ("a lease of `lease`, default 30s, at least 1s", "store.lease", 30.0),
    ("`rounds` (default `7d`)", "store.retention.rounds", 7 * 86400.0),
    ("`alerting.timeout` (default 5s)", "alerting.timeout", 5.0),
    ("`window` (default 15m", "environments.production.window", 900.0),
    ("`interval` (30s;", "environments.production.interval", 30.0),
    ("`lookback` (1h; more than 0s)", "environments.production.lookback", 3600.0),
    ("`background_interval` (30s;", "environments.production.background_interval", 30.0),
    ("`probes_per_round` (40)", "environments.production.probes_per_round", 40),
    ("`max_concurrency` (16:", "environments.production.max_concurrency", 16),
    ('default `"{version}"`', "environments.production.baseline.sentry.release", "{version}"),
    (
        "(`follow_redirects`, default true",
        "environments.production.checks.0.follow_redirects",
        True,
    ),
    ("`max_redirects`, default 10", "environments.production.checks.0.max_redirects", 10),
    ("`method` (default GET)", "environments.production.checks.0.method", "GET"),
    ("`timeout` (default 5s)", "environments.production.checks.0.timeout", 5.0),
    ("`verify_tls` (default true)", "environments.production.checks.0.verify_tls", True),
    ("`status` (default `2xx`:", "environments.production.checks.0.expect.status", "2xx"),
    (
        "`tls_expiry_warning_days` (default 14:",
        "environments.production.checks.0.tls_expiry_warning_days",
        14,
    ),
    ("`timeout` (default the check's)", "environments.production.checks.1.steps.0.timeout", None),
    ("`duration` (default 10s)", "environments.production.checks.2.duration", 10.0),
    ("`warmup` (default 1s)", "environments.production.checks.2.warmup", 1.0),
    ("`max_in_flight` (default 100:", "environments.production.checks.2.max_in_flight", 100),
    ("`max_error_rate` (default 1%)", "environments.production.checks.2.max_error_rate", 0.01),
    ("`sequential` (the default)", "environments.production.analysis.policy", "sequential"),
    ("consecutive rounds, default 3", "environments.production.analysis.failure_limit", 3),
    ("`evidence` (the default", "environments.production.analysis.pass_on", "evidence"),
    ("`min_samples` (default 1)", "environments.production.rules.0.min_samples", 1),
    ("`max_attempts` (default 8)", "environments.production.rollback.max_attempts", 8),
    ("`timeout` (default 10s)", "environments.production.rollback.timeout", 10.0),
    ("`backoff` (default 1s;", "environments.production.rollback.backoff", 1.0),
    ("`max_backoff` (default 60s;", "environments.production.rollback.max_backoff", 60.0),
    ("`sample_limit`, default 200:", "providers.sentry.sample_limit", 200),
    ("`max_points`, default 60:", "providers.prometheus.max_points", 60),
    ("`timeout` (default 10s: one whole fetch", "providers.sentry.timeout", 10.0),
    ("default half the `timeout`", "providers.prometheus.attempt_timeout", 5.0),
    ("`max_attempts` (default 3:", "providers.newrelic.max_attempts", 3),
    ("default 8, New Relic's 25)", "providers.sentry.max_in_flight", 8),
    ("default 8, New Relic's 25)", "providers.prometheus.max_in_flight", 8),
    ("default 8, New Relic's 25)", "providers.newrelic.max_in_flight", 25),
]
"""(what the README's configuration walkthrough says, where the setting is, its value)."""


@pytest.mark.parametrize(
    ("said", "path", "value"), README_DEFAULTS, ids=[p for _, p, _ in README_DEFAULTS]
)
def test_the_defaults_the_readme_states_are_the_codes(
    tmp_path: Path, said: str, path: str, value: object
) -> None:
    """Each default the README's walkthrough states, read from a file that leaves it unset
    by the loader `postflight run` uses: a default changed on one side only fails here."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    walkthrough = " ".join(readme.split("## How Postflight decides")[0].split())
    assert said in walkthrough, said  # as the README words it, line breaks aside
    config = tmp_path / "postflight.yaml"
    config.write_text(BARE)
    node: Any = load_settings(config)
    for part in path.split("."):
        if isinstance(node, dict):
            node = node[part]
        elif isinstance(node, list):
            node = node[int(part)]
        else:
            node = getattr(node, part)
    assert node == value


EVERY_README_KEY = """\
server:
  listen: 127.0.0.1:8787
  api_tokens: [abcdefghijklmnopqrstu]
  named_tokens: {alice: abcdefghijklmnopqrstuvw}
  public_url: https://postflight.internal
  ui: true
  view_secret: another-secret-value
  view_ttl: 168h
  shutdown_timeout: 8s
store:
  url: sqlite:///./postflight.db
  lease: 30s
  retention: {rounds: 7d, probe_summaries: 2h}
providers:
  sentry: {base_url: http://127.0.0.1:9000, org: acme, token: sntrys-abc, markers: true}
  newrelic:
    {api_url: http://127.0.0.1:9001/graphql, account_id: 1, api_key: NRAK-abc, markers: true}
  prometheus: {url: http://127.0.0.1:9090}
alerting:
  timeout: 5s
  channels:
    - {url: "json://127.0.0.1:9/x", tags: [oncall]}
environments:
  production:
    base_url: http://127.0.0.1:9
    window: 15m
    interval: 30s
    lookback: 1h
    background_interval: 30s
    baseline_url: http://127.0.0.1:10
    probes_per_round: 10
    checks:
      - name: api-health
        type: http
        path: /health
        follow_redirects: true
        max_redirects: 10
        timeout: 2s
        expect: {max_latency: 500ms}
    baseline:
      sentry: {project: web, environment: production, release: "web@{version}"}
      newrelic: {app_name: web, entity_guid: abc}
    analysis: {policy: threshold, failure_limit: 3, pass_on: no_failure}
    rules:
      - {name: e, source: checks, metric: error_rate, max: 0.05, min_samples: 10}
      - {name: l, source: checks, metric: latency_p95, max_increase: 50%}
      - {name: s, source: sentry, metric: error_rate, max: 0.05}
      - {name: p, source: prometheus, query: up, max: 1}
    rollback:
      url: http://127.0.0.1:9/rb
      secret: s3cret
      dry_run: false
      max_attempts: 8
      timeout: 10s
      backoff: 1s
      max_backoff: 60s
    alerts: {tags: [oncall]}
"""
"""Every key the README's configuration walkthrough names, each set to a valid value."""


def test_every_key_the_readme_walkthrough_names_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_validate(tmp_path, EVERY_README_KEY, capsys)
    assert code == 0, out
    assert "valid — environments: production (1 check, 4 rules, threshold)" in out, out
    assert "warning" not in out, out


README_EXAMPLE_FILES = [
    """\
server:
  listen: 127.0.0.1:8787
  api_tokens: ["tok-1234567890abcdef"]
environments:
  production:
    base_url: http://127.0.0.1:9
    window: 10m
    lookback: 1h
    interval: 30 sec
    checks:
      - name: api-health
        type: http
        path: /health
    rules:
      - name: probe-errors
        source: checks
        max: lots
        metric: error_rate
    rollback: {url: http://127.0.0.1:9998/rollback, secret: shh-secret}
""",
    "server:\n\tlisten: 127.0.0.1:8787\n",
]
"""Files that hold the mistakes of the README's two example outputs, at their lines."""


def readme_error_examples() -> list[str]:
    """The walkthrough's example outputs of validate-config (its unlabelled blocks)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    walkthrough = readme.split("\n## Configuration walkthrough\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"\n *```\n(.*?)\n *```", walkthrough, re.S)
    return [textwrap.dedent(block) for block in blocks]


@pytest.mark.parametrize("index", [0, 1], ids=["two-errors", "broken-yaml"])
def test_the_readmes_example_error_outputs_are_what_validate_config_prints(
    tmp_path: Path, index: int
) -> None:
    """Each as the README shows it, line for line, from `postflight validate-config
    postflight.yaml` on a file with those mistakes; exit 2."""
    examples = readme_error_examples()
    assert len(examples) == 2, examples
    (tmp_path / "postflight.yaml").write_text(README_EXAMPLE_FILES[index])
    done = subprocess.run(
        [sys.executable, "-m", "agent", "validate-config", "postflight.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout + done.stderr == examples[index] + "\n"


def test_a_misspelt_required_key_is_one_error_not_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Contract §1: one clear message per error. A required key misspelt (`nmae` for a
    rule's `name`) was said twice, `required, but missing` at `name` and `unknown key (did
    you mean name?)` at `nmae`: one slip, said once, by the key as written."""
    text = MINIMAL.replace("      - name: probe-errors\n", "      - nmae: probe-errors\n")
    assert error_lines(tmp_path, text, capsys) == [
        "environments.production.rules[0].nmae (line 14): unknown key (did you mean name?)"
    ]
    # a required key missing with no near miss beside it is still said missing
    gone = MINIMAL.replace("      - name: probe-errors\n", "      - zzz: probe-errors\n")
    said = error_lines(tmp_path, gone, capsys)
    assert any("rules[0].name (line 14): required, but missing" in s for s in said), said


def _laughs(depth: int) -> str:
    """MINIMAL with a YAML alias bomb ("billion laughs") under `x-` keys: nine of nine
    of … nine strings, 9**depth values from a dozen short lines."""
    lines = ['x-l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x-l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, depth)]
    return MINIMAL + "\n".join(lines) + "\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("depth", [6, 9])
def test_aliases_that_expand_past_any_configuration_are_refused_at_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    """An alias of an alias of … (the "billion laughs" YAML) is a dozen lines that each
    walk of the document expanded: 9**6 values took validate-config 10 s and 139 MB, and
    9**8 more memory than the machine had (a `validate-config` step in CI, fed a pull
    request's config, never ended). Counted before any walk, a document whose aliases
    expand it past what a configuration holds is refused, naming the line."""
    code, out = run_validate(tmp_path, _laughs(depth), capsys)
    assert code == 2, out
    # the first value past the bound: x-l5, 9**6 strings (x-l4 holds 9**5)
    line = MINIMAL.count("\n") + 6
    said = f"x-l5 (line {line}): with its aliases this value expands to 531,441 values"
    assert said in out, out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("depth", [900, 5000])
def test_a_document_nested_past_any_configuration_is_refused_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    """`[[[[…]]]]` 900 deep read (libyaml takes 1000 levels) and then overflowed Python's
    stack in the walks of the document; 5000 deep, libyaml refused it and the pure-Python
    parser it fell back on overflowed: a RecursionError traceback, exit 1, from
    `validate-config`, `check` and `run`. Refused at its line, exit 2."""
    text = MINIMAL + "x-deep: " + "[" * depth + "]" * depth + "\n"
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert "Traceback" not in out and "RecursionError" not in out, out
    line = MINIMAL.count("\n") + 1
    assert f"(line {line}" in out and "nested" in out and "a few" in out, out


@pytest.mark.timeout(60)
def test_defaults_nested_past_any_configuration_are_an_error_at_their_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`${A:-${A:-${A:-…}}}` 3000 deep overflowed the stack reading its defaults: a
    RecursionError traceback, exit 1. A default may hold a reference (`${A:-${B:-x}}`);
    one nested past any meant is an error at its field."""
    nested = "${PF_UNSET_X:-" * 3000 + "http://127.0.0.1:9" + "}" * 3000
    text = MINIMAL.replace("base_url: http://127.0.0.1:9", f'base_url: "{nested}"')
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert "environments.production.base_url (line 6): " in out, out
    assert "nest" in out and "Traceback" not in out, out
    shallow = "${PF_UNSET_X:-" * 3 + "http://127.0.0.1:9" + "}" * 3
    text = MINIMAL.replace("base_url: http://127.0.0.1:9", f'base_url: "{shallow}"')
    assert run_validate(tmp_path, text, capsys)[0] == 0


@pytest.mark.timeout(60)
def test_an_override_whose_json_nests_past_any_configuration_is_an_error_at_its_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`POSTFLIGHT__SERVER__API_TOKENS='[[[…]]]'` 5000 deep overflowed the stack reading
    its JSON: a RecursionError traceback, exit 1. An error naming the variable, exit 2."""
    monkeypatch.setenv("POSTFLIGHT__SERVER__API_TOKENS", "[" * 5000 + "]" * 5000)
    code, out = run_validate(tmp_path, MINIMAL, capsys)
    assert code == 2, out
    said = "server.api_tokens (from $POSTFLIGHT__SERVER__API_TOKENS): its JSON nests more than"
    assert said in out and "Traceback" not in out, out
