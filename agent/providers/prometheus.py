"""Prometheus: the user's PromQL averaged over the period.

I/O edge: turns the HTTP API's answers into `Observation`s; no judging here.

Why `query_range` and an average rather than one instant query at the period's end:
an instant query of `rate(x[1m])` only sees the last minute, so a baseline over an
hour would be whatever that minute was. The range query evaluates the expression at
steps ending exactly at the period's end (`step` = period / `max_points`, at least
1 s) and the value is the mean of the finite points: the period's typical level. A
period shorter than one step is a single evaluation at its end.

The points are not handed to the judge as `values`: successive evaluations of a
windowed expression overlap and are strongly autocorrelated, and a rank test that
took them for independent samples would be wildly overconfident. Counts are not
available either: PromQL returns numbers, not the events behind them.

Prometheus refuses a range of more than 11,000 points per series (400 bad_data,
"exceeded maximum resolution", web/api/v1/api.go): the default step (period /
`max_points`, `max_points` ≤ 11,000) never gets there; an explicit `step` that would
is refused here, before any request, with the smallest step that fits. `step` is sent
as exact decimal seconds (milliseconds at most), never in exponent notation.

Answers: a matrix (or vector/scalar from API-compatible servers) with exactly one series;
several is a configuration error ("aggregate it"). None (an empty vector) is looked into
(`_empty`): a part of the query that only filters another part with series (no 5xx series
beside the job's) is taken as 0 and the query asked again; a selector with series in the
hour before the period is late data (no data, no alert); otherwise no data, saying which
selector matched nothing where the series API tells. A series of native histograms only
(`histograms` instead of `values`, docs/querying/api.md) is refused with what to wrap it
in: a rule needs a number. `errorType` bad_data/execution → "PromQL rejected: …" (not
retried); 404 names `providers.prometheus.url` (a wrong root or route prefix); 503 and
other 5xx, 429 and timeouts are retried. `warnings` beside the data (it may be partial: a
remote-read source failed, a Thanos store did not answer) are said in the query the
evidence shows and logged, each text once; the figure is used.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict

from agent.analysis.types import Observation, Rule
from agent.config_models import has_credentials
from agent.providers import promql_parts
from agent.providers.base import DeployScope, Period
from agent.providers.client import (
    Answer,
    HttpProvider,
    Plan,
    ProviderError,
    Redact,
    parse_model,
    period_seconds,
)
from agent.providers.provider_settings import PrometheusSettings
from common.durations import format_duration
from common.times import rfc3339

if TYPE_CHECKING:  # prometheus_client: the daemon's metrics, not the settings' (which load
    # this plugin for its config model alone: validate-config, schema)
    from agent.metrics import Metrics

log = logging.getLogger(__name__)

WARNINGS_REMEMBERED = 64
MIN_STEP = 1.0
MAX_POINTS = 11_000
"""Prometheus' limit on (end - start) / step for one query_range (web/api/v1/api.go)."""
STAMP_SLACK = 0.002
"""Seconds a sample's time may lie past the asked start or end: the times go out with
milliseconds (`start=1795000000.123`), and a server may round them."""
EARLIER_S = 3600.0
"""How long before an empty period the series API is asked about a selector too: series
there mean the period's samples are not in yet (or the target stopped), not a misspelt
name or label."""


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Data(_Loose):
    resultType: str
    result: Any


class PrometheusAnswer(_Loose):
    status: str
    data: _Data | None = None
    errorType: str | None = None
    error: str | None = None
    warnings: list[Any] | None = None
    """With `success`: the data may be partial (a remote-read source failed; Thanos: a
    store did not answer). Said in the evidence and logged, each text once."""


def range_for(period: Period, step: float | None, max_points: int) -> tuple[float, float, float]:
    """(start, end, step) of the evaluations: steps end exactly at the period's end.

    The default step is rounded up to the millisecond (so it never makes more than
    `max_points` steps); an explicit step over more than 11,000 points is refused."""
    duration = max(0.0, period.end - period.start)
    explicit = step is not None and step > 0
    if step is None or step <= 0:
        step = max(MIN_STEP, math.ceil(duration / max_points * 1000) / 1000)
    step = max(0.001, round(step, 3))
    whole = math.floor(duration / step + 1e-9)
    if whole > MAX_POINTS:
        smallest = math.ceil(duration / MAX_POINTS)
        raise ProviderError(
            f"step {step_text(step)}s over a {format_duration(duration)} period is {whole:,}"
            f" points; Prometheus allows {MAX_POINTS:,} per query: set providers.prometheus"
            f".step to {smallest}s or more" + (" (or shorten the lookback)" if explicit else "")
        )
    return period.end - whole * step, period.end, step


