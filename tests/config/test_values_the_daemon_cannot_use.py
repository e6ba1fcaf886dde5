"""Values that used to validate and then fail in the running daemon (a traceback, a 500,
a window never judged), and errors that were reported one at a time or at the model
instead of the key to fix: each is now a configuration error at its own path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.settings_file import ConfigError, load_config_text, load_settings_text
from common.durations import format_bound, format_duration, parse_duration
from tests.config.test_validate_config import MINIMAL, run_validate


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_settings_text(text)
    return {p.path: p.message for p in info.value.problems}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://host:abc", "port can't be converted"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://127.0.0.1:0", "port 0"),
    ],
)
def test_a_url_the_clients_cannot_use_is_refused_at_its_path(url: str, why: str) -> None:
    found = problems(MINIMAL.replace("base_url: http://127.0.0.1:9", f'base_url: "{url}"'))
    assert why in found["environments.production.base_url"]
    found = problems(MINIMAL.replace("url: http://127.0.0.1:9998/rollback", f'url: "{url}"'))
    assert why in found["environments.production.rollback.url"]


def test_a_url_error_does_not_quote_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.0.0.1:99999/hook?token=tok-s3cr3t-value"
    text = MINIMAL.replace("url: http://127.0.0.1:9998/rollback", f'url: "{url}"')
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2 and "environments.production.rollback.url" in out
    assert "tok-s3cr3t-value" not in out


CHANNELS = """\
alerting:
  channels:
    - url: "json://127.0.0.1:9/ok"
    - url: "{bad}"
"""


@pytest.mark.parametrize("bad", ["not a url", "nosuchscheme://user:pw@host", "json://"])
def test_an_apprise_url_apprise_cannot_use_is_a_config_error(bad: str) -> None:
    found = problems(MINIMAL + CHANNELS.format(bad=bad))
    assert list(found) == ["alerting.channels[1].url"]
    assert "apprise cannot use this" in found["alerting.channels[1].url"]


def test_an_apprise_url_error_gives_apprise_s_reason_without_the_urls_pieces() -> None:
    """`from=not-an-address`: "unknown scheme or missing parts" alone left the user to guess which
    part; apprise's own reason (logged, but validate-config configures no logging) is
    said, with every piece of the URL hidden."""
    bad = "mailto://127.0.0.1:8025?from=not-an-address&to=oncall@example.com"
    message = problems(MINIMAL + CHANNELS.format(bad=bad))["alerting.channels[1].url"]
    assert message.startswith("apprise cannot use this mailto:// URL: Invalid ~From~ email")
    slack = "slack://T0000SECRET/B0000SECRET/SECRETXOXB-abc_def"
    message = problems(MINIMAL + CHANNELS.format(bad=slack))["alerting.channels[1].url"]
    assert "Token" in message, message
    for piece in ("T0000SECRET", "B0000SECRET", "SECRETXOXB-abc_def", "not-an-address"):
        assert piece not in message


def test_a_channel_url_apprise_takes_with_a_part_dropped_is_a_warning() -> None:
    """`to=oncall` (no domain): apprise drops the recipient, takes the URL and mails the
    sender instead, so on-call got nothing and validate-config said valid alone."""
    bad = "mailto://127.0.0.1:8025?from=pf@example.com&to=oncall-team"
    loaded = load_config_text(MINIMAL + CHANNELS.format(bad=bad), env={})
    said = {w.path: w.message for w in loaded.warnings}
    assert said["alerting.channels[1].url"] == (
        "apprise: Dropped invalid To email (***) specified."
    ), said
    assert "alerting.channels[0].url" not in said


def test_apprise_never_logs_a_piece_of_a_channel_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """apprise quotes a Slack URL's parts one by one ("An invalid Slack (third) Token
    (…) was specified"): a whole-value redactor missed them."""
    bad = "slack://T0000SECRET/B0000SECRET/SECRETXOXB-abc_def"
    caplog.set_level(logging.DEBUG)
    code, out = run_validate(tmp_path, MINIMAL + CHANNELS.format(bad=bad), capsys)
    assert code == 2 and "alerting.channels[1].url" in out
    logged = caplog.text + out
    assert "apprise" in caplog.text  # it did speak, redacted
    for piece in ("T0000SECRET", "B0000SECRET", "SECRETXOXB-abc_def"):
        assert piece not in logged


