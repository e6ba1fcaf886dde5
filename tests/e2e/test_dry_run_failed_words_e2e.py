"""A window that failed with `rollback.dry_run: true` says the rollback was not sent, and
why, first: where it says it failed.

`register --wait` ended "failed: the verdict failed and no rollback was delivered (exit
1)", which reads as a rollback tried and refused; `status`'s state line and the deploy
page's said "failed" alone, and so did `status`'s table (now `failed (dry run)`). Only
the details below them (`rollback  skipped (dry run: …)`, the page's Rollback section)
told of the dry run. Through the real CLI, in a process of its own, against the real
daemon.
"""

from __future__ import annotations

import re

import pytest

from tests.cli_process import awaited_cli
from tests.e2e.conftest import TOKEN, AgentFactory, FlipTarget, environment

pytestmark = pytest.mark.e2e

NOT_SENT = "rollback not sent (rollback.dry_run)"


@pytest.mark.timeout(90)
async def test_a_dry_run_failure_says_the_rollback_was_not_sent_first(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    flip_target.bad = True
    extra = "rollback: {url: 'http://127.0.0.1:9/never', secret: s3cret-0123456789, dry_run: true}"
    agent = await start_agent(environment("staging", flip_target.url, extra=extra))
    connection = ["--url", agent.url, "--token", TOKEN]
    for _ in range(3):  # a window the loaded machine's own stall held is registered again
        code, said = await awaited_cli(
            "register", *connection, "--env", "staging", "--version", "v2", "--wait"
        )
        if "agent overloaded" not in said:
            break
    assert code == 1, said
    (end,) = [line for line in said.splitlines() if re.search(r"\(exit \d+\)$", line)]
    assert end.endswith(f"failed: the verdict failed; {NOT_SENT} (exit 1)"), said
    assert "no rollback was delivered" not in said

    (deploy_id,) = set(re.findall(r"\bdep_[0-9A-Z]{26}\b", said)) or {None}
    assert deploy_id is not None, said
    stored = await agent.get(deploy_id)
    assert stored["state"] == "failed" and stored["rollback"]["state"] == "skipped", stored

    code, shown = await awaited_cli("status", deploy_id, *connection)
    assert code == 0, shown
    (state,) = [line for line in shown.splitlines() if line.lstrip().startswith("state ")]
    assert state.split(None, 1)[1] == f"failed: {NOT_SENT}", shown

    # the list's state column said a plain `failed`, as of a rollback refused
    code, listed = await awaited_cli("status", *connection)
    assert code == 0, listed
    head, *rows = listed.splitlines()
    (row,) = [row for row in rows if row.startswith(deploy_id)]
    column = head.index("STATE")
    assert row[column:].startswith("failed (dry run)  "), listed

    async with agent.http.get(f"{agent.url}/deploys/{deploy_id}", headers=agent.headers) as r:
        page = await r.text()
        assert r.status == 200, page
    line = re.search(r'<p class="state-line">(.*?)</p>', page, re.S)
    assert line is not None, page
    words = " ".join(re.sub(r"<[^>]+>", " ", line.group(1)).split())
    assert words.startswith(f"✖ failed : {NOT_SENT}"), words