def step_text(step: float) -> str:
    """Seconds as Prometheus parses them, exactly: `1000`, `2.5`, `0.001` (never `1e+03`)."""
    return f"{step:.3f}".rstrip("0").rstrip(".")


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ProviderError("unexpected answer from Prometheus (a sample is no number)") from None
    return number if math.isfinite(number) else None


def points_of(data: _Data, within: tuple[float, float] | None = None) -> list[float] | None:
    """The one series' finite values; None when the result is empty. A range query's
    samples outside `within` (its start and end) are not the period's: a server in front
    of Prometheus (a cache, a proxy) answering for another time range; those beside the
    period's are left out, and with none of the period's the answer is not understood."""
    kind, result = data.resultType, data.result
    if kind == "scalar":
        value = _finite(result[1]) if isinstance(result, list) and len(result) == 2 else None
        return [] if value is None else [value]
    if kind not in ("matrix", "vector") or not isinstance(result, list):
        raise ProviderError(f"unexpected answer from Prometheus (result type {kind!r})")
    if not result:
        return None
    if len(result) > 1:
        raise ProviderError(
            f"PromQL returned {len(result)} series; a rule needs one: aggregate it,"
            " e.g. sum(...) or max(...)"
        )
    series = result[0]
    if not isinstance(series, dict):
        raise ProviderError("unexpected answer from Prometheus (series is not an object)")
    raw = series.get("values") if kind == "matrix" else series.get("value")
    if raw is None and ("histograms" in series or "histogram" in series):
        raise ProviderError(
            "PromQL returned native histograms; a rule needs a number: wrap the query in"
            " histogram_quantile(0.95, …), histogram_count(…), histogram_sum(…) or"
            " histogram_avg(…)"
        )
    if kind == "vector":
        raw = [raw]
    if not isinstance(raw, list):
        raise ProviderError("unexpected answer from Prometheus (no values)")
    points: list[float] = []
    elsewhere: list[float] = []
    for pair in raw:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ProviderError("unexpected answer from Prometheus (malformed sample)")
        if within is not None and kind == "matrix" and not _inside(pair[0], within):
            elsewhere.append(float(pair[0]))
            continue
        value = _finite(pair[1])
        if value is not None:
            points.append(value)
    if within is not None and elsewhere and len(elsewhere) == len(raw):
        answered = f"{_when(min(elsewhere))}..{_when(max(elsewhere))}"
        raise ProviderError(
            f"unexpected answer from Prometheus (samples of another time range: {answered},"
            f" asked for {_when(within[0])}..{_when(within[1])})"
        )
    return points


def _when(ts: float) -> str:
    return rfc3339(ts, millis=False)


def _inside(stamp: Any, within: tuple[float, float]) -> bool:
    """Whether a sample's time is in [start, end], give or take the milliseconds the
    query's times were written with."""
    try:
        at = float(stamp)
    except (TypeError, ValueError):
        raise ProviderError("unexpected answer from Prometheus (a sample has no time)") from None
    return within[0] - STAMP_SLACK <= at <= within[1] + STAMP_SLACK


