"""Rollback targets (contract §7): the one HTTP request each attempt sends, per target.

`RollbackDelivery` keeps the guarantees (intent stored first, attempts numbered before
they go out, retries, backoff, `Retry-After`, resume after a crash); this module only
says *what* an attempt sends: the signed webhook (§3), Vercel's instant rollback, or a
GitHub `workflow_dispatch`. It must not retry, sleep or write the store.

Exactly once across a crash: neither Vercel nor GitHub takes an idempotency key, so
when a delivery resumes after an attempt whose outcome was never recorded,
`already_done` asks: Vercel, which deployment serves production (already the one we
roll back to?); GitHub, whether a dispatched run's name carries the deploy id. If so
the rollback is recorded as delivered instead of being sent again. A look that cannot
tell (429, 5xx, a timeout) says so (`Look.done` None): the delivery asks again, and
never takes it for "not done".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp

from agent.integrations.clients import call
from agent.records import RollbackIntent
from common.answers import Read, read_answer
from common.retry_after import retry_after_seconds
from common.sleeps import unless_set

if TYPE_CHECKING:
    from agent.integrations.config import VercelIntegration
    from agent.settings import RollbackSettings, Settings

log = logging.getLogger("postflight.rollback")

GITHUB_HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
}


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    who: str
    """Named in errors: `the webhook`, `Vercel`, `GitHub`."""
    problem: str | None = None
    """A reason this rollback can never be sent (nothing goes out; state `failed`)."""


@dataclass(frozen=True, slots=True)
class Look:
    """What `RollbackTargets.already_done` found: `done` True or False, or None when the
    target could not tell (a 429, a 5xx, a timeout, an answer unread), with `why` and the
    wait the target asked for (`retry_after`). "Could not tell" is not "not done": read as
    that, a dispatch whose answer was lost was sent a second time."""

    done: bool | None
    why: str = ""
    retry_after: float | None = None


def _deploy(intent: RollbackIntent) -> dict[str, Any]:
    try:
        body = json.loads(intent.body)
    except ValueError:
        return {}
    deploy = body.get("deploy") if isinstance(body, dict) else None
    out: dict[str, Any] = dict(deploy) if isinstance(deploy, dict) else {}
    out["reason"] = body.get("reason", "") if isinstance(body, dict) else ""
    return out


GITHUB_RATE_LIMIT_WAIT_S = 60.0
"""GitHub's advice for a secondary rate limit that names no wait: at least a minute."""


def github_rate_limit_wait(
    status: int, headers: Mapping[str, str], text: str, now: float
) -> float | None:
    """Seconds to wait when GitHub's answer is a rate limit, else None.

    GitHub answers one with 403 as often as 429 (its REST docs): `Retry-After` seconds,
    else `x-ratelimit-remaining: 0` until `x-ratelimit-reset` (epoch seconds), else a
    message naming the rate limit (at least a minute). A 403 with none of these is a
    permission the token lacks, and will not change."""
    if status not in (403, 429):
        return None
    retry_after = retry_after_seconds(headers.get("Retry-After"), now)
    if retry_after is not None:
        return retry_after
    if headers.get("x-ratelimit-remaining", "").strip() == "0":
        try:
            return max(0.0, float(headers.get("x-ratelimit-reset", "")) - now)
        except ValueError:
            return GITHUB_RATE_LIMIT_WAIT_S
    if "rate limit" in text.lower():
        return GITHUB_RATE_LIMIT_WAIT_S
    return None


def vercel_rate_limit_wait(
    status: int, headers: Mapping[str, str], text: str, now: float
) -> float | None:
    """Seconds to wait when Vercel's answer is a rate limit, else None.

    Vercel answers one with 429 and `X-RateLimit-Reset` (epoch seconds of the window's
    end; its REST docs; `Retry-After` is not promised): a `Retry-After` wins, else the
    reset is waited for, where our own backoff (1 s, 2 s, …) spent every attempt inside
    a rate-limit window and reported the rollback failed. A reset below 10^9 is read as
    seconds from now."""
    if status != 429:
        return None
    retry_after = retry_after_seconds(headers.get("Retry-After"), now)
    if retry_after is not None:
        return retry_after
    try:
        reset = float(headers.get("X-RateLimit-Reset", ""))
    except ValueError:
        return None
    if reset != reset or reset < 0:  # NaN, or nonsense: our own backoff
        return None
    return max(0.0, reset - now) if reset >= 1e9 else reset


