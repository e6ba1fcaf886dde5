"""A strict fake of the GitHub REST API parts Postflight calls, and of GitHub's webhooks.

Checks what GitHub checks: `Authorization: Bearer <token>` (401 `Bad credentials`),
`X-GitHub-Api-Version` (400 when present and unknown), the path, the known repository
and deployment (404 `Not Found`), and the body fields (422 with GitHub's
`Validation Failed` shape). Records deployment statuses, workflow dispatches and
protection-rule answers: the truth a test counts. Misbehaves on demand (see `_server`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import sys
import time
from typing import Any

from aiohttp import web

from tests.fakes._server import BODY, Failure, FakeServer, serve_main

REPOSITORY = "acme/web"
DEPLOYMENT_ID = 42
COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"
"""A commit of REPOSITORY: `GET /repos/{owner}/{repo}/commits/{ref}` resolves a prefix of it."""
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
STATUS_STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}


def _message(status: int, message: str, **extra: Any) -> web.Response:
    body = {"message": message, "documentation_url": "https://docs.github.com/rest", **extra}
    return web.json_response(body, status=status)


def _invalid(field: str) -> web.Response:
    return _message(
        422, "Validation Failed", errors=[{"resource": "Body", "field": field, "code": "invalid"}]
    )


class FakeGitHub(FakeServer):
    def __init__(self, token: str = "test-token") -> None:
        super().__init__()
        self.token = token
        self.repositories = {REPOSITORY}
        self.deployments = {DEPLOYMENT_ID}
        self.statuses: list[dict[str, Any]] = []
        self.dispatches: list[dict[str, Any]] = []
        self.gate_answers: list[dict[str, Any]] = []
        self.waiting: dict[tuple[str, str], int] = {}
        """(run, environment) → its deployment requests waiting for an answer, for the
        runs a test asked through `ask_gate`: GitHub refuses an answer where none waits
        (422; its wording unconfirmed). A run never asked so takes any answer."""
        self.runs: list[dict[str, Any]] = []
        self.gated_runs: dict[str, dict[str, Any]] = {}
        """run id → the run `GET /repos/{owner}/{repo}/actions/runs/{run_id}` answers (its
        `status`, `conclusion`), for the runs a test asked through `ask_gate`: `waiting`
        until `cancel_run`. Any other run is 404."""
        self.commit_statuses: list[dict[str, Any]] = []
        self.commits = {COMMIT}
        """Full SHAs the commits endpoint knows (a commit status takes any full SHA)."""
        self.run_name = "rollback {deploy_id}"
        """The dispatched workflow's `run-name`, filled from its inputs."""
        self.declared_inputs: dict[str, bool] | None = None
        """The dispatched workflow's `workflow_dispatch` inputs (name → required), when
        given: GitHub refuses a dispatch with an undeclared input or without a required
        one (422). None: any inputs."""

    def failure_response(self, failure: Failure, request: web.Request) -> web.StreamResponse:
        """GitHub's rate limits answer 403 (or 429), as its REST docs say: `rate_limit`
        (primary: `x-ratelimit-remaining: 0`, `x-ratelimit-reset` in epoch seconds) and
        `secondary_rate_limit` (`Retry-After` in seconds), each `reset_in` from now, and
        `secondary_rate_limit_unnamed_wait` (its message alone: at least a minute);
        `forbidden` is a 403 that is not one (the token lacks a permission)."""
        if failure.kind == "rate_limit":
            response = _message(403, "API rate limit exceeded for installation ID 1.")
            response.headers["x-ratelimit-remaining"] = "0"
            response.headers["x-ratelimit-reset"] = str(math.ceil(time.time() + failure.reset_in))
            return response
        if failure.kind == "secondary_rate_limit":
            response = _message(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes"
                " before you try again.",
            )
            response.headers["Retry-After"] = str(math.ceil(failure.reset_in))
            response.headers["x-ratelimit-remaining"] = "4000"
            return response
        if failure.kind == "secondary_rate_limit_unnamed_wait":
            # GitHub's docs: without `retry-after` (nor `x-ratelimit-remaining: 0`), wait
            # at least a minute
            response = _message(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes"
                " before you try again.",
            )
            response.headers["x-ratelimit-remaining"] = "4000"
            return response
        if failure.kind == "forbidden":
            return _message(403, "Resource not accessible by integration")
        return super().failure_response(failure, request)

    def error_answer(self, status: int, message: str) -> web.Response:
        """GitHub's error body, `{"message", "documentation_url"}`, for any error status
        (`fail("404")`, `fail("unavailable")`), where the base fake's `{"detail"}` let a
        reading of a key GitHub never sends pass."""
        return _message(status, message)

    def unrouted(self, request: web.Request, refused: web.HTTPException) -> web.StreamResponse:
        """GitHub answers a path it does not know, and a method a path does not take, 404
        `Not Found` in its JSON shape (its docs: a 404, not a 405), not aiohttp's text."""
        return _message(404, "Not Found")

    def routes(self, app: web.Application) -> None:
        app.router.add_post(
            "/repos/{owner}/{repo}/deployments/{deployment}/statuses", self.create_status
        )
        app.router.add_get(
            "/repos/{owner}/{repo}/deployments/{deployment}/statuses", self.list_statuses
        )
        app.router.add_post(
            "/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches", self.dispatch
        )
        app.router.add_post(
            "/repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule", self.gate
        )
        app.router.add_get("/repos/{owner}/{repo}/actions/workflows/{workflow}/runs", self.runs_of)
        app.router.add_get("/repos/{owner}/{repo}/actions/runs/{run}", self.run)
        app.router.add_post("/repos/{owner}/{repo}/statuses/{sha}", self.commit_status)
        app.router.add_get("/repos/{owner}/{repo}/commits/{ref}", self.commit)
        app.router.add_get(
            "/repos/{owner}/{repo}/commits/{ref}/statuses", self.list_commit_statuses
        )
        app.router.add_get("/_fake/gate_answers", self._control_gate_answers)

    def ask_gate(
        self,
        *,
        sha: str,
        run_id: int,
        environment: str = "Production",
        deployment_id: int | None = None,
        created_at: float | None = None,
    ) -> bytes:
        """A protection rule's request GitHub makes of a job into `environment` (its
        webhook body, `protection_rule`): one more answer for the run is then taken."""
        waiting = (str(run_id), environment)
        self.waiting[waiting] = self.waiting.get(waiting, 0) + 1
        self.gated_runs.setdefault(
            str(run_id), {"id": run_id, "status": "waiting", "conclusion": None, "head_sha": sha}
        )
        return protection_rule(
            self.url,
            sha=sha,
            environment=environment,
            run_id=run_id,
            deployment_id=deployment_id,
            created_at=created_at,
        )

    def cancel_run(self, run_id: int) -> None:
        """The run is cancelled (by hand, or by a newer run's concurrency group): its
        deployment requests wait no more, and an answer to them is refused (422)."""
        for asked in self.waiting:
            if asked[0] == str(run_id):
                self.waiting[asked] = 0
        self.gated_runs[str(run_id)].update(status="completed", conclusion="cancelled")

    async def _control_gate_answers(self, request: web.Request) -> web.Response:
        """As its own process (the kill -9 trials): every gate answer taken, repeats included."""
        return web.json_response(self.gate_answers)

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _message(401, "Bad credentials")
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version != "2022-11-28":
            return _message(400, f"Unsupported API version {version}")
        repository = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if repository not in self.repositories:
            return _message(404, "Not Found")
        return None

    async def create_status(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        deployment = request.match_info["deployment"]
        if not deployment.isdigit() or int(deployment) not in self.deployments:
            return _message(404, "Not Found")
        body = request[BODY]
        if not isinstance(body, dict) or body.get("state") not in STATUS_STATES:
            return _invalid("state")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 140):
            return _invalid("description")
        for key in ("log_url", "environment_url", "target_url"):
            if key in body and not isinstance(body[key], str):
                return _invalid(key)
        status = {"id": len(self.statuses) + 1, "deployment": int(deployment), **body}
        self.statuses.append(status)
        return web.json_response(status, status=201)

    async def list_statuses(self, request: web.Request) -> web.Response:
        """A deployment's statuses, newest first (GitHub's `List deployment statuses`)."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        deployment = request.match_info["deployment"]
        if not deployment.isdigit() or int(deployment) not in self.deployments:
            return _message(404, "Not Found")
        ours = [s for s in self.statuses if s["deployment"] == int(deployment)]
        return web.json_response(ours[::-1])

    async def commit_status(self, request: web.Request) -> web.Response:
        """A commit status goes on a full SHA: GitHub refuses a short one (422, `sha must
        be a 40 character SHA1`, renovatebot/renovate#7180) or takes it and shows nothing
        (engram-app/Engram#21); either way the commit gets no status."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        if not FULL_SHA.match(request.match_info["sha"]):
            return _message(422, "sha must be a 40 character SHA1")
        body = request[BODY]
        if not isinstance(body, dict) or body.get("state") not in (
            "error",
            "failure",
            "pending",
            "success",
        ):
            return _invalid("state")
        if not isinstance(body.get("context", "default"), str):
            return _invalid("context")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 140):
            return _invalid("description")
        status = {"id": len(self.commit_statuses) + 1, "sha": request.match_info["sha"], **body}
        self.commit_statuses.append(status)
        return web.json_response(status, status=201)

    async def list_commit_statuses(self, request: web.Request) -> web.Response:
        """A commit's statuses, newest first (GitHub's `List commit statuses for a
        reference`); `ref` a full SHA here (GitHub also takes a branch or a tag)."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        sha = request.match_info["ref"].lower()
        return web.json_response([s for s in self.commit_statuses if s["sha"] == sha][::-1])

    async def commit(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/commits/{ref}`: the commit a SHA or its prefix names."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        ref = request.match_info["ref"].lower()
        found = [sha for sha in self.commits if sha.startswith(ref)] if len(ref) >= 4 else []
        if len(found) != 1:
            return _message(422, f"No commit found for SHA: {request.match_info['ref']}")
        return web.json_response({"sha": found[0], "commit": {"message": "a commit"}})

    async def dispatch(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        body = request[BODY]
        if not isinstance(body, dict) or not isinstance(body.get("ref"), str):
            return _invalid("ref")
        inputs = body.get("inputs", {})
        if not isinstance(inputs, dict) or len(inputs) > 25:
            return _invalid("inputs")
        if not all(isinstance(v, str) for v in inputs.values()):
            return _invalid("inputs")
        if self.declared_inputs is not None:
            unexpected = sorted(set(inputs) - set(self.declared_inputs))
            if unexpected:
                return _message(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
            for name, required in self.declared_inputs.items():
                if required and not inputs.get(name):
                    return _message(422, f"Required input '{name}' not provided")
        self.dispatches.append({"workflow": request.match_info["workflow"], **body})
        try:
            title = self.run_name.format(**inputs)
        except (KeyError, IndexError):
            title = request.match_info["workflow"]
        self.runs.insert(
            0,
            {
                "id": 9000 + len(self.runs),
                "name": request.match_info["workflow"],
                "display_title": title,
                "event": "workflow_dispatch",
                "status": "queued",
                "workflow": request.match_info["workflow"],
            },
        )
        return web.Response(status=204)

    async def runs_of(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        event = request.query.get("event")
        runs = [
            {k: v for k, v in r.items() if k != "workflow"}
            for r in self.runs
            if r["workflow"] == request.match_info["workflow"] and event in (None, r["event"])
        ]
        return web.json_response({"total_count": len(runs), "workflow_runs": runs})

    async def run(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/actions/runs/{run_id}` ("Get a workflow run")."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        run = self.gated_runs.get(request.match_info["run"])
        if run is None:
            return _message(404, "Not Found")
        return web.json_response(run)

    async def gate(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        body = request[BODY]
        if not isinstance(body, dict) or body.get("state") not in ("approved", "rejected"):
            return _invalid("state")
        if not isinstance(body.get("environment_name"), str):
            return _invalid("environment_name")
        asked = (request.match_info["run"], body["environment_name"])
        if asked in self.waiting:
            if self.waiting[asked] == 0:
                return _message(422, "No pending deployment requests to approve or reject")
            self.waiting[asked] -= 1
        self.gate_answers.append({"run": request.match_info["run"], **body})
        return web.Response(status=204)


# --- GitHub's webhooks (what GitHub sends to Postflight) ------------------------------


def deployment_status(
    state: str = "success",
    *,
    sha: str = "9fceb02d0ae598e95dc970b74767f19372d61af8",
    environment: str = "Production",
    repository: str = REPOSITORY,
    deployment_id: int = DEPLOYMENT_ID,
    status_id: int | None = None,
) -> bytes:
    """A `deployment_status` delivery's body. Its status `id` is GitHub's for each status
    created, so one per (deployment, state, sha, environment, repository) unless given:
    the same call is the same event (its redelivery), another call another status."""
    if status_id is None:
        named = f"{repository}|{deployment_id}|{environment}|{sha}|{state}".encode()
        status_id = int(hashlib.sha256(named).hexdigest()[:10], 16)
    return json.dumps(
        {
            "action": "created",
            "deployment_status": {
                "id": status_id,
                "state": state,
                "environment": environment,
                "environment_url": "https://web-new.vercel.app",
                "target_url": "https://vercel.com/acme/web/dpl_new222",
            },
            "deployment": {
                "id": deployment_id,
                "sha": sha,
                "ref": "main",
                "environment": environment,
                "task": "deploy",
            },
            "repository": {"full_name": repository, "id": 1},
            "sender": {"login": "vercel[bot]"},
        }
    ).encode()


def protection_rule(
    api_url: str,
    *,
    sha: str = "9fceb02d0ae598e95dc970b74767f19372d61af8",
    environment: str = "Production",
    run_id: int = 1234,
    repository: str = REPOSITORY,
    deployment_id: int | None = None,
    deployment: bool = True,
    created_at: float | None = None,
) -> bytes:
    """A `deployment_protection_rule` delivery's body. GitHub names the deployment the
    job waits with (one per job into the environment: the run's next job, a re-run, is
    another); `deployment_id` is one per (run, environment, sha) unless given; its
    `created_at` (ISO 8601, as GitHub writes it) when given."""
    document: dict[str, Any] = {
        "action": "requested",
        "environment": environment,
        "event": "push",
        "sha": sha,
        "ref": "refs/heads/main",
        "deployment_callback_url": f"{api_url}/repos/{repository}/actions/runs/{run_id}"
        "/deployment_protection_rule",
        "repository": {"full_name": repository, "id": 1},
    }
    if deployment:
        if deployment_id is None:
            named = f"{repository}|{run_id}|{environment}|{sha}".encode()
            deployment_id = int(hashlib.sha256(named).hexdigest()[:10], 16)
        document["deployment"] = {
            "id": deployment_id,
            "sha": sha,
            "ref": "main",
            "environment": environment,
            "task": "deploy",
        }
        if created_at is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created_at))
            document["deployment"]["created_at"] = stamp
    return json.dumps(document).encode()


def signature(secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


if __name__ == "__main__":
    serve_main(lambda args: FakeGitHub(token=args.token), sys.argv[1:])
