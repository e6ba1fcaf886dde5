"""Contract §7 configuration: the GitHub + Vercel example validates, every broken
combination is one message at its field path (exit 2), secrets stay SecretStr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import SecretStr

from agent.settings_file import ConfigError, load_settings, load_settings_text
from tests.cli_process import validated_here

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "postflight.github-vercel.example.yaml"
VARIABLES = {
    "POSTFLIGHT_API_TOKEN": "api-token-0123456789",
    "POSTFLIGHT_CI_TOKEN": "ci-token-0123456789",
    "GITHUB_TOKEN": "ghp_secret_value",
    "GITHUB_WEBHOOK_SECRET": "gh-hook-secret",
    "VERCEL_TOKEN": "vercel-secret-value",
    "VERCEL_WEBHOOK_SECRET": "vc-hook-secret",
    "ROLLBACK_SECRET": "rollback-secret",
}


@pytest.fixture
def variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in VARIABLES.items():
        monkeypatch.setenv(key, value)


def test_the_github_vercel_example_validates(variables: None) -> None:
    settings = load_settings(EXAMPLE)
    assert isinstance(settings.integrations.github.token, SecretStr)  # type: ignore[union-attr]
    assert isinstance(settings.integrations.vercel.webhook_secret, SecretStr)  # type: ignore[union-attr]
    assert settings.integrations.vercel.team_id is None  # type: ignore[union-attr]
    production = settings.environments["production"]
    assert production.rollback is not None and production.rollback.target == "vercel"
    assert production.sources.github.environment == "Production"  # type: ignore[union-attr]
    assert production.gate is not None and production.gate.after == "staging"
    assert dict(settings.server.token_names())["ci"].get_secret_value() == "ci-token-0123456789"
    for secret in VARIABLES.values():
        assert secret in settings.secret_values()


def test_the_example_validates_against_the_json_schema(variables: None) -> None:
    import os

    from agent.settings_file import ConfigProblem, _expand

    schema = json.loads((ROOT / "config" / "postflight.schema.json").read_text())
    problems: list[ConfigProblem] = []
    example = _expand(yaml.safe_load(EXAMPLE.read_text()), (), os.environ, problems, {})
    assert not problems
    jsonschema.validate(example, schema)


def test_validate_config_accepts_it_and_prints_no_secret(tmp_path: Path) -> None:
    proc = validated_here("validate-config", str(EXAMPLE), env=VARIABLES)
    assert proc.returncode == 0, proc.stderr
    for secret in VARIABLES.values():
        assert secret not in proc.stdout + proc.stderr


BASE = """
server: {api_tokens: [tok-1234567890abcdef]}
%s
environments:
  production:
    base_url: http://127.0.0.1:9
%s
  staging:
    base_url: http://127.0.0.1:9
"""


@pytest.mark.parametrize(
    ("top", "env", "path", "words"),
    [
        (
            "",
            "    rollback: {target: vercel}",
            "environments.production.rollback.target",
            "integrations.vercel.token",
        ),
        (
            "integrations: {vercel: {token: x}}",
            "    rollback: {target: vercel}",
            "environments.production.rollback.target",
            "sources.vercel.project",
        ),
        (
            "integrations: {github: {token: x}}",
            "    rollback: {target: github}",
            "environments.production.rollback",
            "github: {workflow",
        ),
        (
            "",
            "    rollback: {target: webhook, url: 'http://r'}",
            "environments.production.rollback",
            "needs secret",
        ),
        (
            "",
            "    sources: {vercel: {project: prj_1}}",
            "environments.production.sources.vercel",
            "integrations.vercel",
        ),
        (
            "",
            "    sources: {github: {repository: 'not a repo', environment: P}}",
            "environments.production.sources.github.repository",
            "",
        ),
        (
            "integrations: {github: {token: x}}",
            "    sources: {github: {repository: a/b, environment: P}}\n    gate: {after: nowhere}",
            "environments.production.gate.after",
            "no environment 'nowhere'",
        ),
        (
            "integrations: {vercel: {webhook_secret: ''}}",
            "",
            "integrations.vercel.webhook_secret",
            "must not be empty",
        ),
        ("integrations: {gitlab: {}}", "", "integrations.gitlab", "unknown key"),
        (
            "",
            "    rollback: {url: 'http://r', secret: s, then: [{name: db, url: 'ftp://x'}]}",
            "environments.production.rollback.then.0.url",
            "",
        ),
    ],
)
def test_each_broken_combination_is_one_error_at_its_path(
    top: str, env: str, path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings_text(BASE % (top, env), source="t.yaml")
    problems = caught.value.problems
    paths = [".".join(str(p) for p in problem.loc) for problem in problems]
    assert path in paths, [str(p) for p in problems]
    problem = problems[paths.index(path)]
    assert words in problem.message
    assert problem.line is not None


@pytest.mark.parametrize("second", ["production", "Production"])
def test_two_environments_cannot_claim_the_same_events(second: str) -> None:
    """A Vercel target is compared case-insensitively: `Production` claims the same
    events as `production`, and the second would never see one."""
    text = f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
integrations: {{vercel: {{token: x}}}}
environments:
  a: {{base_url: 'http://x', sources: {{vercel: {{project: p, target: production}}}}}}
  b: {{base_url: 'http://x', sources: {{vercel: {{project: p, target: {second}}}}}}}
"""
    with pytest.raises(ConfigError) as caught:
        load_settings_text(text)
    assert "already mapped to environments.a" in str(caught.value)


