"""A fake Sentry answering the documented request and response shapes.

Shapes from ../shared/reference/sentry-newrelic-api.md: bearer auth and its 401
body, `GET /api/0/projects/{org}/{slug}/`, `GET /api/0/organizations/{org}/events/`
(public datasets only: `transactions` and `discover` get Sentry's 400
"dataset must be one of"), `GET …/sessions/`, `POST …/releases/` and
`…/releases/{version}/deploys/` (404 while the release is missing), Link-header
pagination with `results="true|false"` cursors, and rate-limit headers on every
answer.

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

import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakes._server import BODY, Failure, FakeServer, serve_main

PUBLIC_DATASETS = ("errors", "logs", "profile_functions", "spans", "tracemetrics", "uptime_results")
AGGREGATES = ("count()", "failure_rate()", "p95(span.duration)")
_RELEASE = re.compile(r'release:(?:"((?:[^"\\]|\\.)*)"|(\S+))')


@dataclass(frozen=True)
class SentryStats:
    """What Sentry knows about one release (or one period)."""

    transactions: int = 1000
    failure_rate: float = 0.01
    errors: int = 10
    p95_ms: float | None = 200.0
    durations_ms: tuple[float, ...] | None = None
    """Transaction durations served page by page (default: spread up to p95/0.95)."""
    sessions: int = 1000
    crash_free_rate: float | None = 0.99

    def durations(self) -> tuple[float, ...]:
        if self.durations_ms is not None:
            return self.durations_ms
        n = min(self.transactions, 500)
        if not n or self.p95_ms is None:
            return ()
        top = self.p95_ms / 0.95
        return tuple(round(top * (i + 0.5) / n, 3) for i in range(n))


EMPTY = SentryStats(
    transactions=0, failure_rate=0.0, errors=0, p95_ms=None, sessions=0, crash_free_rate=None
)


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class FakeSentry(FakeServer):
    def __init__(
        self,
        *,
        token: str = "test-sentry-token",
        org: str = "acme",
        projects: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.org = org
        self.projects = projects if projects is not None else {"web": 42}
        self.by_release: dict[str, SentryStats] = {}
        self.by_period: list[tuple[float, SentryStats]] = [(float("-inf"), SentryStats())]
        self.releases: dict[str, dict[str, Any]] = {}
        self.deploys: list[dict[str, Any]] = []
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

    def release_of(self, query: str) -> str | None:
        match = _RELEASE.search(query)
        if not match:
            return None
        if match.group(1) is not None:
            return re.sub(r"\\(.)", r"\1", match.group(1))
        return match.group(2)

    # -- routes -------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/0/projects/{org}/{slug}/", self._project)
        app.router.add_get("/api/0/organizations/{org}/events/", self._events)
        app.router.add_get("/api/0/organizations/{org}/sessions/", self._sessions)
        app.router.add_post("/api/0/organizations/{org}/releases/", self._create_release)
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

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _check(self, request: web.Request) -> web.Response | None:
        if not self._authorized(request):
            return self._json({"detail": "Invalid token"}, 401)
        if request.match_info["org"] != self.org:
            return self._json({"detail": "The requested resource does not exist"}, 404)
        return None

    async def _project(self, request: web.Request) -> web.Response:
        if (problem := self._check(request)) is not None:
            return problem
        slug = request.match_info["slug"]
        if slug not in self.projects:
            return self._json({"detail": "The requested resource does not exist"}, 404)
        return self._json({"id": str(self.projects[slug]), "slug": slug, "name": slug})

    async def _events(self, request: web.Request) -> web.Response:
        if (problem := self._check(request)) is not None:
            return problem
        q = request.query
        dataset = q.get("dataset", "discover")
        if dataset not in PUBLIC_DATASETS:
            return self._json(
                {"detail": f"dataset must be one of: {', '.join(PUBLIC_DATASETS)}"}, 400
            )
        fields = q.getall("field", [])
        if not fields:
            return self._json({"detail": "No columns selected"}, 400)
        if len(fields) > 20:
            return self._json({"detail": "You can view up to 20 fields at a time."}, 400)
        if "start" not in q or "end" not in q:
            return self._json({"detail": "start and end are required by this fake"}, 400)
        stats = self.stats_for(self.release_of(q.get("query", "")), _ts(q.get("start")))
        if any(f in AGGREGATES for f in fields):
            return self._aggregate(dataset, fields, stats)
        if fields[0] == "span.duration" and dataset == "spans":
            return self._duration_page(request, stats)
        return self._json({"detail": f"this fake does not serve {fields}"}, 400)

    def _aggregate(self, dataset: str, fields: list[str], stats: SentryStats) -> web.Response:
        row: dict[str, Any] = {}
        meta: dict[str, str] = {}
        units: dict[str, str | None] = {}
        for f in fields:
            if f == "count()":
                row[f] = stats.errors if dataset == "errors" else stats.transactions
                meta[f], units[f] = "integer", None
            elif f == "failure_rate()" and dataset == "spans":
                row[f] = stats.failure_rate if stats.transactions else 0
                meta[f], units[f] = "percentage", None
            elif f == "p95(span.duration)" and dataset == "spans":
                row[f] = stats.p95_ms if stats.transactions else None
                meta[f], units[f] = "duration", "millisecond"
            else:
                return self._json({"detail": f"Unknown field: {f}"}, 400)
        return self._json(
            {
                "data": [row],
                "meta": {"fields": meta, "units": units, "isMetricsData": False, "tips": {}},
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
        if (problem := self._check(request)) is not None:
            return problem
        q = request.query
        fields = q.getall("field", [])
        if not fields:
            return self._json({"detail": 'Request is missing a "field"'}, 400)
        if "session.status" in q.getall("groupBy", []) and any("crash" in f for f in fields):
            return self._json(
                {"detail": "Cannot group field crash_rate(session) by session.status"}, 400
            )
        stats = self.stats_for(self.release_of(q.get("query", "")), _ts(q.get("start")))
        totals: dict[str, Any] = {}
        for f in fields:
            if f == "sum(session)":
                totals[f] = stats.sessions
            elif f == "crash_free_rate(session)":
                totals[f] = stats.crash_free_rate if stats.sessions else None
            else:
                return self._json({"detail": f"Invalid field: {f}"}, 400)
        return self._json(
            {
                "groups": [{"by": {}, "totals": totals}],
                "start": q.get("start"),
                "end": q.get("end"),
                "intervals": [],
                "query": q.get("query", ""),
            }
        )

    async def _create_release(self, request: web.Request) -> web.Response:
        if (problem := self._check(request)) is not None:
            return problem
        body = request[BODY] or {}
        if not body.get("version") or not body.get("projects"):
            return self._json({"detail": "version and projects are required"}, 400)
        if body["version"] in self.releases:
            return self._json(self.releases[body["version"]], 208)
        self.releases[body["version"]] = {"version": body["version"], "projects": body["projects"]}
        return self._json(self.releases[body["version"]], 201)

    async def _create_deploy(self, request: web.Request) -> web.Response:
        if (problem := self._check(request)) is not None:
            return problem
        version = unquote(request.match_info["version"])
        if version not in self.releases:
            return self._json({"detail": "The requested resource does not exist"}, 404)
        body = request[BODY] or {}
        if not body.get("environment"):
            return self._json({"environment": ["This field is required."]}, 400)
        deploy = {"id": str(len(self.deploys) + 1), "version": version, **body}
        self.deploys.append(deploy)
        return self._json(
            {
                k: deploy.get(k)
                for k in ("environment", "name", "url", "dateStarted", "dateFinished", "id")
            },
            201,
        )

    async def _control_stats(self, request: web.Request) -> web.Response:
        spec = await request.json()
        stats = replace(SentryStats(), **spec.get("stats", {}))
        self.set_stats(stats, release=spec.get("release"), since=spec.get("since"))
        return web.json_response({"ok": True, "stats": asdict(stats)})


if __name__ == "__main__":
    serve_main(lambda args: FakeSentry(token=args.token), sys.argv[1:])