def test_the_notifier_keeps_apprise_from_logging_url_pieces(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from agent.metrics import Metrics
    from agent.settings import AlertChannel
    from alerting.notifier import Notifier

    caplog.set_level(logging.DEBUG)
    url = "slack://T0000SECRET/B0000SECRET/SECRETXOXB-abc_def"
    Notifier([AlertChannel(url=url)], timeout=1.0, redact=str, metrics=Metrics())
    assert "apprise" in caplog.text or "alert channel 0" in caplog.text
    for piece in ("T0000SECRET", "B0000SECRET", "SECRETXOXB-abc_def"):
        assert piece not in caplog.text


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("interval: 30s", "interval: inf", "environments.production.interval"),
        ("window: 10m", "window: .inf", "environments.production.window"),
        ("max: 0.05", "max: .nan", "environments.production.rules[0].max"),
        ("max: 0.05", "max: .inf", "environments.production.rules[0].max"),
    ],
)
def test_infinity_and_nan_are_refused(old: str, new: str, path: str) -> None:
    found = problems(MINIMAL.replace(old, new))
    assert path in found, found
    assert "finite" in found[path]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (".nan", "NaN"),
        (".inf", "infinity"),
        ("!!timestamp 2024-01-01", "a date"),
        ("!!binary aGk=", "bytes"),
        ("!!set {a}", "a set"),
    ],
)
def test_a_value_no_json_holds_in_a_checks_json_is_refused(value: str, said: str) -> None:
    """`expect: {json: {status: .nan}}` validated and failed every probe (NaN equals
    nothing: a healthy deploy rolled back); a date, bytes or a set (YAML's explicit tags)
    validated and crashed every run, "Object of type date is not JSON serializable", in a
    response's expectation and in a smoke step's body alike."""
    text = MINIMAL.replace(
        "        path: /health\n",
        f"        path: /health\n        expect: {{json: {{status: {value}}}}}\n"
        "      - {name: flow, type: smoke, steps: [{name: s, method: POST, path: /x,"
        f" json: {{a: [1, {value}]}}}}]}}\n",
    )
    found = problems(text)
    assert set(found) == {
        "environments.production.checks[0].expect.json",
        "environments.production.checks[1].steps[0].json",
    }, found
    for message in found.values():
        assert message.startswith(f"{said} is no JSON value"), message


def test_a_view_ttl_of_infinity_is_refused() -> None:
    """It validated, then every registration answered 500 (OverflowError)."""
    text = MINIMAL.replace(
        "  listen: 127.0.0.1:8787\n", "  listen: 127.0.0.1:8787\n  view_ttl: inf\n"
    )
    assert "finite" in problems(text)["server.view_ttl"]


def test_a_view_ttl_of_nothing_is_refused() -> None:
    """`view_ttl: 0s` validated, and every `?view=` link the agent gave (in alerts, in
    `register`'s answer) had expired as it was made: the README's "how long a link stays
    valid" has no use for none."""
    text = MINIMAL.replace(
        "  listen: 127.0.0.1:8787\n", "  listen: 127.0.0.1:8787\n  view_ttl: 0s\n"
    )
    assert problems(text).get("server.view_ttl") == "must be more than 0s", problems(text)


def test_a_view_ttl_longer_than_a_link_can_carry_is_refused() -> None:
    """A link carries its expiry in at most 12 digits: `view_ttl: 99999999d` validated,
    and every `?view=` link the agent gave was refused as it was opened."""
    text = MINIMAL.replace(
        "  listen: 127.0.0.1:8787\n", "  listen: 127.0.0.1:8787\n  view_ttl: 99999999d\n"
    )
    assert problems(text).get("server.view_ttl") == "must be at most 3650d (got 99999999d)"


PROVIDERS_MISSING = MINIMAL.replace(
    "        max: 0.05\n",
    "        max: 0.05\n"
    "      - {name: apm, source: newrelic, nrql: 'SELECT count(*) FROM Transaction', max: 5}\n"
    "      - {name: five, source: prometheus, query: 'sum(up)', max: 5}\n",
).replace("    rollback:\n", "    baseline: {sentry: {project: web}}\n    rollback:\n")


def test_every_rule_naming_an_unconfigured_provider_is_reported_at_its_source() -> None:
    found = problems(PROVIDERS_MISSING)
    assert (
        "providers.newrelic is not configured" in found["environments.production.rules[1].source"]
    )
    assert (
        "providers.prometheus is not configured" in found["environments.production.rules[2].source"]
    )
    assert "needs providers.sentry" in found["environments.production.baseline.sentry"]