def vercel_url(api_url: str, path: str, team_id: str | None, **query: str) -> str:
    params = dict(query)
    if team_id:
        params["teamId"] = team_id
    url = api_url.rstrip("/") + path
    return url + ("?" + urlencode(params) if params else "")


FALLBACK = (
    "; asked as a fallback (GET /v6/deployments, outside the API the reference documents)"
    " since neither the deploy event (meta.previousDeploymentId) nor an earlier window of"
    " the environment named it: name it with the label vercel.previous"
)
"""Why a look-up failure came from the list at all, and the way round it: an on-call
reading "HTTP 403" from an endpoint they never configured learns where it came from."""
PRODUCTION_LISTED = 20
"""How many of the project's newest production deployments a look-up reads: the deploy's
own is among them unless that many were made since, and the one before it too."""


def previous_in_list(deployments: Any, own: str) -> str | None:
    """The production deployment before `own` in Vercel's list (newest first): the first
    older one that is READY and that Vercel would roll back to (`isRollbackCandidate`,
    when the list says). None when `own` is not listed (nothing says what came before)."""
    if not isinstance(deployments, list):
        return None
    listed = [d for d in deployments if isinstance(d, dict)]
    ids = [d.get("uid") or d.get("id") for d in listed]
    if own not in ids:
        return None
    for entry in listed[ids.index(own) + 1 :]:
        uid = entry.get("uid") or entry.get("id")
        state = entry.get("readyState") or entry.get("state")
        if (
            isinstance(uid, str)
            and uid
            and uid != own
            and state == "READY"
            and entry.get("isRollbackCandidate") is not False
        ):
            return uid
    return None


def of_commit(deployments: Any, commit: str) -> str | None:
    """The newest deployment in Vercel's list (newest first) of git commit `commit` (its
    `meta.githubCommitSha`; a commit given shorter, as a pipeline may register it, is its
    prefix): which one is a deploy's that no Vercel event named, as GitHub's
    `deployment_status` from Vercel's GitHub integration does not."""
    commit = commit.lower()
    if len(commit) < 7 or not all(c in "0123456789abcdef" for c in commit):
        return None
    for entry in deployments if isinstance(deployments, list) else ():
        meta = entry.get("meta") if isinstance(entry, dict) else None
        sha = meta.get("githubCommitSha") if isinstance(meta, dict) else None
        uid = entry.get("uid") or entry.get("id") if isinstance(entry, dict) else None
        if isinstance(sha, str) and sha.lower().startswith(commit) and isinstance(uid, str):
            return uid
    return None


class LookUpDeferred(Exception):
    """Vercel's list of production deployments could not be read now: every attempt of
    `look_up_previous` met an answer worth asking again (a rate limit whose reset is past
    the look-up's own short wait, a 5xx, a timeout). Not "nothing to roll back to": the
    rollback asks again after `retry_after` (the wait Vercel asked for), or its own
    backoff, where it failed at once and a bad deploy stayed live for a 429."""

    def __init__(self, why: str, retry_after: float | None) -> None:
        super().__init__(why)
        self.why = why
        self.retry_after = retry_after


LEFT = "not asked: the agent is stopping"
"""Why `look_up_previous` found nothing when a stop came first."""
LOOK_UP_ATTEMPTS = 2
LOOK_UP_MAX_BACKOFF_S = 2.0


def look_up_worst_case_s(timeout_s: float) -> float:
    """The longest one `look_up_previous` can take: both attempts timing out and the
    wait between them at its most (a claim held through it is held this long)."""
    return LOOK_UP_ATTEMPTS * timeout_s + (LOOK_UP_ATTEMPTS - 1) * LOOK_UP_MAX_BACKOFF_S


