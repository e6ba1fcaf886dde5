"""An inconclusive window whose rule ended past its bound says so first, through the real
daemon: the verdict's reason (API), `register --wait` and the deploy page lead with it, in
the words of the `inconclusive` alert's title (`common.breaching`). A threshold rule with a
`failure_limit` above the window's rounds, against a target answering 503 to two requests
in five: every round past `max 5%`, too few to fail, counted at the target. Before, the
reason read "no rule was seen within its bound over 5 rounds: probe-errors: 5 rounds past
max 0.05, too few to fail (failure_limit 20), none within it"."""

from __future__ import annotations

import html
import re

import pytest

from common.breaching import SHORT_OF_EVIDENCE
from tests.cli_process import awaited_cli
from tests.e2e.conftest import TOKEN, AgentFactory, FlipTarget, environment
from tests.receivers import JsonSink

pytestmark = pytest.mark.e2e

PAST = re.compile(
    r"^probe-errors: error_rate [\d.]+% past max 5% in (the only round|each of the \d+ rounds)"
    rf" judged, {SHORT_OF_EVIDENCE} \(\d+ of 20 rounds needed\)$"
)


@pytest.mark.timeout(90)
async def test_a_window_ended_past_its_bound_leads_its_reason_with_it(
    start_agent: AgentFactory, flip_target: FlipTarget, json_sink: JsonSink
) -> None:
    flip_target.bad = True
    env = environment(
        "production", flip_target.url, analysis="{policy: threshold, failure_limit: 20}"
    )
    agent = await start_agent(env, f"alerting:\n  channels:\n    - url: {json_sink.url()}\n")
    before = flip_target.requests
    code, said = await awaited_cli(
        "register",
        "--url",
        agent.url,
        "--token",
        TOKEN,
        "--env",
        "production",
        "--version",
        "v2",
        "--wait",
    )
    assert flip_target.requests - before >= 5, said  # counted at the target: probed
    assert code == 3, said
    (deploy_id,) = set(re.findall(r"\bdep_[0-9A-Z]{26}\b", said))
    final = await agent.get(deploy_id)
    reason = final["verdict"]["reason"]
    assert final["state"] == "inconclusive" and PAST.match(reason), reason
    assert reason in said, said  # `register --wait`'s details
    # its end line names the rule as the alert's title does, where it read "neither passed
    # nor failed (the rules below say why)", a quiet window's words
    (end,) = [line for line in said.splitlines() if re.search(r"\(exit \d+\)$", line)]
    assert f"inconclusive: probe-errors past its bound, {SHORT_OF_EVIDENCE}" in end, said
    async with agent.http.get(f"{agent.url}/deploys/{deploy_id}", headers=agent.headers) as r:
        page = html.unescape(await r.text())
    assert reason in page, page[:2000]
    (alert,) = [a for a in await json_sink.wait_for(1, within=10) if "inconclusive" in a.title]
    assert alert.title.endswith(f"probe-errors past its bound, {SHORT_OF_EVIDENCE}"), alert
    assert reason in alert.message, alert.message