def test_rule_and_name_problems_are_reported_at_the_key_to_fix() -> None:
    text = MINIMAL.replace("metric: error_rate", "metric: error_ratio")
    assert "metric must be one of" in problems(text)["environments.production.rules[0].metric"]
    twice = MINIMAL.replace(
        "        max: 0.05\n",
        "        max: 0.05\n"
        "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.1}\n"
        "      - {name: lat, source: checks, check: nope, metric: latency_p95, max: 1s}\n",
    )
    found = problems(twice)
    assert "two rules are named 'probe-errors'" in found["environments.production.rules[1].name"]
    assert "names check 'nope'" in found["environments.production.rules[2].check"]


@pytest.mark.parametrize("value", ["${ROLLBACK_SECRET", "pre-${}-post", "${1BAD}"])
def test_a_broken_variable_reference_is_an_error_not_a_literal_secret(value: str) -> None:
    found = problems(MINIMAL.replace("secret: shh-secret", f'secret: "{value}"'))
    assert "starts no ${NAME} reference" in found["environments.production.rollback.secret"]


def test_a_literal_dollar_brace_is_written_with_two_dollars() -> None:
    settings = load_settings_text(MINIMAL.replace("secret: shh-secret", 'secret: "a$${b"'))
    rollback = settings.environments["production"].rollback
    assert rollback is not None and rollback.secret is not None
    assert rollback.secret.get_secret_value() == "a${b"


def test_a_check_timeout_of_zero_is_refused() -> None:
    text = MINIMAL.replace(
        "        path: /health\n", "        path: /health\n        timeout: 0s\n"
    )
    assert "more than 0s" in problems(text)["environments.production.checks[0].timeout"]


ZERO_TIMEOUTS = [
    # aiohttp reads a total of 0 as no timeout at all: a hung webhook held the rollback
    (
        MINIMAL.replace("secret: shh-secret", "secret: shh-secret\n      timeout: 0"),
        "environments.production.rollback.timeout",
    ),
    # validate-config said valid, and the notifier refused 0s as run started
    (MINIMAL + "alerting:\n  timeout: 0s\n", "alerting.timeout"),
    (
        MINIMAL + "integrations:\n  github: {token: gh-token, timeout: 0}\n",
        "integrations.github.timeout",
    ),
    (
        MINIMAL + "integrations:\n  vercel: {token: v-token, timeout: 0}\n",
        "integrations.vercel.timeout",
    ),
    (
        MINIMAL.replace(
            "      - name: api-health\n        type: http\n        path: /health\n",
            "      - name: api-health\n        type: smoke\n"
            "        steps: [{name: one, path: /health, timeout: 0s}]\n",
        ),
        "environments.production.checks[0].steps[0].timeout",
    ),
]


@pytest.mark.parametrize(("text", "path"), ZERO_TIMEOUTS)
def test_a_timeout_of_zero_is_refused_wherever_it_is(text: str, path: str) -> None:
    assert problems(text).get(path) == "must be more than 0s", problems(text)


@pytest.mark.parametrize("value", ["1h", "11s", "0s"])
def test_a_stop_may_take_no_longer_than_the_contracts_ten_seconds(value: str) -> None:
    text = MINIMAL.replace(
        "  listen: 127.0.0.1:8787\n", f"  listen: 127.0.0.1:8787\n  shutdown_timeout: {value}\n"
    )
    assert "server.shutdown_timeout" in problems(text)


def test_an_environments_naming_and_timing_problems_are_reported_together() -> None:
    """Two checks of one name and a load check longer than the interval: both at once
    (the second was only shown once the first was fixed)."""
    text = MINIMAL.replace(
        "        path: /health\n",
        "        path: /health\n"
        "      - {name: api-health, type: http, path: /again}\n"
        "      - {name: feed, type: load, path: /, rate: 5/s, duration: 5m}\n",
    )
    found = problems(text)
    assert "two checks are named 'api-health'" in found["environments.production.checks[1].name"]
    assert "longer than" in found["environments.production.checks[2].duration"]


