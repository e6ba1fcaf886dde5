"""What every HTTP-backed provider shares: one session, a budget, retries, metrics.

Each provider (Sentry, New Relic, Prometheus) subclasses `HttpProvider` and only
says how to turn a rule into a `Plan` (the request(s) and how to read the answer).
This module owns everything that must be the same for all of them:

- one `aiohttp.ClientSession` per provider, created lazily inside the running loop
  (a session made outside a loop binds to the wrong one), closed by `aclose`;
- a semaphore bounding requests in flight (`max_in_flight`);
- a budget: `timeout` bounds one whole fetch, every attempt, backoff and page
  included; `request_timeout` bounds one attempt;
- retries for 5xx, 408, timeouts, connection errors and 429 (not a TLS failure no retry
  mends: `common.tls_words.tls_lasting`), with exponential backoff and
  jitter, honouring the provider's hint (a 429's reset, a Retry-After on a 429 or a
  503), but never sleeping past the budget: a reset 40 s away fails the fetch now
  ("rate limited … retry in 40s") instead of holding the round, and the fetches after
  it (the next rounds') send nothing to that URL until the reset;
- single flight: rules sharing a query over the same period share one request;
- fail soft: `fetch` never raises (except cancellation); any failure becomes
  `Observation(value=None, error=<short reason>)` and counts
  `postflight_provider_requests_total{result="error"}`; fetches that keep failing are
  logged when they start, once a minute, and when the provider answers again
  (`agent.providers.outages`), not at every round;
- a fetch that ran out of time while the agent's own event loop was stalled is the
  agent's (`agent.providers.agent_lag`): `Observation(agent_lag=True)`, counted in
  `postflight_provider_agent_stalls_total`, never the provider's error.

Why a small loop rather than a retry library (tenacity, backoff, stamina): the
wait is decided by the answer (X-Sentry-Rate-Limit-Reset, Retry-After, a GraphQL
`TOO_MANY_REQUESTS` inside an HTTP 200) and capped by a deadline shared with
pagination, which is ten clear lines here and contortions in a decorator; it also
adds no dependency.

Secrets: credentials live only in the session's default headers. Text that comes
from outside (an answer's detail, an exception's message) goes through `redact` (the
configuration's secrets, URL credentials, bearer tokens) where it is quoted; every
message that leaves this module also has the provider's own secrets masked. Our own
wording is not passed through the pattern-based scrubber, which would turn
"Sentry token rejected" into "Sentry token ***".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from multidict import CIMultiDictProxy
from pydantic import BaseModel, SecretStr, ValidationError

from agent.analysis.describe import is_rate
from agent.analysis.types import Observation, Rule
from agent.providers.agent_lag import WATCHING, FetchLag, Span, agent_words, watching
from agent.providers.base import DeployScope, Period
from agent.providers.outages import FailingFetches
from agent.providers.provider_settings import HttpProviderSettings
from common.answers import read_answer
from common.durations import format_duration
from common.redaction import MASK, Redactor
from common.retry_after import retry_after_seconds as parse_retry_after
from common.tls_words import tls_lasting, tls_reason
from common.tracebacks import without_tracebacks

if TYPE_CHECKING:  # aiohttp's client is imported where a request is made: the settings load
    # the provider plugins for their config models alone (validate-config, schema)
    import aiohttp

    from agent.metrics import Metrics  # prometheus_client: the daemon's, not the settings'

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

Params = Sequence[tuple[str, str]]
Redact = Callable[[str], str]

MAX_BODY_BYTES = 16 * 1024 * 1024
"""A provider answer larger than this is refused (a misconfigured query, not data)."""
BACKOFF_BASE = 0.25
BACKOFF_CAP = 4.0
MOST_COUNTED = 2**64
"""No count can be more (64-bit: ClickHouse's `count()` under Sentry, NRDB's): a figure past
it is an answer not understood, which the judge's float maths cannot take either."""
SUCCESS_CACHE_SECONDS = 60.0
"""How long a successful answer is reused for the same query and exact period.

The key includes the period, so reuse never mixes rounds; this only bounds memory
and lets rules fetched one after another in the same round share a request."""