@pytest.mark.parametrize(
    ("other_error", "its_path"),
    [
        ("    window: banana", "environments.staging.window"),
        ("    rollback: {url: 'http://r'}", "environments.staging.rollback"),
        ("    rules: [{name: r, source: checks, metric: error_ratez, max: 0.1}]", None),
        ("", None),
    ],
    ids=["a-bad-duration", "a-missing-secret", "a-bad-metric", "nothing-else"],
)
def test_integration_errors_are_listed_beside_the_other_errors(
    other_error: str, its_path: str | None
) -> None:
    """Contract §1: `validate-config` prints every error. An error anywhere else (a bad
    duration in another environment) kept the model's cross-section check from running,
    so what a rollback target or a source needs from `integrations` showed only once
    every other error was fixed: read from the document too, said at once, once."""
    text = """
server: {api_tokens: [tok-1234567890abcdef]}
environments:
  production:
    base_url: http://127.0.0.1:9
    sources:
      vercel: {project: prj_1, target: production}
      github: {repository: a/b, environment: P}
    rollback: {target: vercel}
  preview:
    base_url: http://127.0.0.1:9
    rollback: {target: github, github: {workflow: r.yml}}
  staging:
    base_url: http://127.0.0.1:9
%s
"""
    with pytest.raises(ConfigError) as caught:
        load_settings_text(text % other_error, source="t.yaml")
    found = [(problem.path, problem.message) for problem in caught.value.problems]
    at = "environments.production."
    expected = [
        (at + "sources.vercel", "needs integrations.vercel"),
        (at + "sources.github", "needs integrations.github"),
        (at + "rollback.target", "vercel needs integrations.vercel.token"),
        ("environments.preview.rollback.target", "github needs integrations.github.token"),
        (
            "environments.preview.rollback.target",
            "github needs sources.github.repository (where the workflow lives)",
        ),
    ]
    for item in expected:
        assert found.count(item) == 1, (item, found)
    others = [
        path
        for path, _ in found
        if not path.startswith(("environments.production.", "environments.preview."))
    ]
    assert len(others) == (1 if other_error else 0), found  # the other error, said once
    if its_path is not None:
        assert others == [its_path]
    assert all(problem.line is not None for problem in caught.value.problems)


ONE_ENVIRONMENT = """\
server: {api_tokens: [tok-1234567890abcdef]}
environments:
  production:
    base_url: http://127.0.0.1:9
    sources:
      vercel: {project: prj_1, target: production}
      github: {repository: acme/web, environment: Production}
    rollback: {target: github}
    gate: {after: staging}
"""
ITS_SIX_ERRORS = [
    "environments.production.sources.vercel (line 6): needs integrations.vercel",
    "environments.production.sources.github (line 7): needs integrations.github",
    "environments.production.rollback (line 8): target github needs github:"
    " {workflow: rollback.yml, ref: main}",
    "environments.production.rollback.target (line 8): github needs integrations.github.token",
    "environments.production.gate.after (line 9): no environment 'staging'",
    "environments.production.gate (line 9): needs sources.github and"
    " integrations.github.token (the protection rule is answered through the GitHub API)",
]


