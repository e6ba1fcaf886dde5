"""A strict fake of the Vercel REST API parts Postflight calls, and of Vercel's webhooks.

Checks what Vercel checks: `Authorization: Bearer <token>` (403 with Vercel's error
shape otherwise), `?teamId=` when the fake is a team's, the path, the known project
and deployment (404), and the approve-stage and complete bodies. Answers with the documented shapes
(reference/seed-stack-apis.md): instant rollback → 201, project → `targets.production`,
rolling release → `{"rollingRelease": …}`. `accepted` lists every rollback it acted on,
duplicates included: the truth a test counts. Misbehaves on demand (see `_server`).

    python -m tests.fakes.vercel [--port P] [--token T]   # another process (kill -9 tests)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import sys
import time
from typing import Any

from aiohttp import web

from tests.fakes._server import BODY, Failure, FakeServer, serve_main

PROJECT = "prj_web123"
OLD = "dpl_old111"
NEW = "dpl_new222"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class FakeVercel(FakeServer):
    def __init__(
        self, token: str = "test-token", team_id: str | None = None, rollback_delay: float = 0.0
    ) -> None:
        super().__init__()
        self.rollback_delay = rollback_delay
        """Seconds a rollback takes: half before Vercel acts on it, half after (before it
        answers), so a kill -9 can land on either side."""
        self.token = token
        self.team_id = team_id
        self.deployments: set[str] = {OLD, NEW}
        self.production: dict[str, str] = {PROJECT: NEW}
        self.accepted: list[dict[str, Any]] = []
        """Every rollback acted on (201), duplicates included."""
        self.approvals: list[dict[str, Any]] = []
        self.completions: list[dict[str, Any]] = []
        """Every `rolling-release/complete` acted on."""
        self.rolling: dict[str, dict[str, Any]] = {}
        self.listed: dict[str, list[dict[str, Any]]] = {
            PROJECT: [listed_deployment(NEW, 1764460800000), listed_deployment(OLD, 1764374400000)]
        }
        """Each project's production deployments, newest first, as `GET /v6/deployments`
        lists them."""

    def start_rolling_release(
        self,
        project: str,
        canary: str,
        stages: int = 3,
        *,
        active: int = 0,
        at: float | None = None,
    ) -> None:
        """An ACTIVE release of `canary` at stage `active`, in Vercel's document shape:
        `stages` (the last one 100%, `isFinalStage`), `activeStage`, `nextStage`,
        `startedAt` and `updatedAt` (ms; `at`, in seconds, else now)."""
        percentages = (10, 50, 100)[-stages:]
        started = round((time.time() if at is None else at) * 1000)
        self.rolling[project] = {
            "startedAt": started,
            "state": "ACTIVE",
            "currentDeployment": {"id": self.production.get(project)},
            "canaryDeployment": {"id": canary},
            "advancementType": "manual-approval",
            "stages": [
                {
                    "index": i,
                    "isFinalStage": i == len(percentages) - 1,
                    "targetPercentage": p,
                    "requireApproval": i < len(percentages) - 1,
                    "duration": None,
                }
                for i, p in enumerate(percentages)
            ],
        }
        self.move_stage(project, active, at=at)

    def move_stage(self, project: str, index: int, *, at: float | None = None) -> None:
        """The release's active stage becomes `index` (by hand, or on its own) at `at`
        (seconds, else now: its `updatedAt`); reaching the final stage completes it, as
        Vercel does."""
        release = self.rolling[project]
        release["updatedAt"] = round((time.time() if at is None else at) * 1000)
        stages = release["stages"]
        release["activeStageIndex"] = index
        release["activeStage"] = dict(stages[index])
        release["nextStage"] = dict(stages[index + 1]) if index + 1 < len(stages) else None
        if stages[index]["isFinalStage"]:
            release["state"] = "COMPLETE"

    def failure_response(self, failure: Failure, request: web.Request) -> web.StreamResponse:
        """Vercel's error shape (`{"error": {"code", "message"}}`) for any status; its rate
        limit is a 429 with `X-RateLimit-Limit`/`-Remaining: 0`/`-Reset` (epoch seconds,
        `reset_in` from now) and `error.limit`: `429` adds `Retry-After`, `rate_limit`
        does not (Vercel's docs promise only the `X-RateLimit-*` headers)."""
        if failure.kind in ("429", "rate_limit"):
            reset = math.ceil(time.time() + failure.reset_in)
            response = web.json_response(
                {
                    "error": {
                        "code": "rate_limited",
                        "message": "Rate limit exceeded",
                        "limit": {"remaining": 0, "reset": reset, "total": 100},
                    }
                },
                status=429,
            )
            response.headers["X-RateLimit-Limit"] = "100"
            response.headers["X-RateLimit-Remaining"] = "0"
            response.headers["X-RateLimit-Reset"] = str(reset)
            if failure.kind == "429":
                response.headers["Retry-After"] = str(math.ceil(failure.reset_in))
            return response
        return super().failure_response(failure, request)

    def error_answer(self, status: int, message: str) -> web.Response:
        """Vercel's error body, `{"error": {"code", "message"}}`, for any error status
        (`fail("500")`, `fail("unavailable")`), where the base fake's `{"detail"}` let a
        reading of a key Vercel never sends pass."""
        code = "service_unavailable" if status == 503 else "fake_failure"
        return _error(status, code, message)

    def unrouted(self, request: web.Request, refused: web.HTTPException) -> web.StreamResponse:
        """Vercel answers a path it does not know, and a method a path does not take, 404
        `not_found` in its JSON shape, not aiohttp's text."""
        return _error(404, "not_found", "The requested endpoint was not found.")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/projects/{project}/rollback/{deployment}", self.rollback)
        app.router.add_get("/v9/projects/{project}", self.project)
        app.router.add_get("/v6/deployments", self.list_deployments)
        app.router.add_get("/v1/projects/{project}/rolling-release", self.rolling_release)
        app.router.add_post("/v1/projects/{project}/rolling-release/approve-stage", self.approve)
        app.router.add_post("/v1/projects/{project}/rolling-release/complete", self.complete)
        app.router.add_get("/_fake/accepted", self._control_accepted)
        app.router.add_post("/_fake/rolling/{project}/{canary}", self._control_rolling)
        app.router.add_get("/_fake/rolling/{project}", self._control_rolling_state)

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(403, "forbidden", "Not authorized")
        if self.team_id is not None and request.query.get("teamId") != self.team_id:
            return _error(403, "forbidden", "You don't have permission to access this team")
        if request.match_info.get("project") not in self.production:
            return _error(404, "not_found", "Project not found")
        return None

    async def rollback(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        if self.rollback_delay:
            await asyncio.sleep(self.rollback_delay / 2)
        project = request.match_info["project"]
        deployment = request.match_info["deployment"]
        if deployment not in self.deployments:
            return _error(404, "not_found", "Deployment not found")
        self.production[project] = deployment
        release = self.rolling.get(project)
        if release is not None and release["state"] == "ACTIVE":
            release["state"] = "ABORTED"  # aborting a rolling release is a rollback
            release["updatedAt"] = round(time.time() * 1000)
        self.accepted.append(
            {
                "project": project,
                "deployment": deployment,
                "description": request.query.get("description"),
                "at": time.time(),
            }
        )
        if self.rollback_delay:
            await asyncio.sleep(self.rollback_delay / 2)
        return web.json_response({}, status=201)

    async def list_deployments(self, request: web.Request) -> web.Response:
        """`GET /v6/deployments`: newest first, filtered by `projectId`, `target` and
        `state` (a comma list), at most `limit` (Vercel's default 20)."""
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(403, "forbidden", "Not authorized")
        if self.team_id is not None and request.query.get("teamId") != self.team_id:
            return _error(403, "forbidden", "You don't have permission to access this team")
        project = request.query.get("projectId")
        if project is not None and project not in self.production:
            return _error(404, "not_found", "Project not found")
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return _error(400, "bad_request", "Invalid query parameter limit")
        states = set(filter(None, request.query.get("state", "").split(",")))
        target = request.query.get("target")
        listed = [
            d
            for name, deployments in self.listed.items()
            if project in (None, name)
            for d in deployments
            if (not states or d["state"] in states) and target in (None, d["target"])
        ][:limit]
        return web.json_response(
            {
                "deployments": listed,
                "pagination": {
                    "count": len(listed),
                    "next": listed[-1]["created"] if listed else None,
                    "prev": listed[0]["created"] if listed else None,
                },
            }
        )

    async def project(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        project = request.match_info["project"]
        return web.json_response(
            {
                "id": project,
                "name": "web",
                "targets": {"production": {"id": self.production[project]}},
            }
        )

    async def rolling_release(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        return web.json_response(
            {"rollingRelease": self.rolling.get(request.match_info["project"])}
        )

    async def approve(self, request: web.Request) -> web.Response:
        """`approve-stage` advances an ACTIVE release of that canary from its active stage
        to the next one that exists: `activeStageIndex` (when sent) must be the active
        stage, `nextStageIndex` the one after it; past the last stage there is none."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        body = request[BODY]
        project = request.match_info["project"]
        release = self.rolling.get(project)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("nextStageIndex"), int)
            or not isinstance(body.get("canaryDeploymentId"), str)
        ):
            return _error(400, "bad_request", "nextStageIndex and canaryDeploymentId are required")
        if release is None or release["state"] != "ACTIVE":
            return _error(400, "bad_request", "No active rolling release")
        if body["canaryDeploymentId"] != release["canaryDeployment"]["id"]:
            return _error(400, "bad_request", "canaryDeploymentId does not match")
        active = release["activeStage"]["index"]
        if "activeStageIndex" in body and body["activeStageIndex"] != active:
            return _error(400, "bad_request", "activeStageIndex is not the active stage")
        if body["nextStageIndex"] != active + 1 or active + 1 >= len(release["stages"]):
            return _error(400, "bad_request", "nextStageIndex must be the next stage")
        self.move_stage(project, body["nextStageIndex"])
        self.approvals.append(body)
        return web.json_response({"rollingRelease": release})

    async def complete(self, request: web.Request) -> web.Response:
        """`complete` finishes an ACTIVE release of that canary: 100% of traffic to it."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        body = request[BODY]
        release = self.rolling.get(request.match_info["project"])
        if not isinstance(body, dict) or not isinstance(body.get("canaryDeploymentId"), str):
            return _error(400, "bad_request", "canaryDeploymentId is required")
        if release is None or release["state"] != "ACTIVE":
            return _error(400, "bad_request", "No active rolling release")
        if body["canaryDeploymentId"] != release["canaryDeployment"]["id"]:
            return _error(400, "bad_request", "canaryDeploymentId does not match")
        release["state"] = "COMPLETE"
        release["updatedAt"] = round(time.time() * 1000)
        self.production[request.match_info["project"]] = body["canaryDeploymentId"]
        self.completions.append(body)
        return web.json_response({"rollingRelease": release})

    async def _control_accepted(self, request: web.Request) -> web.Response:
        return web.json_response(self.accepted)

    async def _control_rolling(self, request: web.Request) -> web.Response:
        """As its own process (the kill -9 trials): `start_rolling_release`."""
        self.start_rolling_release(request.match_info["project"], request.match_info["canary"])
        return web.json_response({"ok": True})

    async def _control_rolling_state(self, request: web.Request) -> web.Response:
        """As its own process: the project's release as it stands (null if none)."""
        return web.json_response(self.rolling.get(request.match_info["project"]))


def listed_deployment(
    deployment: str,
    created: int,
    *,
    state: str = "READY",
    candidate: bool = True,
    sha: str | None = None,
) -> dict[str, Any]:
    """One deployment as `GET /v6/deployments` lists it; `sha`: a git deployment's
    commit (`meta.githubCommitSha`, as Vercel's GitHub integration sets it)."""
    return {
        "uid": deployment,
        "name": "web",
        "url": f"web-{deployment}.vercel.app",
        "created": created,
        "state": state,
        "readyState": state,
        "target": "production",
        "isRollbackCandidate": candidate,
        "meta": {"githubCommitSha": sha, "githubCommitRef": "main"} if sha else {},
    }


# --- Vercel's webhooks (what Vercel sends to Postflight) ------------------------------


def event(
    kind: str = "deployment.succeeded",
    *,
    event_id: str = "evt_1",
    project: str = PROJECT,
    deployment: str = NEW,
    target: str | None = "production",
    sha: str | None = "9fceb02d0ae598e95dc970b74767f19372d61af8",
) -> bytes:
    """A webhook body as Vercel sends it (`{type, id, createdAt, region, payload}`)."""
    meta = {"githubCommitSha": sha, "githubCommitRef": "main"} if sha else {}
    return json.dumps(
        {
            "type": kind,
            "id": event_id,
            "createdAt": 1764460800000,
            "region": "iad1",
            "payload": {
                "deployment": {
                    "id": deployment,
                    "url": f"web-{deployment}.vercel.app",
                    "name": "web",
                    "meta": meta,
                },
                "target": target,
                "project": {"id": project},
                "links": {"deployment": f"https://vercel.com/acme/web/{deployment}"},
            },
        }
    ).encode()


def signature(secret: str, body: bytes) -> str:
    """`x-vercel-signature`: hex HMAC-SHA1 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


if __name__ == "__main__":
    # as its own process it serves the kill -9 trials: slow rollbacks, mid-request kills
    serve_main(lambda args: FakeVercel(token=args.token, rollback_delay=0.3), sys.argv[1:])
