"""The `http` check: one request to the target per run, judged against `expect:`.

The health probe behind most rules and the pre-deploy background baseline, so
everything that can be prepared is prepared once when the check is built (URL,
body bytes, compiled expectations, timeout object) and a run does only the
request and the comparisons.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from yarl import URL

from checks.base import Check, CheckConfig, CheckContext, CheckResult, Running
from checks.expect import Body, Expect, Expectation
from checks.lag import AGENT_DELAY, AGENT_KERNEL_DELAY, LATENCY_BOUND, keep_lag
from checks.request import ClientOptions, RequestSpec, prepared, target_url
from common.durations import format_duration
from common.redaction import Redactor

if TYPE_CHECKING:  # aiohttp's client (checks.exchange) is imported where a check runs: the
    # settings import this module for its Config alone (validate-config, schema)
    from checks.exchange import ProbeFailed, Reply

CERT_RECHECK_S = 3600.0
"""How long a certificate's expiry is trusted before it is read again."""


class HttpCheckConfig(ClientOptions, CheckConfig, RequestSpec):
    """An `http` check as configured under an environment's `checks:`."""

    type: Literal["http"] = "http"
    expect: Expect = Field(default_factory=Expect)
    tls_expiry_warning_days: int | None = Field(
        14,
        ge=0,
        description="Warn (in the result, without failing it) when the certificate expires "
        "within this many days; null turns the warning off.",
    )


