"""An example Postflight check plugin: `type: tcp` times opening a TCP connection to the target.

What a third party writes: a pydantic config subclassing `CheckConfig` with a
`Literal` type, a `Check` subclass with `async run()`, and one entry point in
the group `postflight.checks`. The registry times runs and catches crashes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from pydantic import Field
from yarl import URL

from checks.base import Check, CheckConfig, CheckContext, CheckResult, Sample


class TcpCheckConfig(CheckConfig):
    type: Literal["tcp"] = "tcp"
    host: str | None = Field(None, description="Default: the environment's base_url host.")
    port: int | None = Field(None, ge=1, le=65535, description="Default: base_url's port.")


class TcpCheck(Check):
    """One connection per run; latency is the time to connect."""

    type = "tcp"
    Config = TcpCheckConfig
    config: TcpCheckConfig

    async def run(self, ctx: CheckContext) -> CheckResult:
        base = URL(ctx.base_url)
        host = self.config.host or base.host or "127.0.0.1"
        port = self.config.port or base.port or 80
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return self._result(
                False, f"{host}:{port}: no connection within timeout", "timeout", ctx
            )
        except OSError as exc:
            return self._result(False, f"{host}:{port}: {exc.strerror or exc}", "connect", ctx)
        latency = time.perf_counter() - started
        writer.close()
        await writer.wait_closed()
        return self._result(
            True, f"{host}:{port} connected in {latency * 1000:.1f}ms", None, ctx, latency
        )

    def _result(
        self,
        ok: bool,
        message: str,
        error: str | None,
        ctx: CheckContext,
        latency: float | None = None,
    ) -> CheckResult:
        sample = Sample(check=self.name, ok=ok, latency_s=latency, error=error, target=ctx.target)
        return CheckResult(
            check=self.name, type=self.type, ok=ok, samples=(sample,), message=message
        )