async def look_up_previous(
    session: aiohttp.ClientSession,
    vercel: VercelIntegration,
    project: str,
    deployment: str | None,
    redact: Any = lambda s: s,
    commit: str | None = None,
    leaving: asyncio.Event | None = None,
) -> tuple[str | None, str]:
    """The production deployment `deployment` replaced, asked of Vercel (`GET
    /v6/deployments?projectId=&target=production&state=READY`), where no event named it
    and no earlier window of ours knew it (a fresh agent): (its id, "") or (None, why).
    No `deployment` (a window GitHub's event opened): the one of `commit` that Vercel
    lists (`of_commit`). `leaving` (set by a stop): no attempt goes out once it is set,
    and a wait between the two or an attempt out ends at once, (None, `LEFT`), as the
    other reads of Vercel and GitHub leave (`call`); before, a stop waited for the answer
    and out its backoff (up to 2 s), and sent the second attempt. Every attempt met an
    answer worth asking again (a 429, a 5xx, a timeout): `LookUpDeferred`."""
    assert vercel.token is not None
    url = vercel_url(
        vercel.api_url,
        "/v6/deployments",
        vercel.team_id,
        projectId=project,
        target="production",
        state="READY",
        limit=str(PRODUCTION_LISTED),
    )
    result = await call(
        session,
        "GET",
        url,
        headers={"Authorization": f"Bearer {vercel.token.get_secret_value()}"},
        timeout_s=vercel.timeout,
        attempts=LOOK_UP_ATTEMPTS,  # within the rollback's lease: two timeouts, a short wait
        max_backoff=LOOK_UP_MAX_BACKOFF_S,
        redact=redact,
        rate_limit=vercel_rate_limit_wait,
        leaving=leaving,
    )
    if result.left:
        return None, LEFT
    if result.gave_up:
        why = f"Vercel's list of production deployments: {result.error}"
        raise LookUpDeferred(why, result.retry_after)
    if not result.ok:
        return None, f"Vercel's list of production deployments: {result.error}{FALLBACK}"
    listed = result.data.get("deployments") if isinstance(result.data, dict) else None
    if deployment is None:
        deployment = of_commit(listed, commit or "")
        if deployment is None:
            return None, (
                f"this deploy has no label vercel.deployment, and Vercel lists no production"
                f" deployment of its commit {(commit or '(none)')[:12]} among the project's"
                f" {PRODUCTION_LISTED} newest{FALLBACK}"
            )
    previous = previous_in_list(listed, deployment)
    if previous is None:
        return None, (
            f"Vercel lists no READY production deployment before {deployment} among the"
            f" project's {PRODUCTION_LISTED} newest{FALLBACK}"
        )
    return previous, ""


def labelled_previous(intent: RollbackIntent) -> str | None:
    labels = _deploy(intent).get("labels") or {}
    previous = labels.get("vercel.previous") if isinstance(labels, dict) else None
    return previous if isinstance(previous, str) and previous else None


def _own_deployment(intent: RollbackIntent) -> tuple[str | None, str | None]:
    """The deploy's own Vercel deployment (`vercel.deployment`) and commit, as its
    rollback's body names them: the look-up asks by the commit when no Vercel event named
    the deployment."""
    deploy = _deploy(intent)
    labels = deploy.get("labels") or {}
    own = labels.get("vercel.deployment") if isinstance(labels, dict) else None
    commit = deploy.get("commit")
    return (
        own if isinstance(own, str) and own else None,
        commit if isinstance(commit, str) and commit else None,
    )


def _unlabelled(deploy: dict[str, Any]) -> str:
    """Why Vercel was not asked: a deploy registered by a pipeline (`POST /v1/deploys`)
    has no `vercel.deployment` label, which a Vercel event sets, and Vercel's list can
    say what came before a deployment only once it knows which one is this deploy's.
    Empty when it has one (the look-up said why it found none)."""
    labels = deploy.get("labels") or {}
    if isinstance(labels, dict) and labels.get("vercel.deployment"):
        return ""
    return (
        "this deploy has no label vercel.deployment, which a Vercel event sets and a"
        " registration (POST /v1/deploys) must send, so Vercel could not be asked which"
        " production deployment came before it: register it with the label"
        " vercel.deployment=<its Vercel deployment id> (`postflight register --label"
        " vercel.deployment=dpl_...`), or vercel.previous=<the deployment to go back to>"
    )


class LeftAsking(Exception):
    """A stop met `RollbackTargets.look_up` or `already_done` before or while it asked
    Vercel or GitHub: nothing known, nothing kept, nothing of it out."""


