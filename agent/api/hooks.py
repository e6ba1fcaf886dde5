"""Routes of contract §7: `POST /v1/hooks/github`, `POST /v1/hooks/vercel` (signed by
the provider, no bearer token) and `POST /v1/deploys/{id}/rollback` (bearer token).

A hook's signature is checked over the raw body before anything else, so a request
that fails it stores nothing. A redelivery (same `X-GitHub-Delivery` / Vercel event
`id`; a GitHub delivery without its GUID: the same body) answers the first 202 again
from the store: one window per event; once retention forgot it, the event's own time,
older than the deliveries forgotten, answers it ignored (`_forgotten_before`). A
protection rule's request is keyed by what it asks (`_gate_request`), not its GUID, and
kept past the deliveries' retention (`Store.add_gate`, 90 days: `GATES_KEPT_S`): a replay
is not answered twice, and is told its gate's state; one whose deployment is older than
that is ignored. An event
of a provider deployment (Vercel deployment id, GitHub deployment id) whose window of
the environment is still watched answers with that window and opens nothing
(`SameDeployment`): one window per deployment while it is watched; once it ended, a new
event of it opens another. So does an event of the other provider for the same commit
(Vercel's GitHub integration reports each Vercel deployment to GitHub too), adding its
deployment's labels to the window. Must not judge or deliver anything itself: the
watcher and `Integrations` do.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from ulid import ULID

from agent.api.auth import bearer_token, token_name
from agent.api.models import DeployRequest, Reason, deploy_object, deploy_path
from agent.api.problems import ApiProblem, invalid_fields, unreadable_body, validation_errors
from agent.api.routes import (
    BODY_READ_TIMEOUT_S,
    _count_ended,
    _notify,
    _now,
    _read_limited,
    _render,
    _window_id,
    read_json_body,
)
from agent.appkeys import METRICS, SETTINGS, STORE
from agent.integrations import events as ev
from agent.metrics import DeployEventResult
from agent.records import DeployWindow, GateAsk, IdempotentResponse
from agent.retention import gates_kept_s
from agent.store.base import Conflict, SameDeployment, Store
from common.times import rfc3339

log = logging.getLogger("postflight.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

INTEGRATIONS: web.AppKey[Any] = web.AppKey("integrations", object)
"""`agent.windows.integrations.Integrations`, set by the daemon (absent: no statuses,
gates or manual rollbacks; hooks still open windows)."""
MAX_DELIVERY_ID = 200
KEY_PREFIX = "§hook:"
"""Deliveries are remembered beside the API's `Idempotency-Key`s; the `§` (never in an
API key, which is printable ASCII) keeps a client from claiming an event's key."""


async def _raw_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > ev.MAX_HOOK_BODY:
        raise ApiProblem(413, "the request body must be at most 1024 KiB")
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await _read_limited(request, ev.MAX_HOOK_BODY)
    except ApiProblem:
        raise
    except TimeoutError:
        raise ApiProblem(408, "the request body did not arrive in time") from None
    except Exception as exc:
        raise unreadable_body(exc) from None


def _unsigned(provider: str, header: str, configured: bool) -> ApiProblem:
    """The 401 of a delivery that fails its signature. With no secret configured every
    delivery fails it, and "wrong signature" alone sent the user to the provider's side:
    the fix is in this agent's configuration, which the detail then names (it tells a
    caller only that the hook is off)."""
    detail = f"missing or wrong {header}: not a {provider} delivery signed with our secret"
    if not configured:
        key = f"integrations.{provider.lower()}.webhook_secret"
        detail += f" ({key} is not set on this agent: set it to the webhook's secret)"
    return ApiProblem(401, detail, slug="bad-signature")


def _presented(request: web.Request, header: str, provider: str) -> str | None:
    """The delivery's one signature header, None when it has none. Sent more than once
    (or folded into one comma list by a proxy), which one counted was the first: a
    delivery signed right and wrong was taken or refused by the headers' order. A
    provider signs each delivery once: any more is not its delivery, 401."""
    values = request.headers.getall(header, [])
    if len(values) > 1 or any("," in value for value in values):
        count = max(len(values), sum(value.count(",") + 1 for value in values))
        raise ApiProblem(
            401,
            f"{header} was sent {count} times: a {provider} delivery carries one signature",
            slug="bad-signature",
        )
    return values[0] if values else None


