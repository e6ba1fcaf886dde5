"""Inbound deploy events of contract §7: signature checks and what an event asks for.

Pure: bytes and headers in, a decision out (open a window, answer a gate, ignore, or
refuse). Must not do I/O, read the clock or touch the store; `agent.api.hooks` acts
on the decision. Signatures are checked over the raw body, in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeGuard

from agent.records import DEPLOY_ID_PATTERN
from common.json_text import JsonTextError, parse_json_text

if TYPE_CHECKING:
    from agent.integrations.config import SourcesSettings
    from agent.settings import Settings

GITHUB_SIGNATURE = "X-Hub-Signature-256"
GITHUB_EVENT = "X-GitHub-Event"
GITHUB_DELIVERY = "X-GitHub-Delivery"
VERCEL_SIGNATURE = "x-vercel-signature"
OPENING_VERCEL_TYPES = frozenset({"deployment.succeeded", "deployment.promoted"})
_OWN_STATUS = re.compile(
    rf"^https?://[^/?#]+(?:/[^?#]*)?/v1/deploys/({DEPLOY_ID_PATTERN.strip('^$')})/?$"
)
"""A deploy object's URL, as Postflight posts it as a deployment status's `log_url`."""
MAX_HOOK_BODY = 1024 * 1024
"""GitHub caps payloads at 25 MB, but deployment events are a few KiB: 1 MiB is ample."""


class BadPayload(ValueError):
    """Signed, but not the provider's JSON (answered 400)."""


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def vercel_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def signature_ok(expected: str, presented: str | None) -> bool:
    """Constant-time compare; a missing header never matches. Hex is hex in either case
    (`sha256=9F…` from a sender whose digest prints upper case is the same signature):
    `expected` is lower case, as the providers send it."""
    if presented is None:
        return False
    return hmac.compare_digest(
        expected.encode(), presented.strip().lower().encode("utf-8", "replace")
    )


@dataclass(frozen=True, slots=True)
class OpenWindow:
    """A valid event that opens a window in `environment`."""

    environment: str
    version: str
    commit: str | None
    labels: dict[str, str] = field(default_factory=dict)
    deployment_label: str | None = None
    """The label naming the provider's deployment: while a window of the environment
    carrying it is watched, the event answers with that window and opens nothing (Vercel
    sends `deployment.succeeded` then `deployment.promoted` for one production deploy).
    Set for an event that names no deployment too (a relayed GitHub status without its
    `deployment.id`): it still joins the other provider's window of its commit."""
    occurred_at: float | None = None
    """When the provider says the event happened (epoch seconds), None when it does not:
    neither signature carries a time, so this is what tells a replay of a delivery whose
    key retention forgot from a new event."""
    origins: dict[str, str] = field(default_factory=dict)
    """Which field of the event each of the window's came from (`version`: `deployment.sha`,
    `labels.vercel.deployment`: `payload.deployment.id`), so a value the window cannot take
    is named to the provider's sender as the event's field, which is all it knows."""


@dataclass(frozen=True, slots=True)
class Gate:
    """A GitHub deployment protection rule to answer for `environment`."""

    environment: str
    sha: str
    callback_url: str
    github_environment: str
    deployment: str | None = None
    """The payload's `deployment.id`: the deployment the job waits with, one per job into
    the environment (the run's next job, a re-run, is another), where the callback URL is
    one per run. None when the payload names none."""
    asked_at: float | None = None
    """The payload's `deployment.created_at`: when the job began to wait (GitHub waits 30
    days at most); None when it names none."""


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str


def _object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadPayload(f"{where} must be a JSON object")
    return data