class ProviderError(Exception):
    """A failure explained for a person: becomes `Observation.error` as written.

    By default the provider answered, but not usably (a rejected key or query, an answer
    we cannot read): something to fix in the configuration, not an outage."""

    answered = True
    not_yet = False
    agent_lag = False


class ProviderNotYet(ProviderError):
    """The provider answered that it has nothing there yet (an environment with no event
    so far): not a fix to make, it comes with the first event."""

    not_yet = True


class ProviderUnreachable(ProviderError):
    """No usable answer came at all: no connection, no answer in time, or 5xx/429 until
    the retries or the budget ran out. Usually an outage that passes."""

    answered = False


class AgentLagged(ProviderUnreachable):
    """No answer was read in time because the agent's own loop stalled, and the provider
    did nothing wrong meanwhile: the agent's failure (`agent.providers.agent_lag`)."""

    agent_lag = True


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, read in full (bounded by MAX_BODY_BYTES)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    unread: str = ""
    """Why its body could not be read (`common.answers.read_answer`; `body` is empty
    then): the status still classes it, so a 5xx is retried and a 4xx said as such."""

    def json(self, title: str) -> Any:
        if self.unread:
            raise ProviderError(f"{title} answered {self.status} {self.unread}")
        try:
            return json.loads(self.body)
        except ValueError:
            raise ProviderError(
                f"malformed answer from {title} (HTTP {self.status}, not JSON)"
            ) from None


@dataclass(frozen=True, slots=True)
class Retry:
    """Why an attempt should be retried, and the provider's hint of when."""

    reason: str
    after: float | None = None
    stall: tuple[float, float] | None = None
    """(stalled, waited): a timeout the agent's stalled loop explains (not the provider's)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How one rule is fetched for one period: the work behind a single flight.

    `key` identifies the request(s) exactly (query, period, release), `query` is what
    an alert shows as the query used, `run(deadline)` does the I/O and parsing;
    `seconds` (the period's length) is stamped on the observation so the judge can
    pool periods and turn counts into rates.
    """

    key: Hashable
    query: str
    run: Callable[[float], Awaitable[Observation]]
    seconds: float | None = None


def period_seconds(period: Period) -> float:
    return max(0.0, period.end - period.start)


def parse_model(model: type[M], data: Any, title: str) -> M:
    """Validate an answer's shape; a mismatch is a short, human error: where in the answer
    and what was wrong (`data: Field required`), never the answer's own text (an echo of
    the request, a proxy's page), which pydantic's message quotes."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the answer"
        detail = f"{where}: {first['msg']}"
        raise ProviderError(f"unexpected answer from {title} ({detail})") from None
    except ValueError as exc:
        raise ProviderError(f"unexpected answer from {title} ({type(exc).__name__})") from None


def retryable_status(status: int) -> bool:
    """A 5xx worth another attempt: 500 and 502 on, as New Relic's own Go client retries
    (internal/http/retry.go), gateways' outage codes included (Cloudflare's 520-524 and
    the like, with a page of HTML: the provider's side is down, not our configuration);
    only 501, Not Implemented, will not change. And 408: a proxy in front of the provider
    timed the request out (RFC 9110 §15.5.9 says it may be repeated)."""
    return status in (408, 500) or 502 <= status <= 599


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` as seconds from now (delta-seconds or an HTTP date)."""
    return parse_retry_after(headers.get("Retry-After"), time.time())


def shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HttpProvider:
    """Base of the HTTP providers; see the module docstring for what it guarantees."""

    name: str
    """The provider's name in metrics and logs (its entry-point name)."""
    title: ClassVar[str]
    """How people call the provider in messages: `Sentry`, `New Relic`."""
    marks: bool = False
    """Whether `mark` writes anything (`markers: true`): a rollback claims a marker of
    only such a provider (`agent.windows.markers.marking`)."""

    def __init__(
        self,
        config: HttpProviderSettings,
        *,
        metrics: Metrics,
        redact: Redact | None,
    ) -> None:
        secrets = [
            value.get_secret_value()
            for name in type(config).model_fields
            if isinstance(value := getattr(config, name), SecretStr)
        ]  # the provider's own credentials, scrubbed even without `redact`
        self.timeout = config.timeout
        self.attempt_timeout = min(config.attempt_timeout, config.timeout)
        self.max_attempts = config.max_attempts
        self.max_in_flight = config.max_in_flight
        self._metrics = metrics
        self._outer_redact = redact
        self._own_redact = Redactor(secrets)
        self._secrets = sorted({v for v in secrets if v}, key=len, reverse=True)
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._flights: dict[Hashable, tuple[float, asyncio.Task[Observation]]] = {}
        self._closed = False
        self._quiet_until: dict[str, tuple[float, str]] = {}
        """Per URL: (loop time, why) the provider asked us not to come back before then
        (the reset of a 429, a Retry-After). Kept across fetches, so the next round's fetch
        does not send what is sure to be refused again; those that passed go when one is
        added (`_hold_off_from`)."""
        self.http_requests = 0
        """HTTP attempts sent so far (for benchmarks and tests)."""
        self.failing = FailingFetches(self.name, log)
        """The log of fetches that keep failing (`agent.providers.outages`)."""

    # -- to be provided by each provider -------------------------------------------

    def default_headers(self) -> dict[str, str]:
        """Headers on every request (credentials go here, nowhere else)."""
        return {}

    def plan(self, rule: Rule, scope: DeployScope, period: Period, release: str | None) -> Plan:
        raise NotImplementedError

    def retry_for(self, answer: Answer) -> Retry | None:
        """Whether this answer is worth another attempt. Default: 429 and 5xx."""
        if answer.status == 429:
            return Retry(
                f"{self.title} is rate limiting (429)", retry_after_seconds(answer.headers)
            )
        if retryable_status(answer.status):
            # a 503's Retry-After says how long the server expects to be down (RFC 9110
            # §10.2.3): not asked again before then, as after a 429
            return Retry(
                f"{self.title} answered {answer.status}", retry_after_seconds(answer.headers)
            )
        return None

    # -- the Provider protocol ------------------------------------------------------

    async def fetch(
        self, rule: Rule, scope: DeployScope, period: Period, release: str | None
    ) -> Observation:
        """The rule's observation over `period`; never raises (see module docstring)."""
        try:
            plan = self.plan(rule, scope, period, release)
        except ProviderError as exc:
            self._count("error", None)
            message = self.mask_secrets(str(exc))
            self.failing.failed((scope.environment, rule.name), rule.name, message)
            return Observation(
                value=None, error=message, answered=exc.answered, not_yet=exc.not_yet
            )
        # the baseline's fetch and the round's fail together when a provider is down: the
        # log says which is which
        what = "baseline" if period.end <= scope.deployed_at else "since the deploy"
        label = f"{rule.name} ({what})"
        observation = self._on_scale(rule, await self._single_flight(plan))
        if observation.agent_lag:  # the agent's own stall: says nothing of the provider
            log.warning("%s: rule %s: %s", self.name, label, observation.error)
        elif observation.error:
            self.failing.failed((scope.environment, rule.name), label, observation.error)
        else:
            self.failing.answered((scope.environment, rule.name), label)
        return observation

    def _on_scale(self, rule: Rule, observation: Observation) -> Observation:
        """A rate rule's figure must be a fraction: 1.2 for `error_rate` is a percentage
        (NRQL's `percentage()`, `100 * …` in PromQL) read as 120%, and judged so it rolls
        back a release at 1.2% errors against `max: 0.05`. Such an answer cannot be read
        as the rule says: no data, and the provider's alert says why. So is a count past
        any 64-bit count (MOST_COUNTED), whatever the rule."""
        counted = [n for n in (observation.count, observation.total) if n is not None]
        if any(n > MOST_COUNTED for n in counted):
            # 64-bit counts at most (Sentry's ClickHouse, NRDB): the judge raised on 1e300
            message = (
                f"{self.title} answered a count of {max(counted):g}, more than any count can be"
            )
            return dataclasses.replace(
                observation, value=None, count=None, total=None, error=message, answered=True
            )
        value = observation.value
        if not is_rate(rule.metric) or not observation.has_data or value is None:
            return observation
        if 0.0 <= value <= 1.0:
            return observation
        message = (
            f"{self.title} answered {value:g} for {rule.metric}, which is a fraction from 0 to"
            " 1: a query answering a percentage (0-100) must divide it by 100"
        )
        return dataclasses.replace(
            observation, value=None, count=None, total=None, error=message, answered=True
        )

    async def mark(self, scope: DeployScope, event: Literal["deploy", "rollback"]) -> str | None:
        """No markers unless a provider supports and enables them."""
        return None

    def link(
        self,
        rule: Rule,
        scope: DeployScope,
        period: Period,
        *,
        release: str | None = None,
    ) -> str | None:
        return None

    async def aclose(self) -> None:
        """Cancel shared fetches still running and close the session."""
        self._closed = True
        tasks = [task for _, task in self._flights.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._flights.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- helpers for providers ----------------------------------------------------------

    def redact(self, text: str) -> str:
        """Scrub text that came from outside before quoting it in a message."""
        text = self._own_redact(text)
        return self._outer_redact(text) if self._outer_redact else text

    def quoted(self, text: str) -> str:
        """Text from outside as a message quotes it: scrubbed (`redact`), then shortened; the
        other way round, a secret cut at the limit would show its start, unmatched."""
        return shorten(self.redact(text))

    def refuse_redirect(self, answer: Answer, setting: str) -> None:
        """Raise for a 3xx, saying where it points: redirects are not followed (the
        credentials would go where an answer sends them), and where it points is most
        often the URL to configure (https:// for http://, a moved path)."""
        if not 300 <= answer.status < 400:
            return
        parts = urlsplit(answer.headers.get("Location", ""))
        shown = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
        where = f" to {self.quoted(shown)}" if shown else ""
        raise ProviderError(
            f"{self.title} answered {answer.status}, a redirect{where}: set {setting} to"
            " where it points (redirects are not followed, so that the credentials never go"
            " where an answer sends them)"
        )

    def mask_secrets(self, message: str) -> str:
        """Last line of defence on every outgoing message: our own secrets, exactly."""
        for secret in self._secrets:
            message = message.replace(secret, MASK)
        return message

    async def send(
        self,
        method: str,
        url: str,
        *,
        deadline: float,
        params: Params | None = None,
        json_body: Any = None,
    ) -> Answer:
        """One request with retries, within `deadline` (loop time). Raises ProviderError."""
        import aiohttp  # only where a request is made: see the imports

        loop = asyncio.get_running_loop()
        fetch = WATCHING.get()
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._out_of_time(
                    fetch,
                    fetch.span.stall() if fetch else None,
                    f"{self.title} did not answer within {format_duration(self.timeout)}",
                )
            await self._hold_off(url, deadline)
            span = Span.begin() if fetch else None
            lasting = False
            try:
                answer = await self._attempt(method, url, deadline, params, json_body)
            except TimeoutError:
                retry = Retry(
                    f"{self.title} did not answer within {format_duration(self.attempt_timeout)}",
                    stall=span.stall() if span else None,
                )
            except aiohttp.ClientError as exc:
                retry = Retry(f"could not reach {self.title} ({_describe(exc)})")
                # a certificate no retry verifies: failed at once, an outage all the same
                # (no data, inconclusive), where each was sent `max_attempts` times
                lasting = isinstance(exc, aiohttp.ClientSSLError) and tls_lasting(exc)
                without_tracebacks(exc)  # kept as words only: no cycle left for the collector
            else:
                maybe = self.retry_for(answer)
                if maybe is None:
                    return answer
                retry = maybe
            if fetch is not None and retry.stall is None:
                fetch.said = retry.reason
            if retry.after is not None and retry.after > 0:
                # kept on the last attempt too: the next fetch must not ask before then
                self._hold_off_from(url, loop.time(), retry)
            if attempt >= self.max_attempts or lasting:
                raise self._out_of_time(
                    fetch,
                    retry.stall,
                    retry.reason if attempt == 1 else f"{retry.reason} (after {attempt} attempts)",
                )
            delay = self._backoff(attempt) if retry.after is None else max(0.05, retry.after)
            if loop.time() + delay >= deadline:
                # the provider's own wait past the budget, said so; a shorter one (0.4 ms,
                # said `retry in 0ms, past this fetch's 1s budget`) is not what left no room
                if retry.after is not None and loop.time() + retry.after >= deadline:
                    raise ProviderUnreachable(
                        f"{retry.reason}; retry in {format_duration(retry.after)}, past this"
                        f" fetch's {format_duration(self.timeout)} budget"
                    )
                raise self._out_of_time(
                    fetch, retry.stall, f"{retry.reason}; no time left to retry"
                )
            log.debug(
                "%s: %s; retrying in %s",
                self.name,
                self.mask_secrets(retry.reason),
                format_duration(delay),
            )
            await asyncio.sleep(delay)

    # -- internals --------------------------------------------------------------------

    def _failure(
        self, exc: ProviderError | TimeoutError, fetch: FetchLag, plain: str
    ) -> ProviderError:
        """What a fetch or marker write that failed within its budget says: the provider's
        error as raised, or, for a budget that ran out (`plain`), whose failure that was
        (`_out_of_time`, on the agent's stall measured now). Kept as words and flags only:
        the raised error loses its traceback, whose frame (the caller's, holding the error
        it returns) made a cycle for the collector."""
        if isinstance(exc, ProviderError):
            without_tracebacks(exc)
            return exc
        return self._out_of_time(fetch, fetch.span.stall(), plain)

    def _out_of_time(
        self, fetch: FetchLag | None, stall: tuple[float, float] | None, plain: str
    ) -> ProviderUnreachable:
        """The failure of a fetch whose wait ended without an answer: `plain`, unless the
        agent's stall (stalled, waited) explains the wait. Then it is the agent's, or, when
        the provider failed an earlier attempt itself, that failure, said so."""
        if fetch is None or stall is None:
            return ProviderUnreachable(plain)
        if fetch.said is not None:
            return ProviderUnreachable(
                f"{fetch.said}; then no answer was read in time, the agent's event loop being"
                " stalled (agent overloaded)"
            )
        return AgentLagged(agent_words(self.title, *stall))

    def _hold_off_from(self, url: str, now: float, retry: Retry) -> None:
        """Keep the provider's `retry.after` for `url`, dropping every hold-off that has
        passed: a URL names its release (`…/releases/{version}/`), and a past release's is
        not asked again to remove its own, so the map kept one more per release that was
        ever rate-limited. It now holds only the limits still running."""
        assert retry.after is not None
        until = now + retry.after
        if until > self._quiet_until.get(url, (0.0, ""))[0]:
            for passed in [key for key, (end, _) in self._quiet_until.items() if end <= now]:
                del self._quiet_until[passed]
            self._quiet_until[url] = (until, retry.reason)

    async def _hold_off(self, url: str, deadline: float) -> None:
        """Wait out a rate limit the provider announced for `url` (in an earlier fetch
        too); raise, sending nothing, when it lasts past this fetch's deadline."""
        loop = asyncio.get_running_loop()
        quiet = self._quiet_until.get(url)
        if quiet is None:
            return
        until, why = quiet
        wait = until - loop.time()
        if wait <= 0:
            del self._quiet_until[url]
            return
        if loop.time() + wait >= deadline:
            raise ProviderUnreachable(
                f"{why}; retry in {format_duration(wait)}, past this"
                f" fetch's {format_duration(self.timeout)} budget (not asked again before then)"
            )
        await asyncio.sleep(wait)

    def _ensure_session(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        import aiohttp  # only where a request is made: see the imports

        if self._closed:
            raise ProviderUnreachable(f"the {self.title} provider is closed")
        if self._session is None or self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_in_flight)
            self._session = aiohttp.ClientSession(
                headers=self.default_headers(),
                connector=aiohttp.TCPConnector(limit=self.max_in_flight),
                timeout=aiohttp.ClientTimeout(total=None),
                raise_for_status=False,
            )
        return self._session, self._semaphore

    async def _attempt(
        self, method: str, url: str, deadline: float, params: Params | None, json_body: Any
    ) -> Answer:
        """One attempt. The attempt's clock starts once a slot is free, and never runs
        past the fetch's deadline."""
        import aiohttp  # only where a request is made: see the imports

        session, semaphore = self._ensure_session()
        async with semaphore:
            budget = min(deadline - asyncio.get_running_loop().time(), self.attempt_timeout)
            if budget <= 0:
                raise TimeoutError  # never sent: not an HTTP request
            # counted here, once it is sent: one still waiting for a slot when the fetch's
            # budget ran out never reached the provider (the metric counts what it received)
            try:
                async with asyncio.timeout(budget):
                    answer = await self._exchange(session, method, url, params, json_body)
            except (TimeoutError, asyncio.CancelledError):
                self._count_http("timeout")  # no answer in time (or the fetch's budget cut it)
                raise
            except aiohttp.ClientError:
                self._count_http("error")
                raise
            self._count_http(f"{min(max(answer.status // 100, 2), 5)}xx")
            return answer

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        params: Params | None,
        json_body: Any,
    ) -> Answer:
        import aiohttp  # only where a request is made: see the imports

        self.http_requests += 1
        async with session.request(
            method, url, params=params, json=json_body, allow_redirects=False
        ) as resp:
            declared = resp.content_length
            if declared is not None and declared > MAX_BODY_BYTES:
                raise ProviderError(f"{self.title} answer too large ({declared} bytes)")
            # a body that came whole and does not decode is classed by the status line
            # that came with it (`Answer.unread`); one cut short (the connection dropped
            # mid-body) is a connection lost, retried: a query is a read, asked again
            read = await read_answer(resp, MAX_BODY_BYTES + 1)
            if read.cut_short:
                raise aiohttp.ClientPayloadError(read.unread)
            if len(read.body) > MAX_BODY_BYTES:
                raise ProviderError(f"{self.title} answer too large (over 16 MiB)")
            return Answer(resp.status, resp.headers, read.body, self.redact(read.unread))

    def _backoff(self, attempt: int) -> float:
        """Exponential with jitter: spreads retries of many rules hitting one outage."""
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def _single_flight(self, plan: Plan) -> Observation:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for key, (started, task) in list(self._flights.items()):
            if task.done() and (now - started > SUCCESS_CACHE_SECONDS or _failed(task)):
                del self._flights[key]
        flight = self._flights.get(plan.key)
        if flight is None:
            task = asyncio.create_task(self._observe(plan), name=f"{self.name}-fetch")
            self._flights[plan.key] = (now, task)
        else:
            task = flight[1]
        try:
            observation = await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                # the shared fetch was cancelled (the provider is closing), not our caller
                return Observation(
                    value=None, error=f"{self.title} fetch cancelled", query=plan.query
                )
            raise
        return observation

    async def _observe(self, plan: Plan) -> Observation:
        started = time.perf_counter()
        result: Literal["ok", "error", "agent_lag"] = "error"
        with watching() as fetch:
            try:
                async with asyncio.timeout(self.timeout):
                    observation = await plan.run(asyncio.get_running_loop().time() + self.timeout)
                _check_shape(observation)
                if observation.seconds is None and plan.seconds is not None:
                    observation = dataclasses.replace(observation, seconds=plan.seconds)
                result = "ok"
            except (ProviderError, TimeoutError) as exc:
                failure = self._failure(
                    exc,
                    fetch,
                    f"{self.title} did not answer within {format_duration(self.timeout)}",
                )
                if failure.agent_lag:
                    result = "agent_lag"
                observation = Observation(
                    value=None,
                    error=self.mask_secrets(str(failure)),
                    query=plan.query,
                    answered=failure.answered,
                    not_yet=failure.not_yet,
                    agent_lag=failure.agent_lag,
                )
            except Exception as exc:  # fail soft: a bug or a surprise must not stop a window
                message = self.redact(f"{type(exc).__name__}: {exc}")
                log.error("%s: unexpected failure: %s", self.name, message)
                observation = Observation(
                    value=None,
                    error=f"unexpected failure talking to {self.title} ({type(exc).__name__})",
                    query=plan.query,
                )
        self._count(result, time.perf_counter() - started)
        return observation

    def _count_http(self, result: str) -> None:
        self._metrics.provider_http_requests_total.labels(provider=self.name, result=result).inc()

    def _count(self, result: Literal["ok", "error", "agent_lag"], seconds: float | None) -> None:
        """A fetch's or marker write's end: `agent_lag`, the agent's own stall, is not the
        provider's result, so counted apart from contract §5's ok and error."""
        if result == "agent_lag":
            self._metrics.provider_agent_stalls_total.labels(provider=self.name).inc()
        else:
            self._metrics.provider_requests_total.labels(provider=self.name, result=result).inc()
        if seconds is not None:
            self._metrics.provider_request_duration_seconds.labels(provider=self.name).observe(
                seconds
            )

    async def _guarded_mark(
        self, what: str, work: Callable[[float], Awaitable[None]]
    ) -> str | None:
        """Run a marker write within the budget; never raise. A failure is logged,
        counted, and returned as one message for an alert; one the agent's own stall
        caused (`agent.providers.agent_lag`) is logged and counted as the agent's, with
        no alert: it says nothing of the provider."""
        started = time.perf_counter()
        message: str | None = None
        with watching() as fetch:
            try:
                async with asyncio.timeout(self.timeout):
                    await work(asyncio.get_running_loop().time() + self.timeout)
            except (ProviderError, TimeoutError) as exc:
                failure = self._failure(
                    exc, fetch, f"no answer within {format_duration(self.timeout)}"
                )
                message = self.mask_secrets(str(failure))
                if failure.agent_lag:
                    self._mark_lagged(what, message, started)
                    return None
            except Exception as exc:
                log.error(
                    "%s: %s marker failed unexpectedly: %s",
                    self.name,
                    what,
                    self.redact(f"{type(exc).__name__}: {exc}"),
                )
                message = f"unexpected failure ({type(exc).__name__})"
        self._count("ok" if message is None else "error", time.perf_counter() - started)
        if message is None:
            return None
        message = f"{self.title} {what} marker not recorded: {message}"
        log.warning("%s: %s", self.name, message)
        return message

    def _mark_lagged(self, what: str, message: str, started: float) -> None:
        """A marker write the agent's own stall ran out of time: it may have landed or not,
        and it is not the provider's failure, so no alert (it would say the provider is
        unreachable); the log says which marker to check."""
        self._count("agent_lag", time.perf_counter() - started)
        log.warning("%s: %s marker may not be recorded: %s", self.name, what, message)