def _check_signature(
    request: web.Request,
    raw: bytes,
    secret: SecretStr | None,
    provider: str,
    header: str,
    sign: Callable[[str, bytes], str],
) -> None:
    """A 401 unless the delivery carries one `header` that is `sign` of its raw body with
    the configured `secret` (none configured: every delivery fails, saying so)."""
    presented = _presented(request, header, provider)
    if secret is None or not ev.signature_ok(sign(secret.get_secret_value(), raw), presented):
        raise _unsigned(provider, header, configured=secret is not None)


def _document(raw: bytes, request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/x-www-form-urlencoded":
        # GitHub's default content type for a new webhook: the JSON is in a form field
        raise ApiProblem(
            400,
            "a form-encoded delivery: set the webhook's content type to application/json",
            slug="bad-payload",
        )
    try:
        return ev.parse_json(raw)
    except ev.BadPayload as exc:
        raise ApiProblem(400, str(exc), slug="bad-payload") from None


def _integrations(request: web.Request) -> Any:
    return request.config_dict.get(INTEGRATIONS)


def _count(request: web.Request, provider: str, result: DeployEventResult) -> None:
    """One deploy event in `postflight_deploy_events_total`."""
    metrics = request.config_dict.get(METRICS)
    if metrics is not None:
        metrics.deploy_events_total.labels(provider, result).inc()


def counted_hook(provider: str) -> Callable[[Handler], Handler]:
    """A hook whose every delivery is counted by how it ended: a refusal by its status
    (401 `rejected`, any other `invalid`), an answer by the result its handler counted."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def hook(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ApiProblem as problem:
                _count(request, provider, "rejected" if problem.status == 401 else "invalid")
                raise

        return hook

    return wrap


@counted_hook("github")
async def github_hook(request: web.Request) -> web.StreamResponse:
    settings = request.config_dict[SETTINGS]
    github = settings.integrations.github
    raw = await _raw_body(request)
    secret = github.webhook_secret if github is not None else None
    _check_signature(request, raw, secret, "GitHub", ev.GITHUB_SIGNATURE, ev.github_signature)
    event = request.headers.get(ev.GITHUB_EVENT, "")
    if not event:
        raise ApiProblem(400, f"{ev.GITHUB_EVENT} is required")
    # GitHub always sends the delivery's GUID; without one (a script, a proxy that drops
    # it) the signed body keys it: the same body again is a redelivery, one window
    delivery = request.headers.get(ev.GITHUB_DELIVERY, "") or _body_key(raw)
    if len(delivery) > MAX_DELIVERY_ID:
        raise ApiProblem(400, f"{ev.GITHUB_DELIVERY} is longer than {MAX_DELIVERY_ID} characters")
    document = _document(raw, request)
    try:
        decision = ev.github_event(settings, event, document)
    except ev.BadPayload as exc:
        raise ApiProblem(400, str(exc), slug="bad-payload") from None
    if isinstance(decision, ev.Gate):
        integrations = _integrations(request)
        if integrations is None:
            _count(request, "github", "ignored")
            return web.json_response({"ignored": "gates need the daemon"}, status=200)
        kept = gates_kept_s(settings.store.retention.rounds)
        if decision.asked_at is not None and decision.asked_at < _now(request) - kept:
            # older than the requests the store keeps (no job waits so long): a replay it
            # may have forgotten, which an answer would only have GitHub refuse
            reason = (
                f"the protection rule's deployment of {_iso(decision.asked_at)} is older"
                f" than the requests this agent keeps ({kept / 86400:g} days; GitHub waits"
                " 30 at most): a replay is not answered"
            )
            log.warning("github protection rule ignored: %s", reason)
            _count(request, "github", "ignored")
            return web.json_response({"ignored": reason}, status=200)
        # by the request, not its delivery's GUID: the same request replayed under a
        # fresh GUID (or once retention forgot it) is one answer, which GitHub takes once
        key = f"{KEY_PREFIX}github:{_gate_request(decision, raw)}"
        store = request.config_dict[STORE]
        pending = {"gate": "pending", "environment": decision.environment}
        asked = GateAsk.ASKED
        if await store.idempotent_response(key) is None:
            answer = IdempotentResponse(key=key, request_hash=key, status=202, body=pending)
            asked = await integrations.add_gate(decision, answer)
        if asked is GateAsk.ASKED:
            # asked before (a redelivery, a replay, once retention forgot its delivery):
            # not asked again, and told where its gate stands, not "pending" once answered
            _count(request, "github", "redelivered")
            return web.json_response(await _gate_now(store, key, decision), status=202)
        # a new request: its gate stored, or joining the run's gate still waiting for its
        # answer (the run's next job into the environment), answered with it
        _count(request, "github", "gate" if asked is GateAsk.ADDED else "joined")
        return web.json_response(pending, status=202)
    if isinstance(decision, ev.OpenWindow):
        # GitHub signs the body, not the GUID: a captured delivery resent under a fresh
        # GUID is the same signed bytes, one window; any other status (another id, sha,
        # environment, a re-run's) is another body, another event, even where a script
        # reuses one status id
        delivery = _body_key(raw)
    return await _act(request, "github", decision, f"{KEY_PREFIX}github:{delivery}")


@counted_hook("vercel")
async def vercel_hook(request: web.Request) -> web.StreamResponse:
    settings = request.config_dict[SETTINGS]
    vercel = settings.integrations.vercel
    raw = await _raw_body(request)
    secret = vercel.webhook_secret if vercel is not None else None
    _check_signature(request, raw, secret, "Vercel", ev.VERCEL_SIGNATURE, ev.vercel_signature)
    document = _document(raw, request)
    try:
        decision = ev.vercel_event(settings, document)
    except ev.BadPayload as exc:
        raise ApiProblem(400, str(exc), slug="bad-payload") from None
    event_id = document.get("id") or _body_key(raw)
    key = f"{KEY_PREFIX}vercel:{str(event_id)[:MAX_DELIVERY_ID]}"
    return await _act(request, "vercel", decision, key)


async def _gate_now(store: Store, key: str, gate: ev.Gate) -> dict[str, Any]:
    """A request asked before, told its gate's state: `pending`, its answer (and how its
    POST went, `result`), or `answered` (a later request opened the gate again since)."""
    now = await store.gate_state(key, gate.callback_url, gate.github_environment)
    state = "answered" if now is None else now.state  # none kept: pruned once answered
    body: dict[str, Any] = {"gate": state, "environment": gate.environment}
    if now is not None and now.result is not None:
        body["result"] = now.result
    return body


def _gate_request(gate: ev.Gate, raw: bytes) -> str:
    """What identifies a protection rule's request: its run's callback URL, the GitHub
    environment and the deployment its job waits with (one per job: the run's next job
    into the environment, a re-run, is another request on the same callback URL); without
    a deployment, its signed body (the same body again is the same request)."""
    job = f"deployment:{gate.deployment}" if gate.deployment else _body_key(raw)
    named = "\n".join((gate.callback_url, gate.github_environment, job)).encode()
    return "gate:" + hashlib.sha256(named).hexdigest()


def _body_key(raw: bytes) -> str:
    """An event's key when it came without its id: its signed body, so the same body
    again is a redelivery (one window) and another body another event."""
    return "body-sha256:" + hashlib.sha256(raw).hexdigest()


async def _act(
    request: web.Request, provider: str, decision: ev.OpenWindow | ev.Ignored, key: str
) -> web.Response:
    if isinstance(decision, ev.Ignored):
        _count(request, provider, "ignored")
        return web.json_response({"ignored": decision.reason}, status=200)
    store = request.config_dict[STORE]
    stored = await store.idempotent_response(key)
    if stored is not None:
        _count(request, provider, "redelivered")
        return _answered_again(stored)
    forgotten = await _forgotten_before(store, decision)
    if forgotten is not None:
        reason = (
            f"the event of {_iso(decision.occurred_at)} is older than the deliveries this"
            f" agent remembers (since {_iso(forgotten)}, store.retention.rounds):"
            " a replay opens nothing"
        )
        log.warning(
            "%s deploy event ignored: %s (%s)", provider, reason, key.removeprefix(KEY_PREFIX)
        )
        _count(request, provider, "ignored")
        return web.json_response({"ignored": reason}, status=200)
    labels = dict(decision.labels)
    recent = (await store.list_windows(environment=decision.environment, limit=20)).items
    if "vercel.deployment" in labels and "vercel.previous" not in labels:
        previous = previous_vercel_deployment(recent, labels)
        if previous:
            labels["vercel.previous"] = previous
    try:
        body = DeployRequest.model_validate(
            {
                "environment": decision.environment,
                "version": decision.version,
                "previous_version": previous_version(recent, decision.version),
                "commit": decision.commit,
                "labels": labels,
            }
        )
    except ValidationError as exc:
        detail = _unfit_fields(validation_errors(exc), decision.origins)
        raise ApiProblem(
            400, f"the event cannot open a window: {detail}", slug="bad-payload"
        ) from None
    return await _open(request, provider, store, body, key, decision.deployment_label)


def _unfit_fields(errors: list[dict[str, Any]], origins: Mapping[str, str]) -> str:
    """Each event field whose value the window cannot take, once (a GitHub sha is both the
    version and the commit), and what the window needs of it: the sender knows the event's
    fields, not the window's."""
    said: dict[str, str] = {}
    for error in errors:
        where = ".".join(str(part) for part in error["loc"])
        origin = origins.get(where)
        named = f"{origin} (the window's {where})" if origin else f"the window's {where}"
        said.setdefault(origin or where, f"{named}: {error['msg']}")
    return "; ".join(said.values())


