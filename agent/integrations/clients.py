"""Outbound calls to GitHub and Vercel that are not rollbacks: deployment statuses,
protection-rule answers, Rolling Releases approvals, `rollback.then` follow-ups.

Each call is retried a few times on 408/429/5xx/timeouts (honouring `Retry-After`), a
status outside HTTP's 100-599 as a 5xx (RFC 9110 §15); a 4xx that will not change is
returned at once. A read (GET) whose 2xx body was cut short is asked again, as a
provider's query is; a call that acts (POST) is not. Never raises except CancelledError;
tokens never appear in the errors it returns.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent.integrations.asked_waits import keeper
from common.answers import error_said, read_answer
from common.durations import format_duration
from common.retry_after import (
    NOT_AN_HTTP_STATUS,
    is_http_status,
    retry_after_seconds,
    worth_retrying,
)
from common.sleeps import sleep_unless, unless_set

_SNIPPET = 200
RateLimit = Callable[[int, Mapping[str, str], str, float], float | None]
"""(status, headers, body text, now) → seconds to wait when the answer is a rate limit."""


@dataclass(frozen=True, slots=True)
class CallResult:
    ok: bool
    status: int | None
    error: str | None
    data: Any = None
    attempts: int = 1
    gave_up: bool = False
    """Every attempt met an answer worth retrying (a 5xx, 408, 429, a rate limit, a
    timeout, no connection): the provider may take the call later, where a 4xx that will
    not change would refuse it again."""
    unanswered: int = 0
    """Attempts that got no HTTP answer (a timeout, a connection lost): the provider may
    have acted on any of them, though the call failed (its answer was lost). A connection
    never made (refused) is not one: nothing was sent."""
    left: bool = False
    """A stop (`leaving`) came before an attempt, in a wait between two, or while a read's
    was out (let go of): no outcome, nothing of it out; `attempts` says how many were
    made (0: none)."""
    retry_after: float | None = None
    """With `gave_up`: the wait the last answer asked for (`Retry-After`, a rate limit's
    reset), in seconds from its end: a later try of the call is not to come before it."""
    lost: bool = False
    """The call's claim was not taken back after a wait its provider asked for
    (`AskedWait.resume`): another sender took it over meanwhile, and sends it, or the
    store did not answer, and the claim lapsed with the wait. Nothing more of it sent."""
    store_away: bool = False
    """With `lost`: the take-back failed here (`AskedWait.store_away`; `not_back` says
    why: the store did not answer, or a bug), where the log said another sender took the
    call over."""
    not_back: str = ""


CALL_ATTEMPTS = 4
READS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that act on nothing (RFC 9110 §9.2.1): their answer lost is asked again."""
CALL_MAX_BACKOFF_S = 30.0


def call_worst_case_s(timeout_s: float) -> float:
    """The longest one `call` with its default retries can take: every attempt timing out,
    each wait between them at its most (a claim held through a call is held this long)."""
    return CALL_ATTEMPTS * timeout_s + (CALL_ATTEMPTS - 1) * CALL_MAX_BACKOFF_S


