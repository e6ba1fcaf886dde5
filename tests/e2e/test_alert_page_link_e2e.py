"""README, the deploy page: "Every window has a page, linked from every alert body". Each
alert a failed, rolled-back deploy sends (its breach, the rollback asked, the rollback
delivered) reaches a `json://` channel with the link to its deploy's page, and that link
alone, with no token or session beside it, opens that page, its rollback attempt's time,
status and latency on it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, environment, held_as_overloaded
from tests.receivers import JsonSink, RollbackReceiver, alert_titled

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
async def test_every_alert_body_links_the_deploys_page_and_the_link_opens_it(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    json_sink: JsonSink,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
) -> None:
    receiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(
            "production",
            flip_target.url,
            extra=f"rollback: {{url: '{receiver.url}', secret: {SECRET}}}",
        ),
        f"alerting:\n  channels:\n    - url: {json_sink.url()}\n",
    )
    flip_target.bad = True
    for _ in range(3):  # a fail the loaded machine's own stall held is registered again
        deploy = await agent.register("production", "v2")
        final = await agent.settled(deploy["id"])
        if not held_as_overloaded(final):
            break
    assert final["state"] == "rolled_back", final
    await alert_titled(json_sink, "rollback delivered")
    mine = [n for n in json_sink.notifications if deploy["id"] in n.message]
    events = {n.title.split(": ", 1)[1] for n in mine}
    assert {"rollback requested (probe-errors)", "rollback delivered"} <= events, events
    page = re.escape(f"{agent.url}/deploys/{deploy['id']}?view=")
    for note in mine:
        found = re.search(rf"Open the deploy: <({page}[^>\s]+)>", note.message)
        assert found is not None, (note.title, note.message)
        async with agent.http.get(found[1]) as r:  # the link alone: no bearer, no cookie
            html = await r.text()
            assert r.status == 200 and r.content_type == "text/html", (r.status, html[:300])
        assert deploy["id"] in html and "v2" in html
        # "every rollback attempt (time, status, latency)"
        row = r'<tr class="attempt"><td>1</td><td><time datetime="[0-9T:-]+Z">[^<]+</time></td>'
        assert re.search(row + r"<td>200</td><td>\d+ ms</td></tr>", html), html