@pytest.mark.parametrize("command", [["validate-config"], ["run", "--config"]])
def test_a_part_with_its_own_error_does_not_hide_its_environments_other_errors(
    tmp_path: Path, command: list[str]
) -> None:
    """Contract §1/§6: every error at once. A rollback that failed on its own (target
    github without its `github:` workflow) left its whole environment out of the checks
    across sections: 1 error printed, and the five others (sources and gate lacking their
    integrations, the gate after an unknown environment, the target's token) only once it
    was fixed. As the daemon runs it: the command line, exit 2."""
    config = tmp_path / "postflight.yaml"
    config.write_text(ONE_ENVIRONMENT)
    proc = subprocess.run(
        [sys.executable, "-m", "agent", *command, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == f"{config}: 6 configuration errors (exit 2)", proc.stderr
    assert sorted(line.strip() for line in lines[1:]) == sorted(ITS_SIX_ERRORS), proc.stderr


@pytest.mark.parametrize(
    ("broken", "its_error", "still_said"),
    [
        (  # the gate's own key: its `after` still names no environment
            ("    gate: {after: staging}", "    gate: {after: staging, timeout: banana}"),
            "environments.production.gate.timeout",
            ["environments.production.gate.after", "environments.production.rollback.target"],
        ),
        (  # one source: the other still needs its integration
            ("environment: Production}", "environment: Production, commit_status: maybe}"),
            "environments.production.sources.github.commit_status",
            ["environments.production.sources.vercel", "environments.production.gate.after"],
        ),
        (  # integrations.github given but broken: the vercel side still said
            ("server:", "integrations: {github: {token: x, timeout: banana}}\nserver:"),
            "integrations.github.timeout",
            ["environments.production.sources.vercel", "environments.production.gate.after"],
        ),
        (  # a misspelled source may be the one a check would say is missing
            ("      github: {repository", "      githib: {repository"),
            "environments.production.sources.githib",
            ["environments.production.sources.vercel", "environments.production.gate.after"],
        ),
    ],
    ids=["gate-timeout", "github-source", "github-integration", "misspelled-source"],
)
def test_a_broken_part_leaves_the_checks_that_do_not_read_it(
    broken: tuple[str, str], its_error: str, still_said: list[str]
) -> None:
    """A part that fails on its own hides only the checks that read it: what is said of
    a part given but broken would be a guess (`needs sources.github` of one written)."""
    fixed = ONE_ENVIRONMENT.replace("{target: github}", "{target: github, github: {workflow: r}}")
    text = fixed.replace(*broken)
    assert text != fixed
    with pytest.raises(ConfigError) as caught:
        load_settings_text(text, source="t.yaml")
    paths = [problem.path for problem in caught.value.problems]
    assert paths.count(its_error) == 1, paths
    for path in still_said:
        assert path in paths, paths
    said = [str(problem) for problem in caught.value.problems]
    if "github" in its_error or "githib" in its_error:  # no guess about the broken part
        assert "environments.production.sources.github" not in paths, said
        assert "environments.production.gate" not in paths, said  # it names both
        assert not any("needs sources.github.repository" in line for line in said), said


def test_each_follow_up_without_a_secret_is_said(tmp_path: Path) -> None:
    """Every error at once: of two follow-ups without a secret (a rollback target that
    needs none of its own), only the first was said, the second once it had one."""
    config = tmp_path / "postflight.yaml"
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        "integrations: {vercel: {token: x}}\n"
        "environments:\n"
        "  production:\n"
        "    base_url: http://127.0.0.1:9\n"
        "    sources: {vercel: {project: p}}\n"
        "    rollback:\n"
        "      target: vercel\n"
        "      then:\n"
        "        - {name: db, url: 'http://127.0.0.1:9/db'}\n"
        "        - {name: cache, url: 'http://127.0.0.1:9/cache'}\n"
        "        - {name: mail, url: 'http://127.0.0.1:9/mail', secret: s}\n"
    )
    proc = validated_here("validate-config", str(config), env={})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[1:] == [
        f"  environments.production.rollback (line 7): then {name!r} needs a secret"
        " (or set rollback.secret)"
        for name in ("db", "cache")
    ], proc.stderr
