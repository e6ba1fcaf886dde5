"""README's rollback targets: "a 4xx that will not change (a bad token, an unknown
deployment) is one alert and state `failed`", through the real daemon: a failing window
whose rollback goes to the fake Vercel or GitHub, refused for a token the fake does not
take or with a 404. Counted at the fakes (one request: a 4xx is not retried, nothing
taken) and at a json:// sink (one ROLLBACK FAILED page). Before, the daemon's test of it
(test_integrations_e2e's, folded in here) took Vercel's 403 alone and counted no page."""

from __future__ import annotations

import pytest

from tests.e2e.integrations_support import Integrated, integrated, scanned  # noqa: F401
from tests.e2e.test_integrations_e2e import GH_TOKEN, VC_TOKEN, alerts_to
from tests.fakes import vercel as vc
from tests.receivers import JsonSink

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

GITHUB = "{target: github, github: {workflow: rollback.yml, ref: main}, backoff: 50ms}"
VERCEL = "{target: vercel, backoff: 50ms}"
CASES = {
    # case: (rollback, the request's path at its fake, refused how)
    "vercel-bad-token": (VERCEL, "/rollback/", "token"),
    "vercel-unknown-deployment": (VERCEL, "/rollback/", "404"),
    "github-bad-token": (GITHUB, "/dispatches", "token"),
    "github-unknown-workflow": (GITHUB, "/dispatches", "404"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_rollback_target_refusing_with_a_4xx_is_one_request_one_page_and_failed(
    integrated: Integrated,  # noqa: F811
    json_sink: JsonSink,
    case: str,
) -> None:
    rollback, path, how = CASES[case]
    fake_github, fake_vercel, flip_target = integrated.github, integrated.vercel, integrated.target
    fake = fake_vercel if "vercel" in rollback else fake_github
    extra = integrated.extra
    if how == "token":  # the agent's tokens are ones the fakes do not take
        for token in (GH_TOKEN, VC_TOKEN):
            extra = extra.replace(f"token: {token},", "token: not-the-token,")
    else:
        fake.fail(how, match=path)
    agent = await integrated.start_agent(
        integrated.environments(rollback=rollback, window="1500ms"),
        alerting=alerts_to(json_sink),
        extra=extra,
    )
    integrated.started.append(agent)  # stopped before the fakes
    deploy = await agent.register(
        "production", "v2", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    flip_target.bad = True
    final = await agent.settled(deploy["id"])
    assert (final["state"], final["rollback"]["state"]) == ("failed", "failed"), final
    assert final["rollback"]["attempts"] == 1, final["rollback"]
    answered = {"token": "HTTP 403" if fake is fake_vercel else "HTTP 401", "404": "HTTP 404"}
    assert answered[how] in final["rollback"]["last_error"], final["rollback"]
    assert len(fake.seen(path)) == 1, fake.requests
    assert fake_vercel.accepted == [] and fake_github.dispatches == []
    await scanned(agent)
    pages = [n.title for n in json_sink.notifications if "ROLLBACK FAILED" in n.title]
    assert pages == ["[postflight] production v2: ROLLBACK FAILED, act now"], pages
