"""A fake New Relic NerdGraph answering the documented request and response shapes.

Shapes from ../shared/reference/sentry-newrelic-api.md: `POST /graphql` with an
`API-Key` header (else 401 with the BAD_API_KEY body, newrelic-client-go PR #603),
`nrql(query:, timeout:)` results as `{"data":{"actor":{"account":{"nrql":{"results":
[…]}}}}}` (docs nerdgraph-nrql-tutorial.mdx), bad NRQL as HTTP 200 with `errors`,
`TOO_MANY_REQUESTS`/`TIMEOUT` as HTTP 200 with `extensions.errorClass`
(newrelic-client-go internal/http/graphql.go, retry.go), and
`changeTrackingCreateEvent` markers (docs change-tracking/config/nerdgraph.mdx).

As strict as NerdGraph where Postflight can go wrong:
- a marker's `entitySearch` query runs over `entities` (guid, name, domain,
  accountId); one that matches no entity or more than one is refused with a GraphQL
  error (the event is recorded on the one entity the search finds; the error's
  wording is this fake's, not captured from New Relic);
- `deprecation = "This field is deprecated! …"` adds that warning to `errors` of an
  answer that also has its data, as NerdGraph does (the Go client's `IsDeprecated`
  treats it as a warning, internal/http/graphql.go).

NRQL must end in `SINCE <ms> UNTIL <ms>` (epoch milliseconds), as Postflight sends
it; anything else is answered with an NRQL error, so a client that forgets the
period fails loudly. Comments are ignored first, as NRQL does (`--` or `//` to the end
of the line, `/* … */`; docs whats-new 2023-04-12 "NRQL queries now support
comments"): a period written inside a comment is no period. Rows are set per NRQL
(without the period) and, optionally, per period start: `answer(nrql, rows,
since=T0)` serves `rows` for periods starting at or after T0. A query containing
`FORM` is a syntax error, as in the docs' example.

    async with FakeNewRelic(api_key="k") as nr:
        nr.answer("SELECT percentile(duration, 95) FROM Transaction",
                  [{"percentile.duration": {"95": 0.2}}])
        nr.fail("too_many_requests", times=1)

Or as a process: `python -m tests.fakes.newrelic [--port P] [--token KEY]`, then
`POST /_fake/rows {"nrql": "...", "rows": [...], "since": null}`.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes._server import BODY, Failure, FakeServer, serve_main

Rows = list[dict[str, Any]]
_ENTITY_SEARCH = re.compile(r'entitySearch:\s*\{\s*query:\s*("(?:[^"\\]|\\.)*")')
_ENTITY_GUID = re.compile(r'entityGuid:\s*("(?:[^"\\]|\\.)*")')
_TIMESTAMP = re.compile(r"timestamp:\s*(\d+)")
_CONDITION = re.compile(r"^(?P<key>\w+)\s*=\s*(?:'(?P<text>(?:[^'\\]|\\.)*)'|(?P<number>\d+))$")
_COMMENT = re.compile(r"'(?:[^'\\]|\\.)*'|`[^`]*`|(--|//)[^\n]*|/\*.*?\*/", re.S)
_PERIOD = re.compile(r"^(?P<nrql>.*\S)\s+SINCE\s+(?P<since>\d+)\s+UNTIL\s+(?P<until>\d+)\s*$", re.S)


def without_comments(nrql: str) -> str:
    """`nrql` as New Relic reads it: comments out, string literals and `names` kept."""

    def blank(match: re.Match[str]) -> str:
        comment = match.group(1) is not None or match.group(0).startswith("/*")
        return " " if comment else match.group(0)

    return _COMMENT.sub(blank, nrql)


def _error(message: str, error_class: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message, "path": ["actor", "account", "nrql"]}
    if error_class:
        err["extensions"] = {"errorClass": error_class}
    return {"data": {"actor": {"account": {"nrql": None}}}, "errors": [err]}


ACCESS_DENIED: dict[str, Any] = {
    "data": {"actor": {"account": None}},
    "errors": [{"message": "Access denied.", "path": ["actor", "account"]}],
}
"""NerdGraph's answer, HTTP 200, for an `account(id:)` the key's user has no access to
(the brief's "Access denied" for a wrong account; its shape is not in the reference: no
`extensions`, the error at the account, not at `nrql`)."""


class FakeNewRelic(FakeServer):
    def __init__(self, *, api_key: str = "test-newrelic-key", account_id: int = 1234567) -> None:
        super().__init__()
        self.api_key = api_key
        self.account_id = account_id
        self.default_rows: Rows = [{"count": 1000}]
        self.rows: dict[str, list[tuple[float, Rows | Callable[[int, int], Rows]]]] = {}
        self.markers: list[str] = []
        self.entities: list[dict[str, Any]] = [
            {
                "guid": "MXxBUE18",
                "name": "web (production)",
                "domain": "APM",
                "accountId": account_id,
            }
        ]
        """What entity searches run over (the same name may exist in other accounts)."""
        self.deprecation: str | None = None
        self.queries: list[tuple[str, int, int]] = []
        """(NRQL without the period, since ms, until ms) per NRQL request."""

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def answer(
        self, nrql: str, rows: Rows | Callable[[int, int], Rows], *, since: float | None = None
    ) -> None:
        entries = self.rows.setdefault(nrql.strip(), [])
        entries.append((float("-inf") if since is None else since * 1000, rows))
        entries.sort(key=lambda item: item[0])

    def rows_for(self, nrql: str, since_ms: int, until_ms: int) -> Rows:
        entries = self.rows.get(nrql.strip())
        if not entries:
            return self.default_rows
        chosen = entries[0][1]
        for since, rows in entries:
            if since <= since_ms:
                chosen = rows
        return chosen(since_ms, until_ms) if callable(chosen) else chosen

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/graphql", self._graphql)
        app.router.add_post("/_fake/rows", self._control_rows)

    def failure_response(self, failure: Failure, request: web.Request) -> web.StreamResponse:
        if failure.kind == "401":
            return web.json_response(
                {
                    "errors": [
                        {
                            "extensions": {"error_code": "BAD_API_KEY"},
                            "message": "Bad API Key or no API Key provided",
                        }
                    ]
                },
                status=401,
            )
        if failure.kind == "too_many_requests":
            return web.json_response(_error("Too many concurrent requests", "TOO_MANY_REQUESTS"))
        if failure.kind == "too_many_requests_code":  # the class under `code` (reference §7)
            body = _error("Too many concurrent requests")
            body["errors"][0]["extensions"] = {"code": "TOO_MANY_REQUESTS"}
            return web.json_response(body)
        if failure.kind == "timeout":
            return web.json_response(_error("NRDB query timed out", "TIMEOUT"))
        if failure.kind == "429":
            return web.json_response({"errors": [{"message": "Too many requests"}]}, status=429)
        return super().failure_response(failure, request)

    def error_answer(self, status: int, message: str) -> web.Response:
        """NerdGraph's error body, GraphQL's `{"errors": [{"message"}]}`, for any error
        status (`fail("500")`, `fail("unavailable")`), where the base fake's `{"detail"}`
        let a reading of a key New Relic never sends pass."""
        return web.json_response({"errors": [{"message": message}]}, status=status)

    def unrouted(self, request: web.Request, refused: web.HTTPException) -> web.StreamResponse:
        """NerdGraph serves `POST /graphql` alone: any other path or method is a 404 in its
        `errors` shape here, not aiohttp's text."""
        return self.error_answer(404, "Not Found")

    async def _graphql(self, request: web.Request) -> web.Response:
        if request.headers.get("API-Key") != self.api_key:
            return web.json_response(
                {
                    "errors": [
                        {
                            "extensions": {"error_code": "BAD_API_KEY"},
                            "message": "Bad API Key or no API Key provided",
                        }
                    ]
                },
                status=401,
            )
        body = request[BODY]
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return web.json_response(
                {"errors": [{"message": "Must provide query string."}]}, status=400
            )
        query: str = body["query"]
        variables = body.get("variables") or {}
        if "changeTrackingCreateDeployment" in query:
            return self._legacy_marker(query)
        if "changeTrackingCreateEvent" in query:
            search = _ENTITY_SEARCH.search(query)
            found = self.search_entities(json.loads(search.group(1))) if search else []
            if len(found) != 1:
                return web.json_response(
                    {
                        "data": {"changeTrackingCreateEvent": None},
                        "errors": [
                            {
                                "message": f"Entity search matched {len(found)} entities;"
                                " a change tracking event needs exactly one",
                                "path": ["changeTrackingCreateEvent"],
                            }
                        ],
                    }
                )
            self.markers.append(query)
            return web.json_response(
                {
                    "data": {
                        "changeTrackingCreateEvent": {
                            "changeTrackingEvent": {"changeTrackingId": str(uuid.uuid4())},
                            "messages": [],
                        }
                    }
                }
            )
        if "nrql(" not in query:
            return web.json_response({"errors": [{"message": "this fake serves nrql only"}]})
        if variables.get("accountId") != self.account_id:  # one the key's user cannot read
            return web.json_response(ACCESS_DENIED)
        nrql = variables.get("nrql")
        if not isinstance(nrql, str):
            return web.json_response(
                _error("Variable $nrql of required type Nrql! was not provided.")
            )
        match = _PERIOD.match(nrql)
        if match is None or _PERIOD.match(without_comments(nrql)) is None:
            return web.json_response(
                _error("this fake requires SINCE <ms> UNTIL <ms> at the end of the NRQL")
            )
        base, since, until = match["nrql"], int(match["since"]), int(match["until"])
        if re.search(r"\bFORM\b", base):
            return web.json_response(
                _error("NRQL Syntax Error: Error at line 1 position 8, unexpected 'FORM'")
            )
        self.queries.append((base, since, until))
        results = self.rows_for(base, since, until)
        answer: dict[str, Any] = {"data": {"actor": {"account": {"nrql": {"results": results}}}}}
        if self.deprecation:
            answer["errors"] = [{"message": self.deprecation, "path": ["actor", "account", "nrql"]}]
        return web.json_response(answer)

    def _legacy_marker(self, query: str) -> web.Response:
        """`changeTrackingCreateDeployment`: `entityGuid` of a known entity, `timestamp`
        (epoch ms) within 24 h of now, or an error (the reference, section 9)."""
        guid = _ENTITY_GUID.search(query)
        stamp = _TIMESTAMP.search(query)
        problem = None
        if guid is None or not self.search_entities(f"id = '{json.loads(guid.group(1))}'"):
            problem = "Entity not found"
        elif stamp is not None and abs(int(stamp.group(1)) - time.time() * 1000) > 86_400_000:
            problem = "timestamp must be within 24 hours of now"
        if problem is not None:
            return web.json_response(
                {
                    "data": {"changeTrackingCreateDeployment": None},
                    "errors": [{"message": problem, "path": ["changeTrackingCreateDeployment"]}],
                }
            )
        self.markers.append(query)
        return web.json_response(
            {"data": {"changeTrackingCreateDeployment": {"deploymentId": str(uuid.uuid4())}}}
        )

    def search_entities(self, query: str) -> list[dict[str, Any]]:
        """Entities matching `key = 'text' AND key = 123 …` (the subset Postflight
        writes: id, name, domain, accountId)."""
        conditions = [c.strip() for c in re.split(r"\s+AND\s+", query) if c.strip()]
        wanted: dict[str, str] = {}
        for condition in conditions:
            match = _CONDITION.match(condition)
            if match is None:
                return []
            text = match["text"]
            value = re.sub(r"\\(.)", r"\1", text) if text is not None else match["number"]
            wanted[match["key"]] = value
        keys = {"id": "guid", "name": "name", "domain": "domain", "accountId": "accountId"}
        if any(k not in keys for k in wanted):
            return []
        return [e for e in self.entities if all(str(e[keys[k]]) == v for k, v in wanted.items())]

    async def _control_rows(self, request: web.Request) -> web.Response:
        spec = await request.json()
        self.answer(spec["nrql"], spec["rows"], since=spec.get("since"))
        return web.json_response({"ok": True})


if __name__ == "__main__":
    serve_main(lambda args: FakeNewRelic(api_key=args.token), sys.argv[1:])
