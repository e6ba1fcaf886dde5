"""Secrets never in logs or alerts (contract §3-§4, the house rule), for a rollback
webhook whose URL carries its token in the path, as Zapier's, Make's and chat services'
incoming hooks do. A receiver that refuses it echoes the path back, as Express's 404
("Cannot POST /hooks/…") and most frameworks' do; the refusal's words are shown in the
deploy object's `rollback.last_error`, the ROLLBACK FAILED alert and the log, and the
token is not."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import AgentFactory, RefusingReceiver, failing_production
from tests.receivers import JsonNotification, JsonSink, alert_titled

pytestmark = pytest.mark.e2e

PATH_TOKEN = "a8Kq2Zr7Xw4Lm9Tb"
QUERY_TOKEN = "q7Wn3Vc5Rt1Yp0Hs"


async def refused_rollback(
    start_agent: AgentFactory,
    json_sink: JsonSink,
    receiver: RefusingReceiver,
    webhook: Callable[[str], str],
) -> tuple[dict[str, Any], JsonNotification]:
    """A failing deploy whose rollback `receiver` refuses, at the webhook URL
    `webhook(receiver.url)`: the settled deploy, and its ROLLBACK FAILED alert."""
    await receiver.start()
    try:
        agent = await start_agent(
            failing_production(webhook(receiver.url)),
            f"alerting:\n  channels:\n    - url: {json_sink.url()}\n",
        )
        deploy = await agent.register("production", "v2")
        final = await agent.settled(deploy["id"])
    finally:
        await receiver.stop()
    return final, await alert_titled(json_sink, "ROLLBACK FAILED")


def express_404(request: web.Request) -> str:
    """Express's words refusing a POST, quoting the path and query."""
    return f"Cannot POST {request.path_qs}"


@pytest.mark.timeout(60)
async def test_a_refusal_that_echoes_the_webhook_path_does_not_show_its_token(
    start_agent: AgentFactory, json_sink: JsonSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = RefusingReceiver(404, express_404)
    final, alert = await refused_rollback(
        start_agent,
        json_sink,
        receiver,
        lambda base: f"{base}/hooks/catch/1234/{PATH_TOKEN}/?token={QUERY_TOKEN}",
    )

    assert receiver.posts == 1  # a 404 is not retried
    assert final["state"] == "failed", final
    error = final["rollback"]["last_error"]
    assert error.startswith("HTTP 404: Cannot POST /hooks/catch/"), error
    assert "HTTP 404: Cannot POST /hooks/catch/" in alert.message, alert.message
    for token in (PATH_TOKEN, QUERY_TOKEN):
        assert token not in error
        assert token not in alert.message, alert.message
        assert token not in caplog.text


USER_PASSWORD = "correcthorse"
"""A password of the webhook URL's userinfo: all letters, so no token-like heuristic
hides it; only knowing it as a secret does."""


def basic_auth_refusal(request: web.Request) -> str:
    """A receiver that refuses the credentials it was sent, quoting them back."""
    return f"unauthorized: user hook with password {USER_PASSWORD} is not allowed"


@pytest.mark.timeout(60)
async def test_a_refusal_that_echoes_the_webhook_urls_password_does_not_show_it(
    start_agent: AgentFactory, json_sink: JsonSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = RefusingReceiver(401, basic_auth_refusal)
    final, alert = await refused_rollback(
        start_agent,
        json_sink,
        receiver,
        lambda base: f"http://hook:{USER_PASSWORD}@{base.removeprefix('http://')}/hooks/rollback",
    )

    assert receiver.posts == 1  # a 401 is not retried
    error = final["rollback"]["last_error"]
    assert error.startswith("HTTP 401: unauthorized: user hook with password ***"), error
    assert "unauthorized: user hook with password" in alert.message, alert.message
    assert USER_PASSWORD not in error
    assert USER_PASSWORD not in alert.message, alert.message
    assert USER_PASSWORD not in caplog.text