class RollbackTargets:
    """Builds each attempt's request from the whole configuration (integrations,
    the environment's sources) and the stored intent."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._looked_up: dict[str, tuple[str | None, str]] = {}
        """window id → the previous production deployment Vercel named (or why none),
        for a deploy whose labels name none: asked once per delivery in this process."""

    async def look_up(
        self,
        session: aiohttp.ClientSession,
        intent: RollbackIntent,
        rollback: RollbackSettings,
        environment: str,
        redact: Any = lambda s: s,
        leaving: asyncio.Event | None = None,
    ) -> str | None:
        """Before a Vercel rollback's first look or attempt: a deploy without
        `vercel.previous` (a fresh agent's first window, an event that named none) asks
        Vercel which production deployment came before its own, where it failed with
        "nothing to roll back to" though Vercel knew. The one found, when asked now. A
        stop (`leaving`) leaves it at once with nothing kept, so it is asked again:
        `LeftAsking`, and the caller hands the rollback back unsent (`RollbackDelivery`),
        where the stop waited for Vercel's answer and sent the rollback inside its grace.
        Vercel could not answer now (a rate limit, a 5xx): `LookUpDeferred`, nothing kept,
        asked again by the caller after the wait."""
        if not self.asks(intent, rollback, environment):
            return None
        vercel = self._settings.integrations.vercel
        env = self._settings.environments[environment]
        assert vercel is not None and env.sources.vercel is not None
        source = env.sources.vercel
        own, commit = _own_deployment(intent)
        found = await look_up_previous(
            session, vercel, source.project, own, redact, commit=commit, leaving=leaving
        )
        if found == (None, LEFT):
            raise LeftAsking(intent.window_id)
        if len(self._looked_up) >= 1024:  # a long-running agent's rollbacks: kept bounded
            self._looked_up.clear()
        self._looked_up[intent.window_id] = found
        if found[0] is not None:
            log.info(
                "rollback for %s: no vercel.previous label; Vercel lists %s as the"
                " production deployment before %s",
                intent.window_id,
                found[0],
                own or f"commit {commit}'s",
                extra={"deploy_id": intent.window_id, "environment": environment},
            )
        return found[0]

    def asks(self, intent: RollbackIntent, rollback: RollbackSettings, environment: str) -> bool:
        """Whether `look_up` would ask Vercel (a Vercel rollback of a deploy naming no
        previous deployment, none found yet): the caller counts the ask before it."""
        vercel = self._settings.integrations.vercel
        env = self._settings.environments.get(environment)
        own, commit = _own_deployment(intent)
        return (
            rollback.target == "vercel"
            and vercel is not None
            and vercel.token is not None
            and env is not None
            and env.sources.vercel is not None
            and (own is not None or commit is not None)
            and labelled_previous(intent) is None
            and (self._looked_up.get(intent.window_id) or (None,))[0] is None
        )

    def remember(self, window_id: str, previous: str) -> None:
        """`previous` is what the window's rollback goes back to, as its stored labels say
        (an earlier process's look-up): `look_up` asks Vercel no more."""
        self._looked_up[window_id] = (previous, "")

    def _previous(self, intent: RollbackIntent) -> str | None:
        return labelled_previous(intent) or (self._looked_up.get(intent.window_id) or (None,))[0]

    def prepare(
        self,
        intent: RollbackIntent,
        rollback: RollbackSettings,
        environment: str,
        webhook_headers: dict[str, str],
    ) -> PreparedRequest:
        body = intent.body.encode()
        if rollback.target == "vercel":
            return self._vercel(intent, environment)
        if rollback.target == "github":
            return self._github(intent, rollback, environment)
        assert rollback.url is not None
        return PreparedRequest(rollback.url, webhook_headers, body, "the webhook")

    def _vercel(self, intent: RollbackIntent, environment: str) -> PreparedRequest:
        vercel = self._settings.integrations.vercel
        env = self._settings.environments.get(environment)
        source = env.sources.vercel if env is not None else None
        deploy = _deploy(intent)
        previous = self._previous(intent)
        if vercel is None or vercel.token is None or source is None:
            return PreparedRequest("", {}, b"", "Vercel", "integrations.vercel is not configured")
        # no body, so no content type: an empty body declared JSON is malformed JSON
        headers = {"Authorization": f"Bearer {vercel.token.get_secret_value()}"}
        if not previous:
            why = (self._looked_up.get(intent.window_id) or (None, ""))[1] or _unlabelled(deploy)
            return PreparedRequest(
                "",
                headers,
                b"",
                "Vercel",
                "no previous production deployment is known for this deploy (label"
                " vercel.previous): nothing to roll back to" + (f" ({why})" if why else ""),
            )
        path = f"/v1/projects/{quote(source.project, safe='')}/rollback/{quote(previous, safe='')}"
        description = f"postflight {deploy.get('id', '')}: {deploy.get('reason', '')}"[:200]
        url = vercel_url(vercel.api_url, path, vercel.team_id, description=description)
        return PreparedRequest(url, headers, b"", "Vercel")

    def _github(
        self, intent: RollbackIntent, rollback: RollbackSettings, environment: str
    ) -> PreparedRequest:
        github = self._settings.integrations.github
        env = self._settings.environments.get(environment)
        source = env.sources.github if env is not None else None
        if github is None or github.token is None or source is None or rollback.github is None:
            return PreparedRequest("", {}, b"", "GitHub", "integrations.github is not configured")
        deploy = _deploy(intent)
        inputs = {
            "deploy_id": str(deploy.get("id") or intent.window_id),
            "environment": str(deploy.get("environment") or environment),
            "version": str(deploy.get("version") or ""),
            "previous_version": str(deploy.get("previous_version") or ""),
            "reason": str(deploy.get("reason") or "")[:1000],
        }
        body = json.dumps({"ref": rollback.github.ref, "inputs": inputs}).encode()
        workflow = quote(rollback.github.workflow, safe="")
        url = (
            f"{github.api_url.rstrip('/')}/repos/{source.repository}"
            f"/actions/workflows/{workflow}/dispatches"
        )
        headers = {
            **GITHUB_HEADERS,
            "Authorization": f"Bearer {github.token.get_secret_value()}",
            "Content-Type": "application/json",
        }
        return PreparedRequest(url, headers, body, "GitHub")

    async def already_done(
        self,
        session: aiohttp.ClientSession,
        intent: RollbackIntent,
        rollback: RollbackSettings,
        environment: str,
        leaving: asyncio.Event | None = None,
    ) -> Look:
        """After an attempt whose answer was lost: did the rollback already take effect?
        Vercel: production already serves the deployment we roll back to. GitHub: a
        dispatched run of the workflow names the deploy id (the workflow sets `run-name`
        with `inputs.deploy_id`). A look that cannot tell: `done` None (never False). A
        stop (`leaving`) before or while it looks: `LeftAsking`, nothing found."""
        if rollback.target == "github":
            return await self._github_already_done(session, intent, rollback, environment, leaving)
        if rollback.target != "vercel":
            return Look(False)
        vercel = self._settings.integrations.vercel
        env = self._settings.environments.get(environment)
        source = env.sources.vercel if env is not None else None
        previous = self._previous(intent)
        if vercel is None or vercel.token is None or source is None or not previous:
            return Look(False)  # nothing can be sent either (`prepare` says why)
        url = vercel_url(
            vercel.api_url, f"/v9/projects/{quote(source.project, safe='')}", vercel.team_id
        )
        headers = {"Authorization": f"Bearer {vercel.token.get_secret_value()}"}
        project, look = await _looked_at(
            session,
            url,
            headers,
            rollback.timeout,
            "Vercel whether the rollback took effect",
            leaving,
        )
        if look is not None:
            return look
        targets = project.get("targets") if isinstance(project, dict) else None
        production = targets.get("production") if isinstance(targets, dict) else None
        current = production.get("id") if isinstance(production, dict) else None
        return Look(bool(current) and current == previous)

    def where_to_look(self, rollback: RollbackSettings, environment: str) -> str:
        """Where on-call sees by hand whether the rollback went out: the workflow's runs
        on GitHub, the project's deployments on Vercel (its dashboard, team chosen there)."""
        env = self._settings.environments.get(environment)
        github = self._settings.integrations.github
        if rollback.target == "github" and github is not None and env is not None:
            repository = env.sources.github.repository if env.sources.github else None
            workflow = quote(rollback.github.workflow if rollback.github else "", safe="")
            if repository:
                return f"{github_web_url(github.api_url)}/{repository}/actions/workflows/{workflow}"
        if rollback.target == "vercel" and env is not None and env.sources.vercel is not None:
            to = quote(f"/[team]/{env.sources.vercel.project}/deployments", safe="")
            return f"https://vercel.com/d?to={to}"
        return ""

    async def _github_already_done(
        self,
        session: aiohttp.ClientSession,
        intent: RollbackIntent,
        rollback: RollbackSettings,
        environment: str,
        leaving: asyncio.Event | None = None,
    ) -> Look:
        github = self._settings.integrations.github
        env = self._settings.environments.get(environment)
        source = env.sources.github if env is not None else None
        if github is None or github.token is None or source is None or rollback.github is None:
            return Look(False)  # nothing can be sent either (`prepare` says why)
        workflow = quote(rollback.github.workflow, safe="")
        url = (
            f"{github.api_url.rstrip('/')}/repos/{source.repository}/actions/workflows/"
            f"{workflow}/runs?event=workflow_dispatch&per_page=100"
        )
        headers = {**GITHUB_HEADERS, "Authorization": f"Bearer {github.token.get_secret_value()}"}
        data, look = await _looked_at(
            session, url, headers, rollback.timeout, "GitHub whether the rollback ran", leaving
        )
        if look is not None:
            return look
        runs = data.get("workflow_runs") if isinstance(data, dict) else None
        if not isinstance(runs, list):
            return Look(None, "HTTP 200 without a list of workflow_runs")
        return Look(
            any(
                isinstance(run, dict) and intent.window_id in str(run.get("display_title", ""))
                for run in runs
            )
        )


def github_web_url(api_url: str) -> str:
    """GitHub's web address for its REST API's: api.github.com → github.com, a GitHub
    Enterprise Server's `https://host/api/v3` → `https://host`."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base.removesuffix("/api/v3")
    return base.replace("://api.github.com", "://github.com")


LOOKS = 2
"""How many times `already_done` asks when an answer's 200 is cut short."""


async def _looked_at(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    timeout_s: float,
    what: str,
    leaving: asyncio.Event | None = None,
) -> tuple[Any, Look | None]:
    """The JSON of a 200 to `GET url`, or a `Look` that could not tell, saying why (and
    the wait asked for: `Retry-After`, GitHub's and Vercel's rate-limit headers). A body
    cut short (the connection dropped mid-body) is asked again at once, `LOOKS` times in
    all: a read, and read as "not taken" it sent the rollback a second time. A stop
    (`leaving`) before or while it asks lets it go at once: `LeftAsking`, where the stop
    waited for the answer (up to the rollback's timeout)."""
    why, retry_after = "", None
    for _ in range(LOOKS):
        left, got = False, None
        try:
            if leaving is None:
                got = await _got(session, url, headers, timeout_s)
            else:
                left, got = await unless_set(leaving, _got(session, url, headers, timeout_s))
        except Exception as exc:  # a timeout, a connection refused or cut
            why = f"{type(exc).__name__}: {exc}"[:200] if str(exc) else type(exc).__name__
            break
        if left or got is None:
            raise LeftAsking(what)
        response, text, read = got
        if read is None:
            why = f"HTTP {response.status}"
            retry_after = _asked_wait(response, text)
            break
        if read.cut_short:
            why = f"HTTP 200 {read.unread}"
            continue
        if read.unread:
            why = f"HTTP 200 {read.unread}"
            break
        try:
            return json.loads(read.body), None
        except ValueError:
            why = "HTTP 200, its body not JSON"
            break
    log.warning("could not ask %s (%s)", what, why)
    return None, Look(None, why, retry_after)


async def _got(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], timeout_s: float
) -> tuple[aiohttp.ClientResponse, str, Read | None]:
    """`GET url`: a 200's body read (`Read`), or another status with the text of a 403's
    or 429's body (which may name a rate limit) and None."""
    async with session.get(
        url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as response:
        if response.status == 200:
            return response, "", await read_answer(response, 1024 * 1024)
        text = ""
        if response.status in (403, 429):
            text = (await read_answer(response, 64 * 1024)).body.decode(errors="replace")
        return response, text, None


def _asked_wait(response: aiohttp.ClientResponse, text: str) -> float | None:
    """The wait an answer asks for: GitHub's or Vercel's rate limit, else `Retry-After`."""
    now = time.time()
    for wait in (
        github_rate_limit_wait(response.status, response.headers, text, now),
        vercel_rate_limit_wait(response.status, response.headers, text, now),
    ):
        if wait is not None:
            return wait
    return retry_after_seconds(response.headers.get("Retry-After"), now)