async def _forgotten_before(store: Store, decision: ev.OpenWindow) -> float | None:
    """When retention forgot the deliveries of before the event's own time, that time;
    None for an event that may open a window. Neither provider signs a time, so a
    captured delivery resent once its key is deleted would open a window on an old sha
    again. A store that never forgot a key (a new agent, a test's fixed `createdAt`)
    ignores nothing: only a key that is gone makes a replay possible."""
    if decision.occurred_at is None:
        return None
    forgotten = await store.keys_forgotten_before()
    return forgotten if forgotten is not None and decision.occurred_at < forgotten else None


def _iso(at: float | None) -> str:
    return "?" if at is None else rfc3339(at, millis=False)


def _answered_again(stored: IdempotentResponse) -> web.Response:
    """A redelivery's answer: the first one's body and status, and its `Location`."""
    deploy = stored.body.get("deploy")
    headers = {"Location": deploy_path(deploy["id"])} if isinstance(deploy, dict) else None
    return web.json_response(stored.body, status=stored.status, headers=headers)


async def _open(
    request: web.Request,
    provider: str,
    store: Store,
    body: DeployRequest,
    key: str,
    deployment_label: str | None,
) -> web.Response:
    settings = request.config_dict[SETTINGS]
    env = settings.environments[body.environment]
    now = _now(request)
    window = DeployWindow(
        id=f"dep_{ULID()}",
        environment=body.environment,
        version=body.version,
        previous_version=body.previous_version,
        commit=body.commit,
        labels=dict(body.labels),
        state="watching",
        deployed_at=now,
        ends_at=now + env.window,
        created_at=now,
    )

    def answer(shown: DeployWindow) -> IdempotentResponse:
        # no page link: its `?view=` token would sit in the provider's delivery log (GitHub
        # shows each delivery's response to the repository's admins), readable by all of
        # them until it expires; the pipeline's own answer (`POST /v1/deploys`) keeps one
        payload = {"deploy": deploy_object(shown, now=now)}
        return IdempotentResponse(key=key, request_hash=key, status=202, body=payload)

    opened = answer(window)
    deployment = window.labels.get(deployment_label or "")
    same = (
        # without its deployment (a relayed GitHub status), joined by its commit only
        SameDeployment(
            deployment_label, deployment or "", answer, version=body.commit, labels=window.labels
        )
        if deployment_label
        else None
    )
    try:
        created = await store.create_window(window, opened, same=same)
    except Exception:
        stored = await store.idempotent_response(key)  # the same event raced us
        if stored is not None:
            _count(request, provider, "redelivered")
            return _answered_again(stored)
        raise
    integrations = _integrations(request)
    if created.joined:
        # one watch per deployment: its window's baseline and timing go on undisturbed
        log.info(
            "deploy event for %s %s joins its window, still watched (%s)",
            deployment_label,
            deployment,
            key.removeprefix(KEY_PREFIX),
            extra={"deploy_id": created.window.id, "environment": window.environment},
        )
        joined = created.window
        _count(request, provider, "joined")
        if integrations is not None:  # the other provider's deployment, joined: its statuses
            integrations.wake()
        return web.json_response(
            answer(joined).body, status=202, headers={"Location": deploy_path(joined.id)}
        )
    _count(request, provider, "opened")
    _notify(request, window.id, [old.id for old in created.superseded])
    _count_ended(request, "superseded", created.superseded)
    if integrations is not None:
        integrations.wake()
    log.info(
        "deploy event opened a window: %s %s (%s)",
        window.environment,
        window.version,
        key.removeprefix(KEY_PREFIX),
        extra={"deploy_id": window.id, "environment": window.environment},
    )
    return web.json_response(opened.body, status=202, headers={"Location": deploy_path(window.id)})


