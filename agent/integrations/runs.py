"""Whether a protection rule's workflow run was cancelled: GitHub refuses an answer to
its rule (422) when nothing waits for one any more, and a cancelled run is one such
case, where nothing is left to protect. The run is read through `GET /repos/{owner}/
{repo}/actions/runs/{run_id}` (GitHub's "Get a workflow run": `status` is `completed`
and `conclusion` is `cancelled`), which the App's Actions read permission allows (the
reference: a protection rule's App has it)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import aiohttp

from agent.integrations.clients import call
from agent.integrations.targets import GITHUB_HEADERS, github_rate_limit_wait

_CALLBACK = re.compile(
    r"^(.+/repos/[^/?#]+/[^/?#]+/actions/runs/[0-9]+)/deployment_protection_rule$"
)


def run_url(callback_url: str) -> str | None:
    """The run a protection rule's callback URL answers (`…/actions/runs/{run_id}`), or
    None when the URL is not one GitHub gives (nothing is read then)."""
    found = _CALLBACK.match(callback_url)
    return found.group(1) if found else None


def cancelled(run: Any) -> bool:
    """Whether GitHub's workflow run is over, cancelled: its `status` is `completed` and
    its `conclusion` is `cancelled`. A run still waiting, one that ended otherwise, or an
    answer of any other shape is not (any doubt: on-call is paged, as before)."""
    return (
        isinstance(run, dict)
        and run.get("status") == "completed"
        and run.get("conclusion") == "cancelled"
    )


async def run_was_cancelled(
    session: aiohttp.ClientSession,
    callback_url: str,
    token: str,
    *,
    timeout_s: float,
    redact: Callable[[str], str] = lambda s: s,
    leaving: asyncio.Event | None = None,
) -> tuple[bool, str]:
    """(whether the rule's run was cancelled, what the read found, for the log): read
    after GitHub refused the rule's first answer with a 422. Two attempts and a short
    wait: it is read under the gate's claim, after the answer's own retries."""
    url = run_url(callback_url)
    if url is None:
        return False, "its run could not be named from the callback URL"
    result = await call(
        session,
        "GET",
        url,
        headers={**GITHUB_HEADERS, "Authorization": f"Bearer {token}"},
        timeout_s=timeout_s,
        attempts=2,
        max_backoff=2.0,
        redact=redact,
        rate_limit=github_rate_limit_wait,
        leaving=leaving,
    )
    if not result.ok:
        return False, f"its run could not be read ({result.error or 'no answer'})"
    if cancelled(result.data):
        return True, "its run was cancelled: nothing waits for an answer"
    data = result.data if isinstance(result.data, dict) else {}
    return False, (
        f"its run is {data.get('status')!s}"
        + (f", {data['conclusion']}" if data.get("conclusion") else "")
    )
