"""A fake Sentry as strict as the real one, answering its documented shapes.

Each behaviour follows an official source (getsentry/sentry-api-schema
`openapi-derefed.json` 0.272.0, vendored in tests/contract/sentry_openapi.json;
getsentry/sentry code paths named at each handler; ../shared/reference/
sentry-newrelic-api.md for what is not in the schema):

- bearer auth and its 401 body (src/sentry/api/authentication.py); token scopes:
  reads need `org:read` and, for a project, `project:read`; releases and deploys
  need `project:releases` (the schema's `security` of each operation), else 403;
- `GET /api/0/projects/{org}/{id_or_slug}/` answers the schema's example with the
  project's id and slug;
- `GET …/events/`: public datasets only (else 400 "dataset must be one of"); an
  environment this fake has not seen is 404, as Sentry's `get_environments` does;
  `spans` aggregates are extrapolated from sampled traces (src/sentry/search/eap/
  spans; docs "Extrapolation"): `count()` is the estimate `stored / sample_rate`,
  `count_sample()` the spans stored, `failure_rate()` the share among them;
  `errors` grouped by `release` (`field=release` with `count()`, no release filter:
  "when a function is included, Discover will group by any tags or fields", the
  schema's `field`) is a row per release this fake serves errors for, whatever the
  period, the most first (`sort=-count()`; errors without a release: `unreleased`);
- `GET …/events-timeseries/` (`spans`, one `yAxis`): buckets of `interval`, read as
  `parse_stats_period` does (`60`, `1m`: src/sentry/utils/dates.py), aligned to it
  (src/sentry/api/endpoints/organization_events_timeseries.py), each value with its
  `sampleCount` (spans stored in the bucket) and `sampleRate`; timestamps,
  `meta.start`/`end` and `meta.interval` in milliseconds;
- `GET …/sessions/`: 1 h intervals; the period is widened to whole hours and the
  answer says so in `start`/`end`/`intervals`, with `series` per hour
  (src/sentry/snuba/sessions_v2.py `get_constrained_date_range`); unknown
  environment 404; crash rates grouped by `session.status` are 400;
- `GET …/releases/{version}/`: the release with its projects, 404 when unknown; a
  release is known once created (`POST …/releases/`) or once it has events (errors,
  transactions or sessions: Sentry creates a release, in the event's project, with
  its first event), its `firstEvent`/`lastEvent` null until it has events (one only
  created: a marker, sentry-cli); reading one needs any of the schema's scopes (`project:read`,
  `project:releases`…);
- `POST …/releases/`: `projects` are slugs the token can see, else 400
  `{"projects": ["Invalid project ids or slugs"]}` (the schema says "A list of
  project slugs"; Sentry's newest code also takes ids, so this fake is the stricter
  of the two); an existing release gains the projects (201), or 208 when nothing is
  new (src/sentry/releases/endpoints/organization_releases.py);
- `POST …/releases/{version}/deploys/`: 404 while the release is missing; 400
  "Invalid projects (…) for release …" (`parameter-validation-error`) for a project
  the release lacks (src/sentry/releases/endpoints/release_deploys.py);
- Link-header pagination with `results="true|false"` cursors (src/sentry/api/base.py)
  and rate-limit headers on every answer (docs/api/ratelimits.mdx).

What it serves is set per release (`set_stats(stats, release="v2")`) or, for
queries without a release, per period (`set_stats(stats, since=T0)`: periods that
start at or after T0). Usage:

    async with FakeSentry(token="t") as sentry:
        sentry.set_stats(SentryStats(transactions=1000, failure_rate=0.01), release="v1")
        sentry.fail("429", times=1, reset_in=0.2)
        ... SentrySettings(base_url=sentry.url, org=sentry.org, token="t") ...

Or as a process: `python -m tests.fakes.sentry [--port P] [--token T]`, then
`POST /_fake/stats {"release": "v1", "since": null, "stats": {...}}`.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.contract.openapi import example
from tests.fakes._server import BODY, Failure, FakeServer, serve_main

PUBLIC_DATASETS = ("errors", "logs", "profile_functions", "spans", "tracemetrics", "uptime_results")
AGGREGATES = ("count()", "count_sample()", "failure_rate()", "p95(span.duration)")
ALL_SCOPES = frozenset({"org:read", "project:read", "project:releases"})
HOUR = 3600
MAX_POINTS = 10_000
"""Sessions and timeseries refuse more points (MAX_POINTS, MAX_ROLLUP_POINTS)."""
_RELEASE = re.compile(r'release:(?:"((?:[^"\\]|\\.)*)"|(\S+))')
NOT_FOUND = {"detail": "The requested resource does not exist"}
FORBIDDEN = {"detail": "You do not have permission to perform this action."}
PROJECT_PATH = "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/"
RELEASES_PATH = "/api/0/organizations/{organization_id_or_slug}/releases/"
RELEASE_PATH = "/api/0/organizations/{organization_id_or_slug}/releases/{version}/"
RELEASE_READERS = frozenset(
    {"org:ci", "project:admin", "project:read", "project:releases", "project:write"}
)
"""Any of these reads a release (the schema's `security` of getOrganizationRelease)."""


GOLDEN = (5**0.5 - 1) / 2
"""Steps of the golden ratio's fraction visit [0, 1) evenly in any run of them."""


@dataclass(frozen=True)
class SentryStats:
    """What Sentry knows about one release (or one period)."""

    transactions: int = 1000
    """Transactions that happened (what `count()` estimates)."""
    failure_rate: float = 0.01
    errors: int = 10
    p95_ms: float | None = 200.0
    durations_ms: tuple[float, ...] | None = None
    """Transaction durations served page by page (default: spread up to p95/0.95, in an
    order unrelated to their length, as Sentry's most recent first are: a client that
    reads the first pages only gets a fair sample, not the shortest)."""
    sessions: int = 1000
    crash_free_rate: float | None = 0.99
    sample_rate: float = 1.0
    """Trace sample rate: Sentry stores round(transactions × rate) of them."""
    failed_stored: int | None = None
    """Failed transactions among the stored ones (default: the rate's share)."""
    buckets: tuple[tuple[int, int], ...] | None = None
    """(stored, failed) per timeseries bucket (default: spread evenly)."""

    @property
    def stored(self) -> int:
        return round(self.transactions * self.sample_rate)

    def stored_failures(self) -> int:
        if self.failed_stored is not None:
            return self.failed_stored
        return round(self.stored * self.failure_rate)

    def durations(self) -> tuple[float, ...]:
        if self.durations_ms is not None:
            return self.durations_ms
        n = min(self.stored, 500)
        if not n or self.p95_ms is None:
            return ()
        top = self.p95_ms / 0.95
        spread = sorted(range(n), key=lambda i: (i * GOLDEN) % 1.0)
        return tuple(round(top * (i + 0.5) / n, 3) for i in spread)


EMPTY = SentryStats(
    transactions=0, failure_rate=0.0, errors=0, p95_ms=None, sessions=0, crash_free_rate=None
)


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeSentry(FakeServer):
    def __init__(
        self,
        *,
        token: str = "test-sentry-token",
        org: str = "acme",
        projects: dict[str, int] | None = None,
        environments: set[str] | None = None,
        scopes: set[str] | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.org = org
        self.projects = projects if projects is not None else {"web": 42}
        """Slug → id."""
        self.environments = environments if environments is not None else {"production", "staging"}
        """Environments Sentry has seen an event in; others answer 404."""
        self.scopes = set(ALL_SCOPES if scopes is None else scopes)
        self.by_release: dict[str, SentryStats] = {}
        self.by_period: list[tuple[float, SentryStats]] = [(float("-inf"), SentryStats())]
        self.releases: dict[str, dict[str, Any]] = {}
        """Version → {"version", "projects": [slugs]}."""
        self.deploys: list[dict[str, Any]] = []
        self.unreleased = 0
        """Errors of events that carry no release (grouped by release: `release: ""`)."""
        self.rate_limit = 40

    # -- scripting ----------------------------------------------------------------------

    def set_stats(
        self, stats: SentryStats, *, release: str | None = None, since: float | None = None
    ) -> None:
        if release is not None:
            self.by_release[release] = stats
        else:
            self.by_period.append((float("-inf") if since is None else since, stats))
            self.by_period.sort(key=lambda item: item[0])

    def stats_for(self, release: str | None, start: float | None) -> SentryStats:
        if release is not None:
            return self.by_release.get(release, EMPTY)
        chosen = self.by_period[0][1]
        for since, stats in self.by_period:
            if start is None or since <= start:
                chosen = stats
        return chosen

    def errors_by_release(self, start: float | None) -> dict[str, int]:
        """What `field=release&field=count()` groups: each release with errors."""
        counts = {name: self.stats_for(name, start).errors for name in self.by_release}
        if self.unreleased:
            counts[""] = self.unreleased
        return {name: n for name, n in counts.items() if n > 0}

    def release_projects(self, version: str) -> list[str] | None:
        """The slugs of the projects a release is in; None when Sentry lacks it (one
        with events but not created is in every project this fake has)."""
        if version in self.releases:
            return list(self.releases[version]["projects"])
        return list(self.projects) if self.has_events(version) else None

    def has_events(self, version: str) -> bool:
        stats = self.stats_for(version, None)
        return bool(stats.errors or stats.transactions or stats.sessions)

    def release_of(self, query: str) -> str | None:
        match = _RELEASE.search(query)
        if not match:
            return None
        if match.group(1) is not None:
            return re.sub(r"\\(.)", r"\1", match.group(1))
        return match.group(2)

    # -- routes -------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/0/projects/{org}/{project}/", self._project)
        app.router.add_get("/api/0/organizations/{org}/events/", self._events)
        app.router.add_get("/api/0/organizations/{org}/events-timeseries/", self._events_timeseries)
        app.router.add_get("/api/0/organizations/{org}/sessions/", self._sessions)
        app.router.add_post("/api/0/organizations/{org}/releases/", self._create_release)
        app.router.add_get("/api/0/organizations/{org}/releases/{version}/", self._release)
        app.router.add_post(
            "/api/0/organizations/{org}/releases/{version}/deploys/", self._create_deploy
        )
        app.router.add_post("/_fake/stats", self._control_stats)

    def _headers(self) -> dict[str, str]:
        return {
            "X-Sentry-Rate-Limit-Limit": str(self.rate_limit),
            "X-Sentry-Rate-Limit-Remaining": str(self.rate_limit - 1),
            "X-Sentry-Rate-Limit-Reset": str(int(time.time()) + 1),
            "X-Sentry-Rate-Limit-ConcurrentLimit": "25",
            "X-Sentry-Rate-Limit-ConcurrentRemaining": "24",
        }

    def _json(self, data: Any, status: int = 200, **headers: str) -> web.Response:
        return web.json_response(data, status=status, headers={**self._headers(), **headers})

    def failure_response(self, failure: Failure, request: web.Request) -> web.StreamResponse:
        if failure.kind == "401":
            return self._json({"detail": "Invalid token"}, 401)
        if failure.kind == "429":
            headers = self._headers()
            headers["X-Sentry-Rate-Limit-Remaining"] = "0"
            headers["X-Sentry-Rate-Limit-Reset"] = f"{time.time() + failure.reset_in:.3f}"
            return web.json_response(
                {
                    "detail": "You are attempting to use this endpoint too frequently. Limit is"
                    f" {self.rate_limit} requests in 1 seconds"
                },
                status=429,
                headers=headers,
            )
        return super().failure_response(failure, request)

    def unrouted(self, request: web.Request, refused: web.HTTPException) -> web.StreamResponse:
        """Sentry answers a path it does not know 404 and a method a path does not take 405
        (Django REST framework's `Method "X" not allowed.`), each `{"detail"}` in JSON,
        not aiohttp's text. Its error answers are the base fake's: `{"detail"}` is
        Sentry's shape."""
        if isinstance(refused, web.HTTPMethodNotAllowed):
            detail = f'Method "{request.method}" not allowed.'
            return web.json_response({"detail": detail}, status=405)
        return web.json_response(NOT_FOUND, status=404)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _check(self, request: web.Request, *needs: str) -> web.Response | None:
        if not self._authorized(request):
            return self._json({"detail": "Invalid token"}, 401)
        if request.match_info["org"] != self.org:
            return self._json(NOT_FOUND, 404)
        if any(scope not in self.scopes for scope in needs):
            return self._json(FORBIDDEN, 403)
        return None

    def _unseen_environment(self, request: web.Request) -> web.Response | None:
        """src/sentry/api/bases/organization.py `get_environments`: an environment
        name the organization has never seen raises ResourceDoesNotExist (404)."""
        for name in request.query.getall("environment", []):
            if name not in self.environments:
                return self._json(NOT_FOUND, 404)
        return None

    def _slug_of(self, id_or_slug: str) -> str | None:
        if id_or_slug in self.projects:
            return id_or_slug
        return next((s for s, i in self.projects.items() if str(i) == id_or_slug), None)

    async def _project(self, request: web.Request) -> web.Response:
        if (problem := self._check(request, "project:read")) is not None:
            return problem
        slug = self._slug_of(request.match_info["project"])
        if slug is None:
            return self._json(NOT_FOUND, 404)
        answer = dict(example("get", PROJECT_PATH, 200))
        answer.update(id=str(self.projects[slug]), slug=slug, name=slug)
        return self._json(answer)

    async def _events(self, request: web.Request) -> web.Response:
        if (problem := self._check(request, "org:read")) is not None:
            return problem
        q = request.query
        dataset = q.get("dataset", "discover")
        if dataset not in PUBLIC_DATASETS:
            return self._json(
                {"detail": f"dataset must be one of: {', '.join(PUBLIC_DATASETS)}"}, 400
            )
        if (unseen := self._unseen_environment(request)) is not None:
            return unseen
        fields = q.getall("field", [])
        if not fields:
            return self._json({"detail": "No columns selected"}, 400)
        if len(fields) > 20:
            return self._json({"detail": "You can view up to 20 fields at a time."}, 400)
        if "start" not in q or "end" not in q:
            return self._json({"detail": "start and end are required by this fake"}, 400)
        release = self.release_of(q.get("query", ""))
        if fields == ["release", "count()"] and dataset == "errors" and release is None:
            return self._by_release(_ts(q.get("start")), q.get("sort"))
        stats = self.stats_for(release, _ts(q.get("start")))
        if any(f in AGGREGATES for f in fields):
            return self._aggregate(dataset, fields, stats)
        if fields[0] == "span.duration" and dataset == "spans":
            return self._duration_page(request, stats)
        return self._json({"detail": f"this fake does not serve {fields}"}, 400)

    def _aggregate(self, dataset: str, fields: list[str], stats: SentryStats) -> web.Response:
        row: dict[str, Any] = {}
        meta: dict[str, str] = {}
        units: dict[str, str | None] = {}
        stored = stats.stored
        for f in fields:
            if f == "count()" and dataset == "errors":
                row[f] = stats.errors
                meta[f], units[f] = "integer", None
            elif f == "count()" and dataset == "spans":
                # the estimate: each stored span weighs 1 / its sample rate
                row[f] = round(stored / stats.sample_rate) if stored else 0
                meta[f], units[f] = "integer", None
            elif f == "count_sample()" and dataset == "spans":
                row[f] = stored
                meta[f], units[f] = "integer", None
            elif f == "failure_rate()" and dataset == "spans":
                row[f] = stats.stored_failures() / stored if stored else 0
                meta[f], units[f] = "percentage", None
            elif f == "p95(span.duration)" and dataset == "spans":
                row[f] = stats.p95_ms if stored else None
                meta[f], units[f] = "duration", "millisecond"
            else:
                return self._json({"detail": f"Unknown field: {f}"}, 400)
        return self._json(
            {
                "data": [row],
                "meta": {"fields": meta, "units": units, "isMetricsData": False, "tips": {}},
            }
        )

    def _by_release(self, start: float | None, sort: str | None) -> web.Response:
        if sort not in (None, "-count()", "count()"):
            return self._json(
                {"detail": f"Cannot sort by a field that is not selected: {sort}"}, 400
            )
        counts = sorted(
            self.errors_by_release(start).items(),
            key=lambda item: item[1],
            reverse=sort != "count()",
        )
        rows = [{"release": n or None, "count()": c} for n, c in counts]
        return self._json(
            {
                "data": rows[:100],
                "meta": {
                    "fields": {"release": "string", "count()": "integer"},
                    "units": {"release": None, "count()": None},
                    "isMetricsData": False,
                    "tips": {},
                },
            }
        )

    async def _events_timeseries(self, request: web.Request) -> web.Response:
        if (problem := self._check(request, "org:read")) is not None:
            return problem
        q = request.query
        if q.get("dataset") not in PUBLIC_DATASETS:
            return self._json(
                {"detail": f"dataset must be one of: {', '.join(PUBLIC_DATASETS)}"}, 400
            )
        if (unseen := self._unseen_environment(request)) is not None:
            return unseen
        start, end = _ts(q.get("start")), _ts(q.get("end"))
        if start is None or end is None:
            return self._json({"detail": "start and end are required by this fake"}, 400)
        y_axis = q.get("yAxis", "count()")
        if y_axis not in ("count()", "count_sample()", "failure_rate()"):
            return self._json({"detail": f"this fake does not serve yAxis {y_axis}"}, 400)
        interval = _stats_period(q.get("interval", "1h"))
        if interval is None or interval <= 0:
            return self._json({"detail": "Interval cannot result in a zero duration."}, 400)
        if (end - start) / interval > MAX_POINTS:  # validate_interval: MAX_ROLLUP_POINTS
            return self._json(
                {"detail": "Your interval and date range would create too many results."}, 400
            )
        first = math.floor(start / interval) * interval
        n = max(1, math.ceil((end - first) / interval))
        stats = self.stats_for(self.release_of(q.get("query", "")), start)
        buckets = stats.buckets or _spread(stats.stored, stats.stored_failures(), n)
        values = []
        for i, (kept, failed) in enumerate(buckets[:n]):
            value = {
                "count()": round(kept / stats.sample_rate),
                "count_sample()": kept,
                "failure_rate()": failed / kept if kept else 0,
            }[y_axis]
            values.append(
                {
                    "timestamp": (first + i * interval) * 1000,
                    "value": value,
                    "incomplete": False,
                    "sampleCount": kept,
                    "sampleRate": stats.sample_rate,
                    "confidence": "high",
                }
            )
        kind = "percentage" if y_axis == "failure_rate()" else "integer"
        return self._json(
            {
                "timeSeries": [
                    {
                        "values": values,
                        "yAxis": y_axis,
                        "meta": {"valueUnit": None, "valueType": kind, "interval": interval * 1000},
                    }
                ],
                "meta": {"dataset": q["dataset"], "start": start * 1000, "end": end * 1000},
            }
        )

    def _duration_page(self, request: web.Request, stats: SentryStats) -> web.Response:
        per_page = min(100, int(request.query.get("per_page", "100")))
        cursor = request.query.get("cursor", "0:0:0")
        offset = int(cursor.split(":")[1])
        durations = stats.durations()
        page = durations[offset : offset + per_page]
        base = str(
            request.url.with_query([(k, v) for k, v in request.query.items() if k != "cursor"])
        )
        prev_c, next_c = f"0:{max(0, offset - per_page)}:1", f"0:{offset + per_page}:0"
        has_next = offset + per_page < len(durations)
        link = (
            f'<{base}&cursor={prev_c}>; rel="previous"; results="{str(offset > 0).lower()}";'
            f' cursor="{prev_c}", <{base}&cursor={next_c}>; rel="next";'
            f' results="{str(has_next).lower()}"; cursor="{next_c}"'
        )
        rows = [
            {"span.duration": d, "timestamp": "2026-11-26T14:00:00+00:00", "id": str(i)}
            for i, d in enumerate(page, start=offset)
        ]
        return self._json(
            {
                "data": rows,
                "meta": {
                    "fields": {"span.duration": "duration", "timestamp": "date"},
                    "units": {"span.duration": "millisecond"},
                },
            },
            Link=link,
        )

    async def _sessions(self, request: web.Request) -> web.Response:
        if (problem := self._check(request, "org:read")) is not None:
            return problem
        q = request.query
        fields = q.getall("field", [])
        if not fields:
            return self._json({"detail": 'Request is missing a "field"'}, 400)
        if "session.status" in q.getall("groupBy", []) and any("crash" in f for f in fields):
            return self._json(
                {"detail": "Cannot group field crash_rate(session) by session.status"}, 400
            )
        if q.get("interval", "1h") != "1h":
            return self._json({"detail": "The interval has to be a multiple of 1h"}, 400)
        if (unseen := self._unseen_environment(request)) is not None:
            return unseen
        asked_start, asked_end = _ts(q.get("start")), _ts(q.get("end"))
        if asked_start is None or asked_end is None:
            return self._json({"detail": "start and end are required by this fake"}, 400)
        # whole hours: start rounded down, end rounded up (get_constrained_date_range)
        start = math.floor(asked_start / HOUR) * HOUR
        end = max(math.ceil(asked_end / HOUR) * HOUR, start + HOUR)
        hours = int((end - start) // HOUR)
        if hours * len(fields) > MAX_POINTS:
            return self._json(
                {"detail": "Your interval and date range would create too many results."}, 400
            )
        stats = self.stats_for(self.release_of(q.get("query", "")), start)
        totals: dict[str, Any] = {}
        series: dict[str, list[Any]] = {}
        for f in fields:
            if f == "sum(session)":
                totals[f] = stats.sessions
                per_hour = [stats.sessions // hours] * hours
                per_hour[-1] += stats.sessions - sum(per_hour)
                series[f] = per_hour
            elif f == "crash_free_rate(session)":
                totals[f] = stats.crash_free_rate if stats.sessions else None
                series[f] = [totals[f]] * hours
            else:
                return self._json({"detail": f"Invalid field: {f}"}, 400)
        return self._json(
            {
                "groups": [{"by": {}, "totals": totals, "series": series}],
                "start": _iso(start),
                "end": _iso(end),
                "intervals": [_iso(start + i * HOUR) for i in range(hours)],
                "query": q.get("query", ""),
            }
        )

    async def _release(self, request: web.Request) -> web.Response:
        if (problem := self._check(request)) is not None:
            return problem
        if not self.scopes & RELEASE_READERS:
            return self._json(FORBIDDEN, 403)
        version = request.match_info["version"]  # decoded once, as Django does
        projects = self.release_projects(version)
        if projects is None:
            return self._json(NOT_FOUND, 404)
        answer = dict(example("get", RELEASE_PATH, 200))
        template = answer["projects"][0]
        seen = self.has_events(version)
        answer.update(
            version=version,
            shortVersion=version,
            firstEvent=_iso(time.time() - HOUR) if seen else None,
            lastEvent=_iso(time.time()) if seen else None,
            projects=[{**template, "id": self.projects[p], "slug": p, "name": p} for p in projects],
        )
        return self._json(answer)

    async def _create_release(self, request: web.Request) -> web.Response:
        if (problem := self._check(request, "project:releases")) is not None:
            return problem
        body = request[BODY] or {}
        if not body.get("version"):
            return self._json({"version": ["This field is required."]}, 400)
        if not isinstance(body.get("projects"), list) or not body["projects"]:
            return self._json({"projects": ["This field is required."]}, 400)
        if any(not isinstance(p, str) or p not in self.projects for p in body["projects"]):
            return self._json({"projects": ["Invalid project ids or slugs"]}, 400)
        version = body["version"]
        release = self.releases.get(version)
        created = release is None
        if release is None:
            release = self.releases[version] = {"version": version, "projects": []}
        new = [p for p in body["projects"] if p not in release["projects"]]
        release["projects"] = [*release["projects"], *new]
        answer = dict(example("post", RELEASES_PATH, 201))
        answer.update(
            version=version,
            shortVersion=version,
            projects=[
                {**answer["projects"][0], "id": self.projects[p], "slug": p, "name": p}
                for p in release["projects"]
            ],
        )
        return self._json(answer, 201 if created or new else 208)

    async def _create_deploy(self, request: web.Request) -> web.Response:
        if (problem := self._check(request, "project:releases")) is not None:
            return problem
        version = request.match_info["version"]  # decoded once, as Django does
        release = self.releases.get(version)
        if release is None:
            return self._json(NOT_FOUND, 404)
        body = request[BODY] or {}
        if not body.get("environment"):
            return self._json({"environment": ["This field is required."]}, 400)
        projects = body.get("projects") or release["projects"]
        slugs = [self._slug_of(str(p)) or str(p) for p in projects]
        invalid = sorted(set(slugs) - set(release["projects"]))
        if invalid:
            message = f"Invalid projects ({', '.join(invalid)}) for release {version}"
            return self._json(
                {
                    "detail": {
                        "code": "parameter-validation-error",
                        "message": message,
                        "extra": {"context": ""},
                    }
                },
                400,
            )
        deploy = {"id": str(len(self.deploys) + 1), "version": version, **body}
        self.deploys.append(deploy)
        answer = {k: deploy.get(k) for k in ("environment", "name", "url", "dateStarted")}
        answer["dateFinished"] = deploy.get("dateFinished") or _iso(time.time())
        answer["id"] = deploy["id"]
        return self._json(answer, 201)

    async def _control_stats(self, request: web.Request) -> web.Response:
        spec = await request.json()
        stats = replace(SentryStats(), **spec.get("stats", {}))
        self.set_stats(stats, release=spec.get("release"), since=spec.get("since"))
        return web.json_response({"ok": True, "stats": asdict(stats)})


def _spread(stored: int, failed: int, n: int) -> list[tuple[int, int]]:
    """`stored` spans and `failed` of them over n buckets, as evenly as integers go."""
    kept = [stored // n + (i < stored % n) for i in range(n)]
    bad = [failed // n + (i < failed % n) for i in range(n)]
    return [(k, min(f, k)) for k, f in zip(kept, bad, strict=True)]


def _stats_period(text: str) -> int | None:
    """Sentry's parse_stats_period: `60` (seconds), `5m`, `1h`, `1d`, `1w`."""
    match = re.fullmatch(r"(\d+)([hdmsw]?)", text)
    if match is None:
        return None
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match[2]]
    return int(match[1]) * unit


if __name__ == "__main__":
    serve_main(lambda args: FakeSentry(token=args.token), sys.argv[1:])
