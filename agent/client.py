"""A small async client of API v1, for the CLI (`register`, `status`) and the demo.

It speaks the same pydantic models the server validates with (`agent.api.models`),
so a response that does not fit the contract fails here, loudly, rather than as a
`KeyError` in a pipeline. Every failure is a `ClientError` whose message is one
line a person can act on; nothing here prints or exits.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from pydantic import BaseModel, ValidationError

from agent import __version__
from agent.api.models import Deploy, DeployList, DeployRequest
from agent.deferred_ca import load_before_a_redirect, load_ca_certificates
from agent.records import WindowState
from common.durations import format_duration
from common.os_words import os_reason
from common.tls_words import tls_reason

M = TypeVar("M", bound=BaseModel)

RETRYABLE_STATUSES = frozenset({502, 503, 504})
"""What a proxy in front of a restarting agent answers; worth another try."""
RIDE_OUT_PACE_S = 1.0
"""Between a registration's tries while the agent is away past its quick retries: the
`Retry-After` the agent gives while its store does not answer."""
OPEN_STATES = frozenset({"scheduled", "watching"})
"""A window in these states has no final outcome yet."""

FASTEST_POLL_S = 0.25
"""The shortest wait between two polls of `wait`, however short the rounds are."""


class PollPace:
    """How long `PostflightClient.wait` waits before its next poll: half the window's round
    interval, as measured from the rounds seen to pass, between `fastest` and `slowest`.
    At a fixed 2 s a window of 500 ms rounds went by 4 rounds a poll: a breach short of
    its `failure_limit` (`1 of 3 rounds`) began and failed between two polls, never shown.
    Until two rounds have been seen to start, the wait starts at `fastest` and doubles
    while nothing changes (starting again at each change), so a window of short rounds
    is caught at once and one of long rounds costs a few polls more than before."""

    def __init__(
        self,
        slowest: float,
        fastest: float = FASTEST_POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slowest = slowest
        self.fastest = min(fastest, slowest)  # a `poll_interval` under it is kept as asked
        self._clock = clock
        self._guess = self.fastest
        self._seen: tuple[int, str] | None = None  # (rounds, state) of the last answer
        self._first: tuple[float, int] | None = None  # (when, rounds) of the first round seen
        self.interval: float | None = None
        """The rounds' interval as measured, once two rounds were seen to start."""

    def seen(self, deploy: Deploy | None) -> None:
        """A poll's answer (None: no answer); the rounds it has measure the interval."""
        now = self._clock()
        if deploy is None:
            self._guess = min(self.slowest, self._guess * 2)
            return
        before, self._seen = self._seen, (deploy.rounds, deploy.shown_state)
        if before is None:
            return
        if self._seen == before:
            self._guess = min(self.slowest, self._guess * 2)
            return
        self._guess = self.fastest
        if deploy.rounds > before[0]:
            if self._first is None:
                self._first = (now, deploy.rounds)
            elif deploy.rounds > self._first[1]:
                self.interval = (now - self._first[0]) / (deploy.rounds - self._first[1])

    def next(self) -> float:
        """Seconds until the next poll: by the interval while the window watches; after it
        (a rollback being delivered) or before a round, the doubling guess."""
        if self.interval is None or self._seen is None or self._seen[1] not in OPEN_STATES:
            return self._guess
        return min(self.slowest, max(self.fastest, self.interval / 2))


def rollback_pending(deploy: Deploy) -> bool:
    """A failed window whose rollback was requested and is still being delivered."""
    return (
        deploy.state == "failed"
        and deploy.rollback is not None
        and deploy.rollback.state == "pending"
    )


class ClientError(Exception):
    """A failure to report in one line (the CLI exits 2)."""


class Unreachable(ClientError):
    """No HTTP answer at all: refused, DNS, TLS, timeout."""


class BadResponse(ClientError):
    """An answer that is not the API's (a proxy's HTML page, a newer incompatible agent)."""


