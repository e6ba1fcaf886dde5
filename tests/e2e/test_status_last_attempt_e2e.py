"""README, the rollback webhook: "While it is pending, or once it failed, the deploy
object's `rollback.last_error` … and `postflight status`'s `last attempt:` line say why the
latest attempt did not deliver: `cannot connect to 10.0.3.7:8443 (Connection refused)`",
through the real CLI, in a process of its own, against the agent, for a rollback whose
webhook's port nobody listens on: pending between its attempts, then failed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cli_process import awaited_cli
from tests.e2e.conftest import SECRET, TOKEN, AgentFactory, environment
from tests.fakes.prometheus import free_port

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(90)
async def test_status_says_why_the_last_attempt_did_not_deliver_pending_and_failed(
    start_agent: AgentFactory,
) -> None:
    port = free_port()  # the webhook's: nobody listens on it
    refused = f"cannot connect to 127.0.0.1:{port} (Connection refused)"
    rollback = (
        f"rollback: {{url: 'http://127.0.0.1:{port}/rollback', secret: {SECRET},"
        " max_attempts: 3, backoff: 2s, max_backoff: 2s}"
    )
    agent = await start_agent(
        environment("production", f"http://127.0.0.1:{free_port()}", window="30s", extra=rollback)
    )
    connection = ["--url", agent.url, "--token", TOKEN]
    deploy = await agent.register("production", "v2")

    for state in ("pending", "failed"):

        def attempted(d: dict[str, Any], s: str = state) -> bool:
            return (d.get("rollback") or {}).get("state") == s and bool(
                d["rollback"].get("last_error")
            )

        shown = await agent.wait_until(deploy["id"], attempted)
        assert shown["rollback"]["last_error"] == refused, shown
        code, said = await awaited_cli("status", deploy["id"], *connection)
        assert code == 0, said
        lines = [line.strip() for line in said.splitlines()]
        assert f"last attempt: {refused}" in lines, said
