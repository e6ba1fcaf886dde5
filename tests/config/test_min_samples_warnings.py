"""A rule's `min_samples` that cannot work as configured is said at config time, at the
rule's `min_samples`, exit 0 (`agent.windows.unjudged`): under `threshold`, one on a
bare value (no sample count: each round with data is judged whatever it says) and one
above what a round can give (no round is ever judged); under `sequential` and `fixed`,
one above what the environment's window can give. Through the real CLI: validate-config,
and `run`'s start log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.test_run_start import agent_config, listening
from tests.cli_process import stopped_as_the_block_ends, validated_here
from tests.ports import free_port

HEAD = """\
server:
  listen: 127.0.0.1:8787
  api_tokens: ["tok-1234567890abcdef"]
providers:
  prometheus: {url: http://127.0.0.1:9090}
  sentry: {org: acme, token: sntrys-abc}
  newrelic: {account_id: 1, api_key: NRAK-abc}
"""
ENVIRONMENT = """\
  {name}:
    base_url: http://127.0.0.1:9
    window: 10m
    interval: 30s
    probes_per_round: 10
    checks:
      - {{name: api-health, type: http, path: /health}}
      - {{name: journey, type: smoke, steps: [{{name: a, path: /}}, {{name: b, path: /b}}]}}
      - {{name: feed, type: load, path: /, rate: 5/s, duration: 2s}}
    baseline: {{sentry: {{project: web}}}}
    analysis: {{policy: {policy}}}
    rules:
{rules}
    rollback: {{url: http://127.0.0.1:9998/rollback, secret: shh-secret}}
"""
NOT_APPLYING = "does not apply under analysis.policy threshold"
NO_ROUND = "is more than a round can give it"
NO_WINDOW = "is more than the environment's window of 10m can give it"


def config_of(**environments: tuple[str, list[str]]) -> str:
    """HEAD and each environment (10m of 30s rounds, 10 probes a round; an http check, a
    smoke scenario of two steps, a load check of 10 requests) with its policy and rules
    (each a YAML flow mapping)."""
    text = HEAD + "environments:\n"
    for name, (policy, rules) in environments.items():
        listed = "\n".join(f"      - {rule}" for rule in rules)
        text += ENVIRONMENT.format(name=name, policy=policy, rules=listed)
    return text


def validate(tmp_path: Path, text: str) -> list[str]:
    """`postflight validate-config` of `text` (the CLI's `main` in this process, where it
    was a process of its own): it must exit 0 (a warning leaves the file valid); its
    warning lines."""
    path = tmp_path / "postflight.yaml"
    path.write_text(text)
    proc = validated_here("validate-config", str(path), env={})
    assert proc.returncode == 0, proc.stderr
    return [line.strip() for line in proc.stderr.splitlines() if "warning: " in line]


def said_at(lines: list[str], at: str) -> list[str]:
    """The warnings at `at` (`production.rules[1]`), each from its message on."""
    head = f"warning: environments.{at}.min_samples (line "
    return [line.split("): ", 1)[1] for line in lines if line.startswith(head)]


def test_threshold_says_min_samples_does_not_apply_to_a_bare_value(tmp_path: Path) -> None:
    """A PromQL query's value, a Sentry error_count, a checks throughput and a New Relic
    query without a `total` column have no count in a round: under threshold each round
    with data is judged, whatever `min_samples` says (`tests/analysis/test_min_samples.py`).
    A Sentry error_rate has one, and so do a rule over checks' error rate and a New Relic
    query with a `total`: no warning; nor for the default of 1."""
    rules = [
        "{name: p, source: prometheus, query: up, max: 1, min_samples: 5}",
        "{name: s, source: sentry, metric: error_count, max: 10, min_samples: 5}",
        "{name: t, source: checks, metric: throughput, min: 1, min_samples: 3}",
        "{name: n, source: newrelic, nrql: 'SELECT percentile(duration, 95) FROM Transaction',"
        " max: 1, min_samples: 5}",
        "{name: rate, source: sentry, metric: error_rate, max: 0.1, min_samples: 500}",
        "{name: e, source: checks, metric: error_rate, max: 0.05, min_samples: 40}",
        "{name: one, source: prometheus, query: up, max: 1, min_samples: 1}",
        "{name: counted, source: newrelic, metric: error_rate, max: 0.1, min_samples: 500, nrql:"
        " 'SELECT filter(count(*), WHERE error IS true) AS errors, count(*) AS total FROM"
        " Transaction'}",
    ]
    lines = validate(tmp_path, config_of(production=("threshold", rules)))
    bare = [
        ("p", "query (source prometheus)"),
        ("s", "error_count (source sentry)"),
        ("t", "throughput (source checks)"),
        ("n", "nrql (source newrelic)"),
    ]
    for index, (name, what) in enumerate(bare):
        (said,) = said_at(lines, f"production.rules[{index}]")
        assert said.startswith(f"rule '{name}': min_samples "), said
        assert NOT_APPLYING in said and f"its {what} is one figure a round" in said, said
        assert said.endswith("remove min_samples (sequential and fixed count its rounds with data)")
    for index in (4, 5, 6, 7):
        assert said_at(lines, f"production.rules[{index}]") == [], lines
    # the same rules under sequential: their rounds with data count, 20 in the window
    lines = validate(tmp_path, config_of(production=("sequential", rules[:4])))
    assert not [line for line in lines if "min_samples" in line], lines


def test_threshold_says_min_samples_above_what_a_round_gives(tmp_path: Path) -> None:
    """10 probes a round: the http check gives 10, the two-step scenario 20, the load
    check its 10 measured requests, 40 over every check; one more than a rule's checks
    give is never reached, so no round of it is judged."""
    rules = [
        "{name: health, source: checks, check: api-health, metric: error_rate, max: 0.05,"
        " min_samples: 11}",
        "{name: feed, source: checks, check: feed, metric: latency_p95, max: 1s, min_samples: 11}",
        "{name: journey, source: checks, check: journey, metric: error_rate, max: 0.05,"
        " min_samples: 21}",
        "{name: all, source: checks, metric: error_rate, max: 0.05, min_samples: 41}",
        "{name: within, source: checks, metric: latency_p95, max: 1s, min_samples: 40}",
        "{name: edge, source: checks, check: journey, metric: error_rate, max: 0.05,"
        " min_samples: 20}",
    ]
    lines = validate(tmp_path, config_of(production=("threshold", rules)))
    (health,) = said_at(lines, "production.rules[0]")
    assert health == (
        f"rule 'health': min_samples 11 {NO_ROUND} (10: api-health's 10 probes), and"
        " analysis.policy threshold counts each round's samples, so no round is ever judged"
        " and the rule ends inconclusive in every window; lower min_samples to at most 10, or"
        " raise probes_per_round"
    )
    (feed,) = said_at(lines, "production.rules[1]")
    assert "(10: feed's 10 requests, rate × duration)" in feed, feed
    assert feed.endswith("or raise the load check's rate or duration"), feed
    (journey,) = said_at(lines, "production.rules[2]")
    assert "(20: journey's 2 steps × 10 runs)" in journey, journey
    (every,) = said_at(lines, "production.rules[3]")
    assert "(40: api-health's 10 probes, journey's 2 steps × 10 runs, feed's 10" in every
    for index in (4, 5):
        assert said_at(lines, f"production.rules[{index}]") == [], lines


@pytest.mark.parametrize("policy", ["sequential", "fixed"])
def test_sequential_and_fixed_say_min_samples_above_what_the_window_gives(
    tmp_path: Path, policy: str
) -> None:
    """20 rounds of 30s in 10m: 200 of the http check's probes, 20 of a bare value; one
    more than that is never reached within the environment's window."""
    rules = [
        "{name: health, source: checks, check: api-health, metric: error_rate, max: 0.05,"
        " min_samples: 201}",
        "{name: p, source: prometheus, query: up, max: 1, min_samples: 21}",
        "{name: h200, source: checks, check: api-health, metric: error_rate, max: 0.05,"
        " min_samples: 200}",
        "{name: p20, source: prometheus, query: up, max: 1, min_samples: 20}",
    ]
    lines = validate(tmp_path, config_of(production=(policy, rules)))
    (health,) = said_at(lines, "production.rules[0]")
    assert health == (
        f"rule 'health': min_samples 201 {NO_WINDOW} (200: 20 rounds of 10 (api-health's 10"
        f" probes) each), and analysis.policy {policy} counts them over the window, so the"
        " rule is never judged and ends inconclusive in every window; lower min_samples to"
        " at most 200, or lengthen window to 10m30s"
    )
    (bare,) = said_at(lines, "production.rules[1]")
    assert "(20: 20 rounds of one figure each)" in bare, bare
    assert bare.endswith("at most 20, or lengthen window to 10m30s"), bare
    for index in (2, 3):
        assert said_at(lines, f"production.rules[{index}]") == [], lines


def test_the_reference_example_has_none_of_them(tmp_path: Path) -> None:
    """Contract section 6's example gives no rule a `min_samples`: nothing to say."""
    example = Path(__file__).resolve().parents[2] / "config" / "postflight.example.yaml"
    variables = ("POSTFLIGHT_API_TOKEN", "SENTRY_AUTH_TOKEN", "NEW_RELIC_API_KEY")
    env = dict.fromkeys(variables, "t" * 24) | {"ROLLBACK_SECRET": "shh-secret"}
    proc = validated_here("validate-config", str(example), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "min_samples" not in proc.stderr, proc.stderr


@pytest.mark.timeout(120)
def test_run_logs_each_once_at_start(tmp_path: Path) -> None:
    """The daemon starts all the same, and its start log says each warning once."""
    rules = [
        "{name: p, source: prometheus, query: up, max: 1, min_samples: 5}",
        "{name: health, source: checks, check: api-health, metric: error_rate, max: 0.05,"
        " min_samples: 11}",
    ]
    environments = config_of(production=("threshold", rules)).split("environments:\n", 1)[1]
    providers = HEAD.split("providers:\n", 1)[1]
    config = agent_config(
        tmp_path, free_port(), f"providers:\n{providers}environments:\n{environments}"
    )
    log = tmp_path / "agent.log"
    with stopped_as_the_block_ends(listening(os.fspath(config), log), log):
        said = log.read_text()
    for at, what in [("rules[0]", NOT_APPLYING), ("rules[1]", NO_ROUND)]:
        head = f"configuration: environments.production.{at}.min_samples (line "
        lines = [line for line in said.splitlines() if head in line]
        assert len(lines) == 1 and what in lines[0], said