def _served_before(
    recent: Sequence[DeployWindow],
    own: str | None,
    served: Callable[[DeployWindow], str | None],
    went_back_to: Callable[[DeployWindow], str | None],
) -> str | None:
    """What the environment served before `own`, from its `recent` windows (newest
    first): the newest one's `served` (or, if it was rolled back, what it `went_back_to`),
    never `own` itself: one deployed again after a rollback went back to it would roll
    back to itself."""
    for window in recent:
        current = served(window)
        if not current or current == own:
            continue
        if window.state == "rolled_back":
            back = went_back_to(window)
            if back and back != own:
                return back
            continue
        return current  # cancelled or failed without a rollback: it still serves
    return None


def previous_vercel_deployment(
    recent: Sequence[DeployWindow], labels: dict[str, str]
) -> str | None:
    """The deployment production served before this one (`vercel.previous`), from our
    own windows of the environment."""
    return _served_before(
        recent,
        labels.get("vercel.deployment"),
        lambda w: w.labels.get("vercel.deployment"),
        lambda w: w.labels.get("vercel.previous"),
    )


def previous_version(recent: Sequence[DeployWindow], version: str) -> str | None:
    """The version the environment served before `version`, from our own windows: a
    deploy event names none, and a rollback workflow told `previous_version: ""` (the
    GitHub target's input) has nothing to go back to."""
    return _served_before(recent, version, lambda w: w.version, lambda w: w.previous_version)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


async def rollback_deploy(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    window_id = _window_id(request)
    document = await read_json_body(request)
    try:
        body = RollbackRequest.model_validate(document)
    except ValidationError as exc:
        raise invalid_fields(
            validation_errors(exc, known_fields=RollbackRequest.model_fields)
        ) from None
    integrations = _integrations(request)
    if integrations is None:
        raise ApiProblem(503, "manual rollback needs the daemon", slug="not-ready")
    who = token_name(bearer_token(request) or "", settings.server.token_names()) or "unknown"
    try:
        window = await integrations.request_rollback(window_id, body.reason, who)
    except KeyError:
        raise ApiProblem(404, f"no deploy {window_id}", slug="unknown-deploy") from None
    except Conflict as exc:
        raise ApiProblem(409, str(exc), slug="rollback-refused") from None
    return web.json_response(await _render(request, window), status=202)