class ApiError(ClientError):
    """The agent answered with an error (a problem+json document when it is the agent)."""

    def __init__(
        self,
        status: int,
        problem: Mapping[str, Any] | None,
        fallback: str,
        *,
        base_url: str = "",
        from_agent: bool = True,
    ) -> None:
        self.status = status
        self.problem = dict(problem) if problem is not None else None
        self.base_url = base_url
        self.from_agent = from_agent
        """The answer is a problem+json document, as the agent's are; a 404 that is not
        came from another server at `--url`, and says nothing of the deploy asked for."""
        super().__init__(self._message(fallback))

    @property
    def field_errors(self) -> list[tuple[str, str]]:
        """`(dotted.loc, msg)` of a 422."""
        out: list[tuple[str, str]] = []
        for error in (self.problem or {}).get("errors") or []:
            if isinstance(error, dict):
                loc = ".".join(str(p) for p in error.get("loc") or []) or "body"
                out.append((loc, str(error.get("msg", ""))))
        return out

    def _message(self, fallback: str) -> str:
        if self.status == 401:
            return "the agent refused the token (401): check --token or $POSTFLIGHT_TOKEN"
        problem = self.problem or {}
        detail = str(problem.get("detail") or problem.get("title") or fallback).strip()
        if self.field_errors:
            detail = "; ".join(f"{loc}: {msg}" for loc, msg in self.field_errors)
        if self.status in (404, 405) and not self.from_agent:
            said = f" ({detail})" if detail != f"HTTP {self.status}" else ""  # an empty body
            return (
                f"{self.base_url} answered HTTP {self.status}{said}, not as a Postflight"
                " agent does: is --url (or $POSTFLIGHT_URL) the agent's address?"
            )
        path = urlsplit(self.base_url).path.rstrip("/")
        if self.status == 404 and detail.startswith("no such route") and path:
            return (
                f"{self.base_url} has no such route (HTTP 404): --url is the agent's base URL,"
                f" without the path {path}"
            )
        return f"{detail} (HTTP {self.status})"


class WaitTimeout(ClientError):
    """The window was still open when the caller's patience ran out."""

    def __init__(
        self, deploy: Deploy, waited_s: float, unreachable: ClientError | None = None
    ) -> None:
        self.deploy = deploy
        self.waited_s = waited_s
        self.unreachable = unreachable
        """Why the last poll got no answer, when it did not: `deploy` is then the state
        the agent last gave, not one known to hold now."""
        super().__init__(
            f"{deploy.id} is still {deploy.state} after waiting {format_duration(round(waited_s))}"
        )


def _segment(value: str) -> str:
    """`value` as one path segment: an id such as `../../metrics` cannot reach another route."""
    return quote(value, safe="")


