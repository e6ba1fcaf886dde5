"""A token sent in an HTTP header (the agent's API tokens, a provider's or integration's
token) with a line break, a control character, or a space at an end: no header can carry
it as written, so the configuration is refused, at the token's path, never quoting it.

Found driving the CLI: `POSTFLIGHT_API_TOKEN` read from a secret file with its last
newline validated, and the agent then answered every request 401, the token presented
(`postflight status`, `curl -H "Authorization: Bearer …"`) never the one configured.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_process import validated_here
from tests.config.test_validate_config import MINIMAL

TOKEN = "tok-1234567890abcdef"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (f"{TOKEN}\n", "has a line break"),
        (f"{TOKEN}\r\n", "has a line break"),
        (f"{TOKEN[:8]}\t{TOKEN[8:]}", "has a control character"),
        (f" {TOKEN}", "starts or ends with a space"),
        (f"{TOKEN} ", "starts or ends with a space"),
    ],
)
def test_an_api_token_no_header_can_carry_is_refused_at_its_path(
    tmp_path: Path, value: str, said: str
) -> None:
    config = tmp_path / "postflight.yaml"
    config.write_text(MINIMAL.replace(f'["{TOKEN}"]', '["${PF_TEST_API_TOKEN}"]'))
    proc = validated_here("validate-config", str(config), env={"PF_TEST_API_TOKEN": value})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = proc.stderr.splitlines()[1:]
    assert len(errors) == 1 and errors[0].startswith("  server.api_tokens[0] (line 3): "), errors
    assert said in errors[0] and "no HTTP header can carry it" in errors[0], errors
    assert TOKEN not in proc.stdout + proc.stderr
    assert TOKEN[8:] not in proc.stdout + proc.stderr


def test_a_token_with_a_space_inside_still_validates(tmp_path: Path) -> None:
    """`Bearer a b` reaches the agent as the token `a b`: usable, so not refused."""
    config = tmp_path / "postflight.yaml"
    config.write_text(MINIMAL.replace(TOKEN, "tok-12345678 90abcdef"))
    proc = validated_here("validate-config", str(config), env={})
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("section", "path"),
    [
        (
            "providers:\n  sentry: {org: acme, token: '${PF_TEST_TOKEN}'}\n",
            "providers.sentry.token",
        ),
        (
            "providers:\n  newrelic: {account_id: 1, api_key: '${PF_TEST_TOKEN}'}\n",
            "providers.newrelic.api_key",
        ),
        (
            "providers:\n  prometheus: {bearer_token: '${PF_TEST_TOKEN}'}\n",
            "providers.prometheus.bearer_token",
        ),
        ("integrations:\n  github: {token: '${PF_TEST_TOKEN}'}\n", "integrations.github.token"),
        ("integrations:\n  vercel: {token: '${PF_TEST_TOKEN}'}\n", "integrations.vercel.token"),
    ],
)
def test_a_providers_token_with_a_newline_is_refused_at_its_path(
    tmp_path: Path, section: str, path: str
) -> None:
    config = tmp_path / "postflight.yaml"
    config.write_text(section + MINIMAL)
    proc = validated_here(
        "validate-config", str(config), env={"PF_TEST_TOKEN": "prov-token-abcdef123456\n"}
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = proc.stderr.splitlines()[1:]
    assert len(errors) == 1 and errors[0].startswith(f"  {path} (line "), errors
    assert "has a line break" in errors[0], errors
    assert "prov-token-abcdef123456" not in proc.stderr