def test_a_rule_on_an_unconfigured_provider_is_reported_beside_field_errors() -> None:
    """The provider check is of the whole configuration, which pydantic runs only when
    every field is valid: beside a mistyped interval it was not said at all, and fixing
    the interval showed it next. Read from the document too, it is said at once, once."""
    text = MINIMAL.replace("interval: 30s", "interval: 30 sec").replace(
        "        max: 0.05\n",
        "        max: 0.05\n"
        "      - {name: p, source: prometheus, query: up, max: 1}\n"
        "    baseline: {sentry: {project: web}}\n",
    )
    found = problems(text)
    assert "is not a duration" in found["environments.production.interval"]
    at = "environments.production."
    assert found[at + "rules[1].source"] == (
        "rule 'p' uses source 'prometheus' but providers.prometheus is not configured"
    )
    assert found[at + "baseline.sentry"] == "needs providers.sentry"
    valid_fields = text.replace("interval: 30 sec", "interval: 30s")  # the model's own check
    assert set(problems(valid_fields)) == {at + "rules[1].source", at + "baseline.sentry"}


def test_cross_section_problems_are_reported_together() -> None:
    """A gate after no environment, a rule on a provider that is not configured and
    probe summaries kept shorter than the lookback: three sections' problems at once
    (each was only shown once the one before it was fixed)."""
    text = MINIMAL.replace(
        "environments:\n", "store: {retention: {probe_summaries: 1m}}\nenvironments:\n"
    ).replace(
        "        max: 0.05\n",
        "        max: 0.05\n"
        "      - {name: p, source: prometheus, query: up, max: 1}\n"
        "    gate: {after: nowhere}\n",
    )
    found = problems(text)
    assert "no environment 'nowhere'" in found["environments.production.gate.after"], found
    assert "not configured" in found["environments.production.rules[1].source"], found
    assert "lookback" in found["store.retention.probe_summaries"], found


def test_cross_section_problems_are_reported_beside_field_errors() -> None:
    """The gate, integration and retention checks of the whole configuration, which
    pydantic runs only when every field is valid: beside a mistyped interval they were not
    said at all. Read from the parts that validate on their own, said at once, once."""
    text = (
        MINIMAL.replace("interval: 30s", "interval: 30 sec")
        .replace("environments:\n", "store: {retention: {probe_summaries: 1m}}\nenvironments:\n")
        .replace(
            "        max: 0.05\n",
            "        max: 0.05\n    gate: {after: nowhere}\n",
        )
    )
    found = problems(text)
    at = "environments.production."
    assert "is not a duration" in found[at + "interval"], found
    assert found[at + "gate.after"] == "no environment 'nowhere'", found
    assert "needs sources.github" in found[at + "gate"], found
    assert "lookback" in found["store.retention.probe_summaries"], found
    valid_fields = text.replace("interval: 30 sec", "interval: 30s")  # the model's own check
    assert set(problems(valid_fields)) == set(found) - {at + "interval"}


def test_a_store_key_error_does_not_hide_the_retention_check_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README: checks of two keys (probe summaries kept shorter than a lookback) are
    listed in the same pass as the errors of single keys. A `store.lease` below 1s hid the
    retention's: the check read the whole `store` section, which did not validate."""
    text = MINIMAL.replace(
        "environments:\n", "store: {lease: 0.5s, retention: {probe_summaries: 1m}}\nenvironments:\n"
    )
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert "store.lease (line " in out and "must be at least 1s (got 500ms)" in out, out
    assert "store.retention.probe_summaries (line " in out, out
    assert "would be gone before environments.production.lookback (1h)" in out, out
    assert "2 configuration errors" in out, out


def test_an_environment_part_that_is_itself_invalid_raises_no_cross_section_guess() -> None:
    """A gate beside sources that do not validate (a repository not owner/name) is not
    said to need sources.github: only the sources' own error is."""
    text = MINIMAL.replace(
        "        max: 0.05\n",
        "        max: 0.05\n"
        "    sources: {github: {repository: no-slash, environment: production}}\n"
        "    gate: {after: production}\n",
    )
    found = problems(text)
    assert any(path.startswith("environments.production.sources.github") for path in found), found
    assert "environments.production.gate" not in found, found


