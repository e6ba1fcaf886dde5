"""A deploy event's URL with a query string or a #fragment, probed (contract §7's
`use_environment_url` / `use_deployment_url`): `join_url` put each check's path after the
query or inside the fragment (`https://preview/?share=t/api/health`), so every probe asked
for the site's root, not the check's path, and a healthy deploy failed (a rollback). The
configuration refuses such a `base_url` (`a_base`); an event's URL cannot be refused,
so: a fragment, which no browser sends, is dropped; a URL with a query is not probed (its
query might be a share token the redactor does not know), `base_url` is, as for a URL
that is not http(s), and the log says so."""

from __future__ import annotations

import logging

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment
from tests.e2e.crash import free_port
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
)
from tests.fakes import github as gh
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel


@pytest.mark.parametrize(
    ("tail", "probed"),
    [("/#/app", "event"), ("/?_vercel_share=tok-s3cret", "base"), ("/app?x=1#y", "base")],
    ids=["fragment", "query", "both"],
)
async def test_an_event_url_with_a_query_or_fragment_is_probed_as_documented(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    tail: str,
    probed: str,
) -> None:
    # base_url, when it is probed, is a second live target; else a dead port, so that
    # only the event's URL can pass
    base = FlipTarget()
    await base.start()
    try:
        base_url = base.url if probed == "base" else f"http://127.0.0.1:{free_port()}"
        env = environment(
            "preview",
            base_url,
            background_interval="10s",
            extra=f"sources: {{github: {{repository: {gh.REPOSITORY}, environment: Preview,"
            " use_environment_url: true}}",
        )
        agent = await start_agent(env, extra=integrations(fake_github, fake_vercel))
        body = gh.deployment_status(environment="Preview").replace(
            b"https://web-new.vercel.app", (flip_target.url + tail).encode()
        )
        caplog.set_level(logging.WARNING)
        status, opened = await github_hook(agent, "deployment_status", body, "preview-q")
        assert status == 202, opened
        final = await agent.settled(opened["deploy"]["id"])
        assert final["state"] == "passed", final["verdict"]
        said = [r.getMessage() for r in caplog.records if "not probed" in r.getMessage()]
        if probed == "event":
            assert flip_target.requests > 0 and said == []
        else:
            assert flip_target.requests == 0 and base.requests > 0
            assert len(said) == 1, said
            assert "query string" in said[0] and "tok-s3cret" not in said[0]
        # the URL goes back to GitHub as the event gave it
        assert fake_github.statuses[-1]["environment_url"] == flip_target.url + tail
    finally:
        await base.stop()


async def test_a_success_status_without_environment_url_does_not_probe_its_log_url(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    """An Actions job with `environment: Preview` and no `url` posts `success` with an
    empty `environment_url` and its run's page as `target_url`, which GitHub documents as
    the log URL (`log_url` replaces it). The window probed the run's page (404 at each
    check path: a healthy deploy failed) and every status set it as the deployment's
    `environment_url`. Now there is no event URL: `base_url` is probed."""
    logs = f"http://127.0.0.1:{free_port()}/acme/web/actions/runs/1"  # nothing answers
    env = environment(
        "preview",
        flip_target.url,
        background_interval="10s",
        extra=f"sources: {{github: {{repository: {gh.REPOSITORY}, environment: Preview,"
        " use_environment_url: true}}",
    )
    agent = await start_agent(env, extra=integrations(fake_github, fake_vercel))
    body = (
        gh.deployment_status(environment="Preview")
        .replace(b'"https://web-new.vercel.app"', b'""')
        .replace(b"https://vercel.com/acme/web/dpl_new222", logs.encode())
    )
    status, opened = await github_hook(agent, "deployment_status", body, "preview-logs")
    assert status == 202, opened
    assert "github.environment_url" not in opened["deploy"]["labels"]
    final = await agent.settled(opened["deploy"]["id"])
    assert final["state"] == "passed", final["verdict"]
    assert fake_github.statuses and all("environment_url" not in s for s in fake_github.statuses)