def _failed(task: asyncio.Task[Observation]) -> bool:
    """Errors are shared while in flight but never reused afterwards."""
    if task.cancelled():
        return True
    if task.exception() is not None:
        return True
    return task.result().error is not None


def _describe(exc: aiohttp.ClientError) -> str:
    import aiohttp  # only where a request is made: see the imports

    if isinstance(exc, aiohttp.ClientConnectorDNSError):  # a typo in the URL, most often
        return f"the name {exc.host} did not resolve (DNS)"
    if isinstance(exc, aiohttp.ClientSSLError):  # before its base: it was "connection failed"
        return f"{exc.host}:{exc.port}: {tls_reason(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection to {exc.host}:{exc.port} failed"  # host from our own config
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "answer cut short"
    return type(exc).__name__


def _check_shape(observation: object) -> None:
    """Raise TypeError unless `observation` is an Observation of numbers: a provider
    plugin's malformed answer must fail soft here, as an error observation, not in the
    judge a moment later."""
    if not isinstance(observation, Observation):
        raise TypeError(f"the plan returned {type(observation).__name__}, not an Observation")
    value, values = observation.value, observation.values
    if not (value is None or _is_number(value)) or not (
        isinstance(values, tuple) and all(_is_number(v) for v in values)
    ):
        raise TypeError("the plan returned an Observation whose value or values are not numbers")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