class PrometheusProvider(HttpProvider):
    """Prometheus (or an API-compatible server) over `/api/v1/query_range`."""

    name = "prometheus"
    title: ClassVar[str] = "Prometheus"
    config_model: ClassVar[type[BaseModel]] = PrometheusSettings

    def __init__(
        self, config: PrometheusSettings, *, metrics: Metrics, redact: Redact | None = None
    ) -> None:
        super().__init__(config, metrics=metrics, redact=redact)
        self.config = config
        self._url = config.url.rstrip("/")
        self._warned: set[str] = set()
        """Warnings already logged: each once, not at every fetch."""

    def default_headers(self) -> dict[str, str]:
        if self.config.bearer_token is None:
            return {}
        return {"Authorization": f"Bearer {self.config.bearer_token.get_secret_value()}"}

    def _credentials(self) -> str:
        """The setting a rejected request's credentials came from (never their value)."""
        if self.config.bearer_token is not None:
            return "check providers.prometheus.bearer_token"
        if has_credentials(self.config.url):
            return "check the user and password in providers.prometheus.url"
        return (
            "none were sent; set providers.prometheus.bearer_token (or a user:password in"
            " providers.prometheus.url)"
        )

    def plan(self, rule: Rule, scope: DeployScope, period: Period, release: str | None) -> Plan:
        """`release` is not used: PromQL compares periods (put labels in the query)."""
        if not rule.query:
            raise ProviderError(f"rule {rule.name!r} has no query")
        query = rule.query
        start, end, step = range_for(period, self.config.step, self.config.max_points)

        async def run(deadline: float) -> Observation:
            points, warned = await self._range(query, (start, end, step), deadline)
            shown = f"{query} (Prometheus warned: {warned})" if warned else query
            if points is None:
                return await self._empty(query, (start, end, step), deadline)
            if not points:
                return Observation(value=None, query=shown)
            return Observation(value=sum(points) / len(points), query=shown)

        return Plan(
            key=("range", query, start, end, step),
            query=query,
            run=run,
            seconds=period_seconds(period),
        )

    async def _range(
        self, query: str, span: tuple[float, float, float], deadline: float
    ) -> tuple[list[float] | None, str]:
        """The query's finite points over `span` (None: an empty answer) and its warnings."""
        start, end, step = span
        params = [
            ("query", query),
            ("start", f"{start:.3f}"),
            ("end", f"{end:.3f}"),
            ("step", step_text(step)),
            # Prometheus durations take whole units: 2500ms, never 2.5s
            ("timeout", f"{max(1, round(self.attempt_timeout * 1000))}ms"),
        ]
        answer = await self.send(
            "GET", f"{self._url}/api/v1/query_range", deadline=deadline, params=params
        )
        data, warned = self._data(answer)
        return points_of(data, (start, end)), warned

    async def _empty(
        self, query: str, span: tuple[float, float, float], deadline: float
    ) -> Observation:
        """An empty answer: its parts that only filter a part with series (no 5xx beside
        the job's traffic) are taken as 0 and the query asked again; a part nothing
        explains (a metric misspelt, a job not scraped, no traffic) is no data, saying so
        (`agent.providers.promql_parts`). Unexplained where the query cannot be read or
        Prometheus' other endpoints do not answer: no data, as before."""
        expr = promql_parts.parse(query)
        selectors = None if expr is None else promql_parts.selectors_of(expr)
        if expr is None or not selectors:
            return Observation(value=None, query=query)
        try:
            counts = {s.text: await self._series(s, span, deadline) for s in selectors}
            empty = [s for s in selectors if counts[s.text] == 0]
            wider = {
                e.text: next((w for w in selectors if counts[w.text] and w.widens(e)), None)
                for e in empty
            }
            unexplained = [e for e in empty if wider[e.text] is None]
            if unexplained:  # said for those no other empty selector widens
                roots = [e for e in unexplained if not any(o.widens(e) for o in empty)]
                earlier = (span[0] - EARLIER_S, span[1], span[2])
                if all([await self._series(e, earlier, deadline) for e in roots]):
                    # series until shortly before: the period's samples are not in yet
                    # (a scrape behind the round) or the target stopped: no data, not a
                    # configuration to fix (no provider alert)
                    behind = ", ".join(e.text for e in roots)
                    return Observation(
                        value=None, query=f"{query} (no samples of {behind} in the period yet)"
                    )
                said = [await self._no_series(e, earlier, deadline) for e in roots]
                return Observation(value=None, query=query, error="; ".join(said), answered=True)
        except ProviderError as exc:
            log.debug("prometheus: an empty answer not explained: %s", exc)
            return Observation(value=None, query=query)
        if not empty:  # every part has series, yet their combination none (labels differ)
            return Observation(value=None, query=query)
        taken = "; ".join(
            f"{e.text} matched no series while {w.text} matched {counts[w.text]} series"
            for e in empty
            if (w := wider[e.text]) is not None
        )
        rewritten = promql_parts.with_zeros(expr, {e.text for e in empty})
        if rewritten is None:
            return Observation(
                value=None,
                query=query,
                error=f"{taken}; it is 0 only inside a sum(…) or count(…) without `by`:"
                " aggregate it so",
                answered=True,
            )
        points, warned = await self._range(rewritten, span, deadline)
        shown = f"{query} (taken as 0: {taken}" + (
            f"; Prometheus warned: {warned})" if warned else ")"
        )
        if not points:
            return Observation(
                value=None,
                query=shown,
                error=f"no value even with {taken}, taken as 0 (a 0/0: no requests?)",
                answered=True,
            )
        return Observation(value=sum(points) / len(points), query=shown)

    async def _listing(
        self, path: str, params: list[tuple[str, str]], deadline: float
    ) -> list[Any]:
        """The `data` list of a metadata endpoint (`/api/v1/series`, label values)."""
        answer = await self.send("GET", f"{self._url}{path}", deadline=deadline, params=params)
        body = answer.json(self.title)
        if (
            answer.status != 200
            or not isinstance(body, dict)
            or body.get("status") != "success"
            or not isinstance(body.get("data"), list)
        ):
            raise ProviderError(f"Prometheus answered {answer.status} for {path}")
        data: list[Any] = body["data"]
        return data

    async def _series(
        self, selector: promql_parts.Selector, span: tuple[float, float, float], deadline: float
    ) -> int:
        """How many series `selector` matches over the span."""
        start, end, _ = span
        params = [("match[]", selector.text), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
        return len(await self._listing("/api/v1/series", params, deadline))

    async def _no_series(
        self, selector: promql_parts.Selector, span: tuple[float, float, float], deadline: float
    ) -> str:
        """Why `selector` matched nothing: its metric is not in Prometheus at all (asked
        as a label value list: one name, not every series of the metric), or not with
        these labels."""
        if selector.name is None:
            return f"no series match {selector.text} in Prometheus in the last hour"
        start, end, _ = span
        params = [("match[]", selector.name), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
        if not await self._listing("/api/v1/label/__name__/values", params, deadline):
            return (
                f"no metric named {selector.name} in Prometheus in the last hour (misspelt,"
                " or not scraped)"
            )
        return (
            f"no series match {selector.text} in the last hour: {selector.name} exists, but"
            " not with these labels (a job Prometheus does not scrape, a label misspelt, or"
            " a service with no requests yet)"
        )

    def _data(self, answer: Answer) -> tuple[_Data, str]:
        """The answer's data, and its warnings as one text ("" without)."""
        if answer.status in (401, 403):
            raise ProviderError(
                f"Prometheus rejected the credentials ({answer.status}): {self._credentials()}"
            )
        self.refuse_redirect(answer, "providers.prometheus.url")
        if answer.status == 404:  # every Prometheus serves the API: a wrong root or prefix
            raise ProviderError(
                "Prometheus answered 404 for /api/v1/query_range: check providers.prometheus"
                ".url (the server's root, with its route prefix if it has one: http://host:9090,"
                " or …/prometheus behind a path; not the API's own path)"
            )
        body = answer.json(self.title)
        parsed = parse_model(PrometheusAnswer, body, self.title)
        if parsed.status != "success":
            reason = self.quoted(parsed.error or "no reason given")
            if parsed.errorType in ("bad_data", "execution"):
                raise ProviderError(f"PromQL rejected: {reason}")
            raise ProviderError(f"Prometheus answered {answer.status}: {reason}")
        if parsed.data is None:
            raise ProviderError("unexpected answer from Prometheus (no data)")
        warned = self.quoted("; ".join(w for w in parsed.warnings or () if isinstance(w, str)))
        if warned and warned not in self._warned:
            if len(self._warned) >= WARNINGS_REMEMBERED:  # texts that vary: bounded memory
                self._warned.clear()
            self._warned.add(warned)
            log.warning("prometheus: answered with a warning (logged once): %s", warned)
        return parsed.data, warned

    def link(
        self,
        rule: Rule,
        scope: DeployScope,
        period: Period,
        *,
        release: str | None = None,
    ) -> str | None:
        """Prometheus' graph page with the query over the period."""
        if not rule.query:
            return None
        duration = max(1.0, period.end - period.start)
        end = datetime.fromtimestamp(period.end, UTC).strftime("%Y-%m-%d %H:%M:%S")
        params = {
            "g0.expr": rule.query,
            "g0.tab": "0",
            "g0.range_input": f"{math.ceil(duration)}s",
            "g0.end_input": end,
        }
        return f"{self._url}/graph?{urlencode(params)}"