async def _sent(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout_s: float,
) -> tuple[aiohttp.ClientResponse, bytes, str, bool]:
    """One request and its answer read: (the response, its body, why some of it was not
    read, whether it was cut short). A call's 2xx cut short is taken all the same by
    `call` (`data` None): it was acted on, and sent again it would be acted on twice; a
    read's is not."""
    async with session.request(
        method,
        url,
        data=body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        allow_redirects=False,
    ) as response:
        raw, unread, cut_short = await read_answer(response, 1024 * 1024)
        return response, raw, unread, cut_short


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
    headers_per_attempt: Callable[[], dict[str, str]] | None = None,
    before_attempt: Callable[[], Awaitable[None]] | None = None,
    timeout_s: float = 10.0,
    attempts: int = CALL_ATTEMPTS,
    backoff: float = 0.5,
    max_backoff: float = CALL_MAX_BACKOFF_S,
    made_before: int = 0,
    redact: Callable[[str], str] = lambda s: s,
    rate_limit: RateLimit | None = None,
    leaving: asyncio.Event | None = None,
) -> CallResult:
    """One logical call with bounded retries; the answer's JSON (if any) in `data`.
    `rate_limit` tells a provider's rate limit among its other answers (GitHub's are 403s
    as often as 429s) and the wait it asks for: retried like a 429. A wait asked for past
    `max_backoff` is waited whole, spending the attempts it spans, or, past the attempts
    left, ends the call (`gave_up`): never asked again inside it. `made_before`: the
    attempts earlier senders made (a follow-up handed back by a stop): the waits go on
    growing from there, where the next sender's began again at the first's.
    `before_attempt` is awaited as each attempt is about to go out (a follow-up counts
    it in the store: a kill -9 lost the count, and the next sender's budget began again).
    `leaving` (set by a stop): no attempt goes out once it is set, and a wait between two ends at
    once (`CallResult.left`), where the stop waited it out within its grace and sent the
    next attempt inside it; a read's attempt out is let go of at once too (a read acts on
    nothing), where the stop waited for its answer. A call that acts is never cut: its
    answer says whether it was taken. A wait the provider asked for is kept in the store
    while it lasts by the task's `AskedWait` (`asked_waits.keeping`), if it set one: a
    kill -9 or a stop in it left the next start sending at once, inside it."""
    status: int | None = None
    error: str | None = None
    unanswered = 0
    attempt = 0  # requests sent
    spent = 0  # of `attempts`: a request each, and the waits a long Retry-After spans
    while spent < attempts:
        if leaving is not None and leaving.is_set():
            return CallResult(False, status, error, None, attempt, left=True, unanswered=unanswered)
        attempt += 1
        spent += 1
        if before_attempt is not None:
            await before_attempt()
        retry_after: float | None = None
        sent = dict(headers)
        if headers_per_attempt is not None:
            sent.update(headers_per_attempt())
        sending = _sent(session, method, url, body, sent, timeout_s)
        try:
            if leaving is not None and method.upper() in READS:
                # a read out when a stop comes is let go of at once: it acts on nothing,
                # and the next start asks again, where the stop waited for its answer
                # (up to its timeout, then a wait and a second attempt)
                left, answered = await unless_set(leaving, sending)
                if left or answered is None:
                    return CallResult(
                        False, status, error, None, attempt, left=True, unanswered=unanswered
                    )
            else:
                answered = await sending
            response, raw, unread, cut_short = answered
            status = response.status
            # an HTTP-date is read against now (against 0 it was decades away: max_backoff)
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), time.time())
        except TimeoutError:
            status, error = None, f"timed out after {timeout_s:g}s"
            unanswered += 1
        except (aiohttp.ClientError, OSError) as exc:
            status, error = None, redact(f"{type(exc).__name__}: {exc}")[:_SNIPPET]
            # a connection never made (refused, no such host) sent nothing to act on
            unanswered += not isinstance(exc, aiohttp.ClientConnectorError)
        else:
            read = method.upper() in READS
            if 200 <= status < 300 and unread and read:
                # a read's 2xx whose body did not come is no answer (it was taken as one
                # with no data: no rolling release, no status listed): cut short, asked
                # again, as a provider's query; one that does not decode would lie again
                error = redact(f"HTTP {status}: {unread}")
                if not cut_short:
                    return CallResult(False, status, error, None, attempt, unanswered=unanswered)
            elif 200 <= status < 300:
                try:
                    data = json.loads(raw) if raw.strip() else None
                except ValueError:
                    data = None
                return CallResult(True, status, None, data, attempt, unanswered=unanswered)
            else:
                text = unread or raw.decode("utf-8", "replace")
                # GitHub's or Vercel's own error message, not the JSON around it
                snippet = error_said(text, redact)
                error = redact(f"HTTP {status}" + (f": {snippet}" if snippet else ""))
                if not is_http_status(status):
                    error += NOT_AN_HTTP_STATUS
                limited = (
                    rate_limit(status, response.headers, text, time.time())
                    if rate_limit is not None
                    else None
                )
                if limited is not None:
                    retry_after = limited
                elif not worth_retrying(status):
                    return CallResult(False, status, error, None, attempt, unanswered=unanswered)
        if spent < attempts:
            if retry_after is None:
                delay = min(max_backoff, random.random() * backoff * 2 ** (made_before + attempt))
            elif retry_after <= max_backoff or max_backoff <= 0:  # 0: no waits at all
                delay = min(retry_after, max_backoff)
            else:
                # asked for longer than one wait: not asked again inside it (GitHub may ban
                # an integration that goes on while limited), where it was asked again
                # after `max_backoff`; the waits it spans are spent, so the call lasts no
                # longer than its worst case (`call_worst_case_s`)
                spans = math.ceil(retry_after / max_backoff)
                if spent + spans > attempts:
                    error = (
                        f"{error} (asked to wait {format_duration(retry_after)},"
                        " past this call's retries)"
                    )
                    break
                spent += spans - 1
                delay = retry_after
            kept = keeper() if retry_after is not None and delay > 0 else None
            if kept is not None:
                await kept.keep(delay)
            # this module's sleep, so a test that swaps it records the waits asked for
            left = await sleep_unless(leaving, delay, sleep=asyncio.sleep)
            if kept is not None and not left and not await kept.resume():
                return CallResult(
                    False,
                    status,
                    error,
                    None,
                    attempt,
                    unanswered=unanswered,
                    lost=True,
                    store_away=kept.store_away,
                    not_back=kept.not_back,
                )
    return CallResult(
        False,
        status,
        error,
        None,
        attempt,
        gave_up=True,
        unanswered=unanswered,
        retry_after=retry_after,
    )