def _text(data: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    """`data[key]`, a non-empty string; `where` is `data`'s path in the body ("" for the
    body itself: the field is then named alone, `type`, not `the body.type`)."""
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadPayload(f"{f'{where}.' if where else ''}{key} must be a non-empty string")
    return value


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        document = parse_json_text(body)
    except JsonTextError as exc:
        raise BadPayload(f"malformed JSON: {exc}") from None
    return _object(document, "the body")


def github_event(
    settings: Settings, event: str, document: dict[str, Any]
) -> OpenWindow | Gate | Ignored:
    """What a verified GitHub delivery asks for."""
    if event == "deployment_status":
        return _github_deployment_status(settings, document)
    if event == "deployment_protection_rule":
        return _github_protection_rule(settings, document)
    return Ignored(f"event {event!r} opens nothing")


def _github_environment(settings: Settings, repository: str, environment: str) -> str | None:
    for name, env in settings.environments.items():
        source = env.sources.github
        if (
            source is not None
            and source.repository.lower() == repository.lower()
            and source.environment.lower() == environment.lower()
        ):
            return name
    return None


def _github_deployment_status(settings: Settings, document: dict[str, Any]) -> OpenWindow | Ignored:
    status = _object(document.get("deployment_status"), "deployment_status")
    deployment = _object(document.get("deployment"), "deployment")
    repository = _object(document.get("repository"), "repository")
    state = _text(status, "state", "deployment_status")
    full_name = _text(repository, "full_name", "repository")
    environment = _text(deployment, "environment", "deployment")
    sha = _text(deployment, "sha", "deployment")
    deployment_id = _deployment_id(deployment.get("id"))
    assert state and full_name and environment and sha
    if state != "success":
        return Ignored(f"deployment_status {state!r} opens nothing (only success does)")
    own = _own_status(status)
    if own is not None:
        return Ignored(f"a status Postflight posted for {own} opens nothing")
    name = _github_environment(settings, full_name, environment)
    if name is None:
        return Ignored(f"{full_name} {environment!r} is not mapped to an environment")
    labels = {"github.repository": full_name}
    if deployment_id is not None:  # without it the window opens, and no status is posted
        labels["github.deployment"] = str(deployment_id)
    labels["github.environment"] = environment
    # not `target_url`: GitHub's log URL (`log_url` replaces it), an Actions run's page
    # when a job names its environment without a `url`, which was probed and posted back
    url = status.get("environment_url")
    if _fits_a_label(url):
        labels["github.environment_url"] = url
    return OpenWindow(
        environment=name,
        version=sha,
        commit=sha,
        labels=labels,
        deployment_label="github.deployment",
        occurred_at=_iso_time(status.get("created_at")) or _iso_time(deployment.get("created_at")),
        origins={
            "version": "deployment.sha",
            "commit": "deployment.sha",
            "labels.github.repository": "repository.full_name",
            "labels.github.environment": "deployment.environment",
        },
    )


VERCEL_SHA = "payload.deployment.meta.githubCommitSha"
"""Where a Vercel event says the commit it deployed (the window's version when present)."""

MAX_LABEL_VALUE = 256
"""A label's value holds this many characters (`agent.api.models`)."""


def _fits_a_label(url: Any) -> TypeGuard[str]:
    """Whether an event's URL is kept as a label: whole, or not at all. Cut at 256 it was
    a URL of nothing, which a GitHub status posted as the deployment's `environment_url`
    and `use_environment_url` probed (404s: a rollback)."""
    return isinstance(url, str) and 0 < len(url) <= MAX_LABEL_VALUE


def _iso_time(value: Any) -> float | None:
    """GitHub's `created_at` (ISO 8601, `2026-12-04T09:00:00Z`) in epoch seconds; None
    when absent or not a time (the event is then not aged, as before)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        at = datetime.fromisoformat(value)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        return None


def _epoch_ms(value: Any) -> float | None:
    """Vercel's `createdAt` (ms since the epoch) in seconds; None when absent or not one.
    Vercel's reference types it Number in one version and Date in another: a date
    (ISO 8601) is read as one, where it left a replay unaged."""
    if isinstance(value, str):
        return _iso_time(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e14:
        return None  # NaN and huge numbers too: not a time
    return value / 1000


_DECIMAL = re.compile(r"^[0-9]{1,20}$")


def _deployment_id(value: Any) -> int | None:
    """`deployment.id`: GitHub's integer (a numeric string read as one). The contract
    opens a window without it (a relay's or a test's delivery): no status can be posted
    then, and None says so."""
    if value is None:
        return None
    if isinstance(value, str) and _DECIMAL.match(value):
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadPayload("deployment.id must be an integer")
    return value


def _own_status(status: Mapping[str, Any]) -> str | None:
    """The deploy id when the status is one Postflight posted (its `log_url` is a deploy
    object's, and GitHub copies it to `target_url`). GitHub sends an event for every
    status created, Postflight's own too: the echo of a verdict's `success` must not
    open a window, which would pass and post `success` again, for ever."""
    for key in ("log_url", "target_url"):
        url = status.get(key)
        found = _OWN_STATUS.search(url) if isinstance(url, str) else None
        if found:
            return found.group(1)
    return None


def _github_protection_rule(settings: Settings, document: dict[str, Any]) -> Gate | Ignored:
    environment = _text(document, "environment", "payload")
    sha = _text(document, "sha", "payload")
    callback = _text(document, "deployment_callback_url", "payload")
    repository = _object(document.get("repository"), "repository")
    full_name = _text(repository, "full_name", "repository")
    assert environment and sha and callback and full_name
    name = _github_environment(settings, full_name, environment)
    if name is None or settings.environments[name].gate is None:
        return Ignored(f"{full_name} {environment!r} has no gate configured")
    deployment = document.get("deployment")
    found = deployment.get("id") if isinstance(deployment, dict) else None
    named = str(found) if isinstance(found, int | str) and not isinstance(found, bool) else None
    return Gate(
        environment=name,
        sha=sha,
        callback_url=callback,
        github_environment=environment,
        deployment=named or None,
        asked_at=_iso_time(deployment.get("created_at")) if isinstance(deployment, dict) else None,
    )


def vercel_event(settings: Settings, document: dict[str, Any]) -> OpenWindow | Ignored:
    """What a verified Vercel webhook asks for."""
    kind = _text(document, "type", "")
    if document.get("id") != "":  # missing or empty: the hook keys the event by its body
        _text(document, "id", "", required=False)
    if kind not in OPENING_VERCEL_TYPES:
        return Ignored(f"event {kind!r} opens nothing")
    payload = _object(document.get("payload"), "payload")
    deployment = _object(payload.get("deployment"), "payload.deployment")
    project = _object(payload.get("project"), "payload.project")
    deployment_id = _text(deployment, "id", "payload.deployment")
    project_id = _text(project, "id", "payload.project")
    target = payload.get("target")
    if target is not None and not isinstance(target, str):
        raise BadPayload("payload.target must be a string or null")
    target = target or "preview"
    assert deployment_id and project_id
    meta = deployment.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    sha = meta.get("githubCommitSha")
    sha = sha if isinstance(sha, str) and sha else None
    name = None
    for env_name, env in settings.environments.items():
        source = env.sources.vercel
        if (
            source is not None
            and source.project == project_id
            and source.target.lower() == target.lower()  # `Production`, as GitHub's
        ):
            name = env_name
            break
    if name is None:
        return Ignored(f"project {project_id} target {target!r} is not mapped to an environment")
    labels = {"vercel.deployment": deployment_id, "vercel.project": project_id}
    previous = _previous_deployment(payload)
    if previous:
        labels["vercel.previous"] = previous
    url = deployment.get("url")
    if _fits_a_label(url):
        labels["vercel.url"] = url
    return OpenWindow(
        environment=name,
        version=sha or deployment_id,
        commit=sha,
        labels=labels,
        deployment_label="vercel.deployment",
        occurred_at=_epoch_ms(document.get("createdAt")),
        origins={
            "version": VERCEL_SHA if sha else "payload.deployment.id",
            "commit": VERCEL_SHA,
            "labels.vercel.deployment": "payload.deployment.id",
            "labels.vercel.project": "payload.project.id",
        },
    )


def _previous_deployment(payload: Mapping[str, Any]) -> str | None:
    """The production deployment this one replaces, when the event names it.

    Vercel's documented payload does not always carry it; pipelines can add it as
    `meta.previousDeploymentId` (or the label `vercel.previous` on register). Without
    it (and no earlier window of ours), the rollback asks Vercel's list of production
    deployments (`agent.integrations.targets.look_up_previous`).
    """
    deployment = payload.get("deployment")
    meta = deployment.get("meta") if isinstance(deployment, dict) else None
    for source in (payload, meta if isinstance(meta, dict) else {}):
        for key in ("previousDeploymentId", "previousProductionDeploymentId"):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None


_URL = re.compile(r"^https?://[^\s/?#]+[^\s?#]*$")


def event_url(labels: Mapping[str, str], sources: SourcesSettings) -> str | None:
    """The deploy event's URL its source asks the window to probe (`use_environment_url`,
    `use_deployment_url`), as the event gave it; None when it asks for none."""
    github_url = labels.get("github.environment_url")
    vercel_url = labels.get("vercel.url")
    if sources.github is not None and sources.github.use_environment_url and github_url:
        return github_url
    if sources.vercel is not None and sources.vercel.use_deployment_url and vercel_url:
        return vercel_url if "://" in vercel_url else f"https://{vercel_url}"
    return None


def event_url_refused(url: str) -> str | None:
    """Why an event's URL is not a base to put check paths after (None: it is).

    A query string is refused, as configuration refuses one in `base_url` (`a_base`):
    each check's path went after it (`https://preview/?share=t/api/health`, the site's
    root asked for, a healthy deploy failed), and it may be a share token the redactor
    does not know, which a probe's error would show. A fragment is not: no client sends
    it, and `window_base_url` drops it."""
    if len(url) > 2048:
        return "longer than 2048 characters"
    bare = url.split("#", 1)[0]
    if "?" in bare:
        return "it has a query string (?…), which check paths cannot follow"
    if not _URL.match(bare):
        return "not an http(s) URL"
    return None


def window_base_url(labels: Mapping[str, str], sources: SourcesSettings) -> str | None:
    """The URL a window opened by a deploy event probes instead of the environment's
    `base_url`, when its source says so (`use_environment_url`, `use_deployment_url`),
    its #fragment dropped; None otherwise, or when the event's URL is refused
    (`event_url_refused`: a query string, not an http(s) URL)."""
    url = event_url(labels, sources)
    if url is None or event_url_refused(url) is not None:
        return None
    return url.split("#", 1)[0]