class HttpCheck(Check):
    """One probe per run: latency, status, size, and every unmet expectation in the message."""

    type = "http"
    Config = HttpCheckConfig
    background = True
    fits_deadline = True
    config: HttpCheckConfig

    def __init__(self, config: HttpCheckConfig) -> None:
        # aiohttp's client only for a check built to run (see the imports), all of it loaded
        # here, before a run: the first probe's clock or the loop-lag count must not see it
        import aiohttp

        import checks.exchange  # noqa: F401

        super().__init__(config)
        self._expect = Expectation(config.expect)
        self._request = prepared(config, config, keep_body=self._expect.needs_body)
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._urls: dict[str, URL] = {}
        self._redactors: dict[tuple[str, ...], Redactor] = {}
        self._expiry: dict[tuple[str, int], tuple[float, datetime | None]] = {}
        self._label = f"{config.method} {config.url or config.path}"

    async def run(self, ctx: CheckContext) -> CheckResult:
        from checks.exchange import ProbeFailed, exchange  # aiohttp's client: see the imports

        cfg = self.config
        url, timeout = self._prepare(ctx)
        try:
            reply = await exchange(
                ctx.session,
                self._request,
                url,
                client_timeout=self._timeout if timeout is None else timeout,
            )
        except ProbeFailed as failed:
            return self._failed(ctx, failed)
        message, details, error = self._judged(ctx, reply)
        if cfg.tls_expiry_warning_days is not None and url.scheme == "https":
            warning = await self._tls_warning(url, details)
            if warning:
                message += f" (warning: {warning})"
        return self._result(ctx, reply, error, message, details)

    def start(
        self, ctx: CheckContext, done: Callable[[CheckResult | BaseException], None]
    ) -> Running | None:
        """`run` from callbacks (`exchange_now`) when the lean client takes the request
        (plain http): what a probe of a healthy target does, round after round."""
        from checks.exchange import exchange_now  # aiohttp's client: see the imports

        url, timeout = self._prepare(ctx)
        if url.scheme != "http":
            return None  # (the certificate's expiry is read in `run`)
        return exchange_now(
            ctx.session,
            self._request,
            url,
            timeout_s=float(self.config.timeout) if timeout is None else timeout,
            outcome=_Started(self, ctx, done).outcome,
        )

    def _prepare(self, ctx: CheckContext) -> tuple[URL, float | None]:
        """The URL, and the timeout when the round's end comes first (else the check's)."""
        url = self._urls.get(ctx.base_url)
        if url is None:
            url = self._urls[ctx.base_url] = target_url(self.config, ctx.base_url)
        if ctx.deadline is not None:
            # its room at least, from now: a stall since the deadline was fixed is the agent's
            left = max(ctx.deadline - asyncio.get_running_loop().time(), ctx.room)
            if left < self.config.timeout:  # the round ends first: wait no longer than it lasts
                return url, max(round(left, 3), 0.001)
        return url, None

    def _failed(self, ctx: CheckContext, failed: ProbeFailed) -> CheckResult:
        name = self.config.name
        sample = failed.sample(name, ctx.target)
        details: dict[str, object] = {"error": failed.kind}
        keep_lag(details, silent_s=failed.silent_s)  # the target's silence (`checks.lag`)
        return CheckResult(
            check=name,
            type=self.type,
            ok=False,
            samples=(sample,),
            message=f"{self._label}: {failed.message}",
            details=details,
        )

    def _judged(self, ctx: CheckContext, reply: Reply) -> tuple[str, dict[str, object], str | None]:
        """The message, details and error class (None: ok) of a response, against `expect:`."""
        redactor = self._redactor(ctx.secrets)
        mismatches = self._expect.check(
            reply.status, reply.headers, Body(reply.body), reply.latency_s, redactor
        )
        details: dict[str, object] = {
            "status": reply.status,
            "latency_ms": round(reply.latency_s * 1000, 3),
        }
        if reply.agent_delay_s is not None:  # the overload guard's measure (`checks.lag`)
            details[AGENT_DELAY] = round(reply.agent_delay_s, 4)
        if reply.agent_kernel_delay_s is not None:
            # the kernel's measure (`checks.stamps`), kept to 10 µs, rounded up: a bound
            details[AGENT_KERNEL_DELAY] = math.ceil(reply.agent_kernel_delay_s * 1e5) / 1e5
        # the request went out late, it landed as the loop came back (`checks.lag`)
        keep_lag(details, held_s=reply.agent_held_s, resumed_s=reply.agent_resumed_s)
        if not mismatches:
            took = format_duration(reply.latency_s)  # as every latency reads: not `in 0ms`
            return f"{self._label}: {reply.status} in {took}", details, None
        error = details["error"] = mismatches[0].kind
        details["failures"] = [str(m) for m in mismatches]
        if error == "latency":  # what a stall may excuse of it is judged against it
            details[LATENCY_BOUND] = self._expect.max_latency
        return f"{self._label}: " + "; ".join(str(m) for m in mismatches), details, error

    def _result(
        self,
        ctx: CheckContext,
        reply: Reply,
        error: str | None,
        message: str,
        details: dict[str, object],
    ) -> CheckResult:
        name = self.config.name
        sample = reply.sample(name, error, ctx.target)
        return CheckResult(
            check=name,
            type=self.type,
            ok=error is None,
            samples=(sample,),
            message=message,
            details=details,
        )

    def _redactor(self, secrets: tuple[str, ...]) -> Redactor:
        redactor = self._redactors.get(secrets)
        if redactor is None:
            if len(self._redactors) > 8:
                self._redactors.clear()
            redactor = self._redactors[secrets] = Redactor(secrets)
        return redactor

    async def _tls_warning(self, url: URL, details: dict[str, object]) -> str | None:
        """Days left on the certificate into `details`; a warning text when they are few."""
        from checks.exchange import cert_not_after, peer_certificate  # see the imports

        threshold = self.config.tls_expiry_warning_days
        assert threshold is not None and url.host is not None and url.port is not None
        key = (url.host, url.port)
        now = time.monotonic()
        cached = self._expiry.get(key)
        if cached is None or now - cached[0] > CERT_RECHECK_S:
            der = await peer_certificate(url.host, url.port, self.config.timeout)
            cached = self._expiry[key] = (now, cert_not_after(der) if der else None)
        not_after = cached[1]
        if not_after is None:
            return None
        days_left = (not_after - datetime.now(UTC)).total_seconds() / 86400
        details["tls_expires_at"] = not_after.isoformat()
        details["tls_days_left"] = round(days_left, 1)
        if days_left >= threshold:
            return None
        warning = f"TLS certificate expires in {max(days_left, 0):.0f} days ({not_after:%Y-%m-%d})"
        details["warnings"] = [warning]
        return warning


class _Started:
    """An `HttpCheck.start` run: what `run` does once its exchange is over."""

    __slots__ = ("check", "ctx", "done")

    def __init__(
        self,
        check: HttpCheck,
        ctx: CheckContext,
        done: Callable[[CheckResult | BaseException], None],
    ) -> None:
        self.check = check
        self.ctx = ctx
        self.done = done

    def outcome(self, reply: Reply | BaseException) -> None:
        from checks.exchange import ProbeFailed, Reply  # aiohttp's client: see the imports

        check, ctx = self.check, self.ctx
        try:
            if isinstance(reply, Reply):
                message, details, error = check._judged(ctx, reply)
                result: CheckResult | BaseException = check._result(
                    ctx, reply, error, message, details
                )
            else:
                result = check._failed(ctx, reply) if isinstance(reply, ProbeFailed) else reply
        except Exception as exc:  # the registry words it, as for a `run` that raised
            result = exc
        self.done(result)
