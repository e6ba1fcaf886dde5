"""A base URL the agent adds paths to (a provider's, an integration's API, the server's
`public_url`, an environment's `base_url`) with a query string or a #fragment: every
call appended its path after the query (`https://prom.example/?token=abc/api/v1/query`),
so the provider never worked, and a token there showed in every link built from it (the
deploy page's and the API's Prometheus graph link), while validate-config said "valid".
Run as a user runs it: `postflight validate-config` in a process of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli_process import validated_here
from tests.config.test_validate_config import MINIMAL

SECRET = "tok-s3cr3t-in-query"

BASES = f"""\
providers:
  prometheus: {{url: 'https://prom.example/?token={SECRET}'}}
  sentry:
    base_url: 'https://sentry.example/?auth={SECRET}'
    web_url: 'https://sentry.example/#{SECRET}'
    org: acme
    token: sentry-token
  newrelic:
    api_url: 'https://api.newrelic.com/graphql'
    web_url: 'https://one.newrelic.com/?key={SECRET}'
    account_id: 1
    api_key: nr-key
integrations:
  github: {{api_url: 'https://github.example/api/v3?access_token={SECRET}'}}
  vercel: {{api_url: 'https://api.vercel.example/#{SECRET}'}}
"""

TEXT = (
    MINIMAL.replace(
        "  listen: 127.0.0.1:8787\n",
        f"  listen: 127.0.0.1:8787\n  public_url: 'https://pf.example/?k={SECRET}'\n",
    ).replace(
        "base_url: http://127.0.0.1:9\n",
        f"base_url: 'http://127.0.0.1:9/?x-bypass={SECRET}'\n    baseline_url: 'http://127.0.0.1:8/#{SECRET}'\n",
    )
    + BASES
)

ADVICE = {
    "server.public_url": "remove it",
    "environments.production.base_url": "a check's own query goes in its path",
    "environments.production.baseline_url": "a check's own query goes in its path",
    "providers.prometheus.url": "a token goes in providers.prometheus.bearer_token",
    "providers.sentry.base_url": "a token goes in providers.sentry.token",
    "providers.sentry.web_url": "remove it",
    "providers.newrelic.web_url": "remove it",
    "integrations.github.api_url": "a token goes in integrations.github.token",
    "integrations.vercel.api_url": "a token goes in integrations.vercel.token",
}


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """validate-config of `text`, the CLI's `main` in this process (`validated_here`),
    where each was a Python process of its own."""
    path = tmp_path / "postflight.yaml"
    path.write_text(text)
    return validated_here("validate-config", str(path), env={})


def test_a_query_or_fragment_in_a_base_url_is_refused_at_each_field(tmp_path: Path) -> None:
    done = validate(tmp_path, TEXT)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    lines = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    for path, advice in ADVICE.items():
        said = [line for line in lines if line.startswith(f"{path} (line ")]
        assert len(said) == 1, (path, out)
        assert "a query string (?…) or fragment (#…) cannot be in this URL" in said[0], said
        assert advice in said[0], said
    assert len(lines) == len(ADVICE), out
    assert SECRET not in out


def test_a_base_url_with_a_path_and_a_webhook_with_a_query_stay_valid(tmp_path: Path) -> None:
    """A path prefix is a base (`/api/v3`, a proxy's `/prometheus`); a rollback webhook or
    follow-up is called as written, so its query (a signing token) is kept; New Relic's
    api_url is posted to as written (no path added)."""
    text = (
        MINIMAL.replace("/rollback", "/rollback?sig=abc")
        + "providers:\n  prometheus: {url: 'http://127.0.0.1:9090/prometheus/', bearer_token: t}\n"
        + "  newrelic: {api_url: 'https://nr-proxy.example/graphql?tenant=a', account_id: 1,"
        " api_key: k}\n" + "integrations:\n  github: {api_url: 'https://github.example/api/v3'}\n"
    )
    done = validate(tmp_path, text)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_region_beside_another_host_is_said_by_host_without_the_url(tmp_path: Path) -> None:
    """`region` and a URL of another host: the message quoted the whole URL, its
    user:password (and New Relic's query, kept there) with it."""
    text = MINIMAL + (
        "providers:\n"
        f"  newrelic: {{region: eu, api_url: 'https://u:{SECRET}@nr.example/graphql?k={SECRET}',"
        " account_id: 1, api_key: k}\n"
        f"  sentry: {{region: de, base_url: 'https://u:{SECRET}@sentry.example',"
        " org: a, token: t}\n"
    )
    done = validate(tmp_path, text)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert (
        "providers.newrelic (line 22): region 'eu' is api.eu.newrelic.com, and api_url's host"
        " is nr.example: they disagree; give one of them"
    ) in out
    assert (
        "providers.sentry (line 23): region 'de' is de.sentry.io, and base_url's host"
        " is sentry.example: they disagree; give one of them"
    ) in out
    assert SECRET not in out


def test_a_region_beside_its_own_host_and_port_written_out_is_valid(tmp_path: Path) -> None:
    """The host and port are compared, not the text before the path (`:443` disagreed)."""
    text = MINIMAL + (
        "providers:\n  newrelic: {region: eu, api_url: 'https://api.eu.newrelic.com:443/graphql',"
        " account_id: 1, api_key: k}\n"
    )
    done = validate(tmp_path, text)
    assert done.returncode == 0, done.stdout + done.stderr