def test_a_cross_section_problem_in_an_environment_named_with_dots_is_at_its_own_line() -> None:
    text = MINIMAL.replace("  production:\n", "  prod.eu:\n").replace(
        "        max: 0.05\n", "        max: 0.05\n    gate: {after: nowhere}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings_text(text)
    (problem,) = [p for p in info.value.problems if p.loc[-1] == "after"]
    assert problem.loc == ("environments", "prod.eu", "gate", "after")
    assert problem.line == text.splitlines().index("    gate: {after: nowhere}") + 1


def test_an_environment_named_by_a_number_is_an_error_beside_a_cross_section_one() -> None:
    """YAML reads `2024:` as a number, not a name: that key's error is listed beside a gate
    that follows no environment (reading the gate's path back to its environment compared
    the names' lengths, and a number has none: a traceback instead of the errors)."""
    text = MINIMAL.replace("        max: 0.05\n", "        max: 0.05\n    gate: {after: nowhere}\n")
    found = problems(text + "  2024:\n    base_url: http://127.0.0.1:9\n")
    assert found["environments.production.gate.after"] == "no environment 'nowhere'", found
    assert "valid string" in found["environments[2024]"], found


def test_a_follow_up_without_its_name_is_named_by_its_place_when_it_lacks_a_secret() -> None:
    """Read from the document beside the follow-up's own error: `then[0]`, not `then None`."""
    text = MINIMAL.replace(
        "      secret: shh-secret\n", "      then: [{url: 'http://127.0.0.1:9'}]\n"
    )
    text = text.replace("      url: http://127.0.0.1:9998/rollback\n", "      target: vercel\n")
    found = problems(text)
    assert "required" in found["environments.production.rollback.then[0].name"], found
    assert found["environments.production.rollback"] == (
        "then[0] needs a secret (or set rollback.secret)"
    ), found


def test_a_url_without_http_and_a_section_that_is_not_a_mapping_are_said_in_words() -> None:
    """Not the regular expression of the URL's shape, nor a model's class name."""
    text = MINIMAL.replace("base_url: http://127.0.0.1:9", "base_url: ftp://127.0.0.1:9")
    text = text.replace(
        "    rollback:\n      url: http://127.0.0.1:9998/rollback\n      secret: shh-secret\n",
        "    rollback: http://127.0.0.1:9998/rollback\n",
    )
    found = problems(text)
    url = found["environments.production.base_url"]
    assert "http:// or https://" in url and "pattern" not in url, url
    rollback = found["environments.production.rollback"]
    assert "a mapping" in rollback and "RollbackSettings" not in rollback, rollback


TOKEN_BESIDE_URL_CREDENTIALS = [
    (
        "providers:\n  sentry: {base_url: 'https://u:pw-in-url@sentry.local', org: acme,"
        " token: sntry-token}\n",
        "providers.sentry.base_url",
    ),
    (
        "providers:\n  prometheus: {url: 'http://u:pw-in-url@prom.local:9090',"
        " bearer_token: prom-token}\n",
        "providers.prometheus.url",
    ),
    (
        "integrations:\n  github: {api_url: 'https://u:pw-in-url@github.local', token: gh-token}\n",
        "integrations.github.api_url",
    ),
    (
        "integrations:\n  vercel: {api_url: 'https://u:pw-in-url@vercel.local', token: v-token}\n",
        "integrations.vercel.api_url",
    ),
]


@pytest.mark.parametrize(("section", "path"), TOKEN_BESIDE_URL_CREDENTIALS)
def test_a_url_with_a_password_beside_a_token_is_refused_at_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, path: str
) -> None:
    """The client sends the token as `Authorization: Bearer`; aiohttp then refuses the
    URL's user:password (ValueError) at every request, which the daemon said as "unexpected
    failure talking to Sentry" each round while validate-config had said "valid"."""
    code, out = run_validate(tmp_path, MINIMAL + section, capsys)
    assert code == 2, out
    assert (
        f"{path} (line {len(MINIMAL.splitlines()) + 2}): a user:password in this URL"
        " cannot be sent beside the token (both are the Authorization header): remove it"
    ) in out
    assert "pw-in-url" not in out


def test_a_prometheus_url_with_a_password_and_no_bearer_token_is_basic_auth() -> None:
    text = MINIMAL + "providers:\n  prometheus: {url: 'http://u:pw@prom.local:9090'}\n"
    assert load_settings_text(text).providers.prometheus is not None


def test_a_window_longer_than_the_api_takes_is_refused_at_the_window() -> None:
    """A window of 99999999999999d validated, and each registration without its own
    `window` then answered 500 (its end cannot be a date); the API refuses a `window`
    over 7d (422), and the configured default is bound alike."""
    from agent.api.models import MAX_WINDOW_S

    found = problems(MINIMAL.replace("window: 10m", "window: 99999999999999d"))
    assert found == {"environments.production.window": "must be at most 7d (got 99999999999999d)"}
    assert MAX_WINDOW_S == 7 * 86400
    text = MINIMAL.replace("window: 10m", "window: 7d")
    assert load_settings_text(text).environments["production"].window == MAX_WINDOW_S


