"""A real Prometheus for tests, the target it scrapes, and a small API fake.

- `ScrapeTarget`: an aiohttp `/metrics` whose counters grow at rates the test sets
  (`set_rates({"200": 100, "500": 1})` → `http_requests_total{code=…}`); the
  counters are integrated on each scrape, so no background task is needed.
- `PrometheusProcess`: starts `/usr/bin/prometheus` (Debian package `prometheus`) on
  a free 127.0.0.1 port with a temp config and data dir, scraping the targets every
  `scrape_interval`; `wait_for_scrapes(target, n)` waits for real data.
- `FakePrometheus`: `/api/v1/query_range` and `/api/v1/query` with fixed values per
  query, and the failure modes of `tests.fakes._server` (for client edge cases and
  for benchmarks on machines without the binary).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import aiohttp
from aiohttp import web

from tests.fakes._server import Failure, FakeServer
from tests.ports import free_port as free_port

HOST = "127.0.0.1"
PROMETHEUS_BINARY = os.environ.get("POSTFLIGHT_PROMETHEUS", "/usr/bin/prometheus")


def prometheus_binary() -> str | None:
    """The Prometheus binary, or None when it is not installed."""
    if os.access(PROMETHEUS_BINARY, os.X_OK):
        return PROMETHEUS_BINARY
    return shutil.which("prometheus")


class ScrapeTarget:
    """A service's `/metrics`, with counters the test drives by rate."""

    def __init__(
        self,
        metric: str = "http_requests_total",
        label: str = "code",
        labels: dict[str, str] | None = None,
    ) -> None:
        self.metric = metric
        self.label = label
        self.labels = dict(labels or {})
        """Labels on every sample (`job`/`instance` override the scrape's under
        `honor_labels`, as `tests.prometheus`' lanes use them)."""
        self._values: dict[str, float] = {}
        self._rates: dict[str, float] = {}
        self._since = time.monotonic()
        self.scrapes = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def set_rates(self, rates: dict[str, float]) -> None:
        """Per label value, events per second from now on."""
        self._fold()
        for key in rates:
            self._values.setdefault(key, 0.0)
        self._rates = dict(rates)

    def _fold(self) -> None:
        now = time.monotonic()
        for key, rate in self._rates.items():
            self._values[key] = self._values.get(key, 0.0) + rate * (now - self._since)
        self._since = now

    def exposition(self) -> str:
        lines = [f"# HELP {self.metric} Requests served.", f"# TYPE {self.metric} counter"]
        return "\n".join([*lines, *self.samples()]) + "\n"

    def samples(self) -> list[str]:
        """The counters' lines, without the metric's HELP and TYPE."""
        self._fold()
        fixed = "".join(f'{name}="{value}",' for name, value in sorted(self.labels.items()))
        return [
            f'{self.metric}{{{fixed}{self.label}="{key}"}} {math.floor(value)}'
            for key, value in sorted(self._values.items())
        ]

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        return web.Response(
            text=self.exposition(),
            content_type="text/plain",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for_scrapes(self, n: int, within: float = 20.0) -> None:
        """Until `n` more scrapes have happened (data Prometheus has really stored)."""
        goal = self.scrapes + n
        deadline = time.monotonic() + within
        while self.scrapes < goal:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus scraped {self.scrapes} times, wanted {goal}")
            await asyncio.sleep(0.05)


class PrometheusProcess:
    """A real Prometheus server scraping `targets` (host:port) as job `job`."""

    def __init__(
        self,
        targets: list[str],
        *,
        job: str = "web",
        scrape_interval: str = "1s",
        binary: str | None = None,
        honor_labels: bool = False,
    ) -> None:
        self.targets = targets
        self.job = job
        self.scrape_interval = scrape_interval
        self.honor_labels = honor_labels
        self.binary = binary or prometheus_binary()
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self, ready_within: float = 30.0) -> Self:
        if self.binary is None:
            raise FileNotFoundError("prometheus is not installed (Debian package `prometheus`)")
        self._dir = tempfile.TemporaryDirectory(prefix="postflight-prometheus-")
        root = Path(self._dir.name)
        targets = ", ".join(f"'{t}'" for t in self.targets)
        (root / "prometheus.yml").write_text(
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            f"  scrape_timeout: {self.scrape_interval}\n"
            f"  evaluation_interval: {self.scrape_interval}\n"
            "scrape_configs:\n"
            f"  - job_name: {self.job}\n"
            f"    honor_labels: {'true' if self.honor_labels else 'false'}\n"
            "    static_configs:\n"
            f"      - targets: [{targets}]\n"
        )
        log = (root / "prometheus.log").open("wb")
        for _ in range(5):  # a free port can be taken between probing and binding
            self.port = free_port()
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
                stdout=log,
                stderr=log,
            )
            if await self._ready(ready_within):
                log.close()
                return self
            await self._kill()
        log.close()
        output = (root / "prometheus.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"prometheus did not become ready:\n{output}")

    async def _ready(self, within: float) -> bool:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self._proc is not None and self._proc.returncode is not None:
                    return False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(
                        f"{self.url}/-/ready", timeout=aiohttp.ClientTimeout(total=1)
                    ) as resp:
                        if resp.status == 200:
                            return True
                await asyncio.sleep(0.1)
        return False

    async def _kill(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._proc.terminate()
        try:
            await asyncio.wait_for(self._proc.wait(), 10)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()

    async def stop(self) -> None:
        await self._kill()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class FakePrometheus(FakeServer):
    """Prometheus' query API with fixed answers: `set(query, value, series=1)`.

    `value` is a number or NaN; `series=0` answers an empty result, `series=2` two
    series (which a rule must aggregate), `histogram=True` native histograms
    (`histograms`/`histogram` instead of `values`/`value`, docs/querying/api.md
    "Native histograms"). As Prometheus' web/api/v1/api.go does: a query containing
    `bad(` is rejected with `bad_data` (a parse error); `step` is a float of seconds
    or a duration, and a range over more than 11,000 steps is 400 `bad_data`
    "exceeded maximum resolution of 11,000 points per timeseries…".
    """

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, tuple[float, int]] = {}
        self.histograms: set[str] = set()
        self.default = (0.0, 1)
        self.warnings: list[str] = []
        """Sent with every answer's data (`warnings`, docs/querying/api.md), as Prometheus
        does when a remote-read source failed or Thanos when a store did not answer: the
        data is partial."""

    def set(self, query: str, value: float, *, series: int = 1, histogram: bool = False) -> None:
        self.values[query] = (value, series)
        if histogram:
            self.histograms.add(query)
        else:
            self.histograms.discard(query)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/query_range", self._range)
        app.router.add_post("/api/v1/query_range", self._range)
        app.router.add_get("/api/v1/query", self._instant)

    def failure_response(self, failure: Failure, request: web.Request) -> web.StreamResponse:
        if failure.kind == "503":
            return web.json_response(
                {"status": "error", "errorType": "unavailable", "error": "overloaded"}, status=503
            )
        return super().failure_response(failure, request)

    def _lookup(self, request: web.Request) -> tuple[str, float, int] | web.Response:
        query = request.query.get("query", "")
        if "bad(" in query:
            return web.json_response(
                {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": 'invalid parameter "query": 1:1: parse error: unknown function',
                },
                status=400,
            )
        value, series = self.values.get(query, self.default)
        return query, value, series

    @staticmethod
    def _fmt(value: float) -> str:
        return "NaN" if math.isnan(value) else repr(float(value))

    def _sample(self, query: str, value: float) -> Any:
        if query not in self.histograms:
            return self._fmt(value)
        # a native histogram sample (docs/querying/api.md): count, sum, buckets
        return {
            "count": self._fmt(value),
            "sum": self._fmt(value * 0.1),
            "buckets": [[0, "0.1", "0.2", self._fmt(value)]],
        }

    async def _range(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        query, value, series = found
        start, end = float(request.query["start"]), float(request.query["end"])
        step = _seconds(request.query.get("step", ""))
        if step is None or step <= 0:
            return _bad_data(
                'invalid parameter "step": zero or negative query resolution step widths'
                " are not accepted. Try a positive integer"
            )
        if int((end - start) * 1000) // int(step * 1000) > 11000:  # Go: Duration / Duration
            return _bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing"
                " the query resolution (?step=XX)"
            )
        stamps = []
        t = start
        while t <= end + 1e-9:
            stamps.append(round(t, 3))
            t += step
        key = "histograms" if query in self.histograms else "values"
        result: list[dict[str, Any]] = [
            {
                "metric": {"instance": f"i{i}"} if series > 1 else {},
                key: [[s, self._sample(query, value)] for s in stamps],
            }
            for i in range(series)
        ]
        answer: dict[str, Any] = {
            "status": "success",
            "data": {"resultType": "matrix", "result": result},
        }
        if self.warnings:
            answer["warnings"] = list(self.warnings)
        return web.json_response(answer)

    async def _instant(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        query, value, series = found
        at = float(request.query.get("time", time.time()))
        key = "histogram" if query in self.histograms else "value"
        result = [{"metric": {}, key: [at, self._sample(query, value)]} for _ in range(series)]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )


def _bad_data(message: str) -> web.Response:
    return web.json_response(
        {"status": "error", "errorType": "bad_data", "error": message}, status=400
    )


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def _seconds(text: str) -> float | None:
    """Prometheus' parseDuration: a float of seconds, or a duration like `1m30s`."""
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.match(text)
    if not text or match is None:
        return None
    h, m, s_, ms = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s_ + ms / 1000
