"""Contract §7: GitHub hears deployment statuses of the windows its deployments open,
and a Rolling Release stage is approved when its window passes; both through the API,
with the integration's token. Without it the windows open (the webhook secret signs the
events) and nothing is posted, with no word: validate-config and run now warn."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.test_validate_config import MINIMAL, run_validate

SOURCES = """\
    sources:
      github: {repository: acme/web, environment: Production}
      vercel: {project: prj_web123, target: production, rolling_release: true}
"""


def with_integrations(github: str, vercel: str) -> str:
    top = f"integrations:\n  github: {github}\n  vercel: {vercel}\n"
    return MINIMAL.replace("environments:\n", top + "environments:\n") + SOURCES


def test_a_source_whose_integration_has_no_token_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = with_integrations("{webhook_secret: gh-hook}", "{webhook_secret: vc-hook}")
    code, out = run_validate(tmp_path, text, capsys)
    assert code == 0, out
    assert "warning: integrations.github (line " in out, out
    assert (
        "no token: windows opened from GitHub deployments"
        " (environments.production.sources.github) get no deployment statuses" in out
    ), out
    assert "warning: integrations.vercel (line " in out, out
    assert (
        "no token: environments.production.sources.vercel.rolling_release cannot approve"
        " a stage" in out
    ), out
    tokens = with_integrations(
        "{webhook_secret: gh-hook, token: gh-token}", "{webhook_secret: vc-hook, token: vc-token}"
    )
    code, out = run_validate(tmp_path, tokens, capsys)
    assert code == 0, out
    assert "no token" not in out, out