@pytest.mark.parametrize("lease", ["0", "0s", "500ms"])
def test_a_store_lease_under_a_second_is_refused(lease: str) -> None:
    """`lease: 0` validated; a scheduled window then renewed its lease in a loop without
    a pause (a third of a core, the SQLite WAL growing 1 MB a second), and every claim
    lapsed as it was made."""
    found = problems(f"store:\n  lease: {lease}\n" + MINIMAL)
    assert found == {
        "store.lease": f"must be at least 1s (got {format_duration(parse_duration(lease))})"
    }


@pytest.mark.parametrize(
    ("window", "said"),
    [
        ("99999999999999d", "must be at most 7d (got 99999999999999d)"),
        ("8d", "must be at most 7d (got 8d)"),
        ("170h", "must be at most 7d (got 170h)"),
    ],
)
def test_a_limit_is_said_in_the_unit_the_user_writes(window: str, said: str) -> None:
    """The README and the API speak of a 7d window; the limit read `at most 168h` (and
    `got 192h` for 8d), numbers to convert before they can be compared."""
    assert problems(MINIMAL.replace("window: 10m", f"window: {window}")) == {
        "environments.production.window": said
    }


@pytest.mark.parametrize(
    ("seconds", "written"),
    [
        (7 * 86400, "7d"),
        (86400 * 1.5, "36h"),
        (3600, "1h"),
        (90, "90s"),
        (60, "1m"),
        (0.01, "10ms"),
        (1.5, "1500ms"),
        (0, "0s"),
    ],
)
def test_a_bound_is_written_in_its_largest_whole_unit(seconds: float, written: str) -> None:
    assert format_bound(seconds) == written


@pytest.mark.parametrize("lookback", ["0s", "0"])
def test_a_lookback_of_nothing_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lookback: str
) -> None:
    """`lookback: 0s` validated, and every window's relative rules ended inconclusive, "no
    baseline", with no word at start: the baseline period before a deploy held nothing."""
    text = MINIMAL.replace("    interval: 30s\n", f"    interval: 30s\n    lookback: {lookback}\n")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert (
        "environments.production.lookback (line 9): must be more than 0s: the baselines are"
        " read from the lookback before a deploy" in out
    ), out


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("sqlite:///var/lib/postflight.db", "sqlite:////var/lib/postflight.db"),
        ("sqlite:///tmp/pf.db", "sqlite:////tmp/pf.db"),
        ("sqlite:////var/lib/postflight.db", None),
        ("sqlite:///./postflight.db", None),
        ("sqlite:///data/postflight.db", None),
    ],
)
def test_a_sqlite_url_relative_by_its_three_slashes_but_written_as_a_root_path_is_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, warned: str | None
) -> None:
    """`sqlite:///var/lib/postflight.db` is the relative path `var/lib/postflight.db`, as
    SQLAlchemy reads three slashes: an agent started from another directory made a new,
    empty store there, and its windows' history was not where it was looked for."""
    text = MINIMAL.replace("environments:\n", f"store: {{url: '{url}'}}\nenvironments:\n", 1)
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 0, out
    if warned is None:
        assert "store.url" not in out, out
    else:
        relative = url.removeprefix("sqlite:///")
        assert (
            f"warning: store.url (line 4): {url} is the relative path {relative}, under the"
            f" directory the agent starts in; for /{relative} write {warned}"
        ) in out, out


@pytest.mark.parametrize("mode", ["bogus", "required", "Require"])
def test_a_postgresql_sslmode_the_driver_refuses_is_refused_by_validate_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    """`postflight run` stopped at once on it (`store error: … sslmode parameter must be
    one of …`, exit 2) while `validate-config` said the file was valid."""
    url = f"postgresql://pf:shh-pg-password@127.0.0.1:5432/pf?sslmode={mode}"
    text = MINIMAL.replace("environments:\n", f"store: {{url: '{url}'}}\nenvironments:\n", 1)
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 2, out
    assert (
        f"store.url (line 4): sslmode {mode!r} is not one of: disable, allow, prefer, require,"
        " verify-ca, verify-full"
    ) in out, out
    assert "shh-pg-password" not in out