def without_password(url: str) -> str:
    """`url` with a `user:password@` shown as `***@`, for quoting it back in a message."""
    return re.sub(r"^([A-Za-z][\w+.-]*://)?[^/@]*@", r"\1***@", url)


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class PostflightClient:
    """`async with PostflightClient(url, token) as api: await api.register(...)`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ClientError(
                "the agent URL must start with http:// or https://"
                f" (got {without_password(base_url)!r})"
            )
        if "@" in base_url.split("://", 1)[1].split("/", 1)[0]:
            # aiohttp refuses URL credentials beside the Authorization header, and they would
            # be sent to the agent instead of the token
            raise ClientError(
                "the agent URL must not carry credentials (user:password@); the token goes"
                " in --token or $POSTFLIGHT_TOKEN"
            )
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.retries = max(1, retries)
        self.backoff = backoff
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> PostflightClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self.base_url.startswith("https://"):
                load_ca_certificates()
            redirects = aiohttp.TraceConfig()  # an agent behind a proxy may redirect to https
            redirects.on_request_redirect.append(load_before_a_redirect)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": f"postflight-cli/{__version__}"},
                trace_configs=[redirects],
            )
        return self._session

    # --- the API ----------------------------------------------------------------

    async def register(
        self,
        request: DeployRequest,
        *,
        idempotency_key: str | None = None,
        ride_out_s: float = 0.0,
        on_unreachable: Callable[[ClientError], None] | None = None,
    ) -> tuple[Deploy, bool]:
        """Open a window; `(deploy, replayed)`. With a key, connection failures are retried
        safely: the agent answers a repeat with the first response. `ride_out_s`: an agent
        still answering 502, 503 or 504 after those quick tries (its store restarting, a
        proxy's answer while it restarts) is asked again every `RIDE_OUT_PACE_S` until
        that many seconds from the first (`register --wait` gives its `--timeout`, as its
        polls ride it out), each answer told to `on_unreachable`. One that cannot be
        reached at all (a wrong `--url`, nothing listening) is not waited for."""
        body = request.model_dump(mode="json", exclude_none=True)
        if not body.get("labels"):
            body.pop("labels", None)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        attempts = self.retries if idempotency_key else 1
        deadline = time.monotonic() + ride_out_s
        while True:
            try:
                status, data = await self._call(
                    "POST", "/v1/deploys", json_body=body, headers=headers, attempts=attempts
                )
            except ApiError as exc:
                left = deadline - time.monotonic()
                if not (idempotency_key and exc.status in RETRYABLE_STATUSES and left > 0):
                    raise
                if on_unreachable is not None:
                    on_unreachable(exc)
                await asyncio.sleep(min(RIDE_OUT_PACE_S, left))
                continue
            return self._parse(Deploy, data), status == 200

    async def get_deploy(self, deploy_id: str) -> Deploy:
        _, data = await self._call("GET", f"/v1/deploys/{_segment(deploy_id)}")
        return self._parse(Deploy, data)

    async def list_deploys(
        self,
        *,
        environment: str | None = None,
        state: WindowState | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DeployList:
        params = {
            k: str(v)
            for k, v in (
                ("environment", environment),
                ("state", state),
                ("limit", limit),
                ("cursor", cursor),
            )
            if v is not None
        }
        _, data = await self._call("GET", "/v1/deploys", params=params)
        return self._parse(DeployList, data)

    async def cancel_deploy(self, deploy_id: str) -> Deploy:
        _, data = await self._call("POST", f"/v1/deploys/{_segment(deploy_id)}/cancel")
        return self._parse(Deploy, data)

    async def request_rollback(self, deploy_id: str, reason: str) -> Deploy:
        """A manual rollback (contract §7): 202 and the deploy; 409 raises ApiError."""
        _, data = await self._call(
            "POST", f"/v1/deploys/{_segment(deploy_id)}/rollback", json_body={"reason": reason}
        )
        return self._parse(Deploy, data)

    async def wait(
        self,
        deploy_id: str,
        *,
        give_up_after: float,
        poll_interval: float = 2.0,
        on_update: Callable[[Deploy], Awaitable[None] | None] | None = None,
        on_unreachable: Callable[[ClientError], None] | None = None,
        settle_rollback: float = 0.0,
    ) -> Deploy:
        """Poll until the window ends (leaves `watching`, scheduled or not); `WaitTimeout`
        after `give_up_after` s. Polls every `poll_interval` s, or as often as the window's
        rounds start when that is more often (`PollPace`), so each round is seen.

        A window is `failed` from its verdict until its rollback is delivered (then
        `rolled_back`): with `settle_rollback`, a `failed` window whose rollback is still
        `pending` is polled up to that many seconds more (never past `give_up_after`), and
        returned as it then is.

        An agent that is briefly unreachable (restarting, a proxy's 503) is retried
        until the timeout; a refusal (401, 404) ends the wait at once.
        """
        started = time.monotonic()
        deadline = started + give_up_after
        last: Deploy | None = None
        settle_until: float | None = None
        failing: ClientError | None = None  # the latest poll's, while the agent is away
        pace = PollPace(poll_interval)
        while True:
            answer: Deploy | None = None
            try:
                last = answer = await self.get_deploy(deploy_id)
            except (Unreachable, BadResponse) as exc:
                failing = exc
                if on_unreachable is not None:
                    on_unreachable(exc)
            except ApiError as exc:
                if exc.status not in RETRYABLE_STATUSES:
                    raise
                failing = exc
                if on_unreachable is not None:
                    on_unreachable(exc)
            else:
                failing = None
                if on_update is not None:
                    result = on_update(last)
                    if result is not None:
                        await result
                if last.state not in OPEN_STATES:
                    if not rollback_pending(last):
                        return last
                    if settle_until is None:
                        settle_until = min(time.monotonic() + settle_rollback, deadline)
                    if time.monotonic() >= settle_until:
                        return last
            remaining = deadline - time.monotonic()
            if settle_until is not None:
                remaining = min(remaining, settle_until - time.monotonic())
                if remaining <= 0:
                    assert last is not None
                    return last
            if remaining <= 0:
                if last is None:
                    raise Unreachable(f"the agent at {self.base_url} did not answer in time")
                raise WaitTimeout(last, time.monotonic() - started, failing)
            pace.seen(answer)
            await asyncio.sleep(min(pace.next(), remaining))

    # --- plumbing ---------------------------------------------------------------

    def _parse(self, model: type[M], data: Any) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise BadResponse(
                f"the agent's answer does not fit the API ({where}: {first['msg']});"
                " is the URL a Postflight agent of a compatible version?"
            ) from None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        attempts: int = 1,
    ) -> tuple[int, Any]:
        for attempt in range(1, attempts + 1):
            try:
                return await self._once(method, path, json_body, params, headers)
            except (Unreachable, ApiError) as exc:
                retryable = isinstance(exc, Unreachable) or (
                    isinstance(exc, ApiError) and exc.status in RETRYABLE_STATUSES
                )
                if not retryable or attempt == attempts:
                    raise
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[int, Any]:
        url = self.base_url + path
        all_headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        all_headers.update(headers or {})
        try:
            async with self.session.request(
                method, url, json=json_body, params=params, headers=all_headers
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
                content_type = response.content_type
        except TimeoutError:
            raise Unreachable(
                f"the agent at {self.base_url} did not answer within {self.timeout:g}s"
            ) from None
        except aiohttp.InvalidURL:
            raise ClientError(f"{self.base_url!r} is not a valid URL") from None
        except aiohttp.ClientSSLError as exc:  # before its base, ClientConnectorError
            reason = tls_reason(exc)
            raise Unreachable(f"cannot reach the agent at {self.base_url}: {reason}") from None
        except aiohttp.ClientConnectorError as exc:
            reason = os_reason(exc.os_error)
            raise Unreachable(f"cannot reach the agent at {self.base_url}: {reason}") from None
        except aiohttp.ClientError as exc:
            reason = _one_line(str(exc)) or type(exc).__name__
            raise Unreachable(f"cannot talk to the agent at {self.base_url}: {reason}") from None
        except ValueError as exc:  # aiohttp refuses to build the request (no value quoted)
            reason = _one_line(str(exc)) or type(exc).__name__
            raise ClientError(
                f"cannot send this request: {reason} (a control character in --token or"
                " another option?)"
            ) from None
        data: Any = None
        if content_type.endswith("json"):
            try:
                data = json.loads(text)
            except ValueError:
                data = None
        if status >= 400:
            problem = data if isinstance(data, dict) else None
            fallback = _one_line(text) or f"HTTP {status}"
            raise ApiError(
                status,
                problem,
                fallback,
                base_url=self.base_url,
                from_agent=content_type == "application/problem+json",
            )
        if data is None:
            raise BadResponse(
                f"the answer from {url} is not JSON (HTTP {status}, {content_type});"
                " is the URL a Postflight agent?"
            )
        return status, data
