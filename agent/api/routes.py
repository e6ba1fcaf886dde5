"""The handlers of API v1 (contract §2): deploys, health, readiness, metrics, OpenAPI.

Each handler validates with the models in `agent.api.models`, talks to the store,
and tells the watcher through `WindowEvents`; it never judges a deploy (that is
the watcher's job) and never builds an error response itself (it raises
`ApiProblem`, which the error middleware renders).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from aiohttp import hdrs, web
from pydantic import ValidationError
from ulid import ULID

from agent.analysis.describe import likely_inconclusive
from agent.api.idempotency import Registered, differences, document_hash, stored_as_same
from agent.api.models import (
    CLOCK_SKEW_S,
    EMPTY_MEANS_NOT_GIVEN,
    IDEMPOTENCY_KEY_PATTERN,
    LIST_LIMIT_MAX,
    MAX_BODY_BYTES,
    MAX_SCHEDULE_AHEAD_S,
    DeployRequest,
    ListQuery,
    decode_list_cursor,
    deploy_object,
    deploy_path,
    encode_list_cursor,
    shown_state,
)
from agent.api.problems import (
    ApiProblem,
    decoded_codings,
    invalid_fields,
    undecoded_coding,
    unreadable_body,
    validation_errors,
)
from agent.api.shown import shown_deploy
from agent.appkeys import (
    FORESIGHT,
    LOOPS,
    METRICS,
    PAGE_LINK,
    SETTINGS,
    STORE,
    WINDOW_EVENTS,
    Foresight,
)
from agent.records import (
    DeployState,
    DeployWindow,
    IdempotentResponse,
    WindowCreated,
    decided_verdict,
    deploy_id_as_stored,
)
from agent.settings import EnvironmentSettings
from agent.store.base import Conflict, Store
from agent.store.cursor import encode_cursor
from agent.store.outages import store_outage
from common.durations import format_bound, format_duration, format_span
from common.json_text import JsonTextError, parse_json_text
from common.times import rfc3339
from common.words import unknown_environment

log = logging.getLogger("postflight.api")

CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("api_clock")
"""Optional: the API's wall clock (tests pin it); `time.time` when unset."""

BODY_READ_TIMEOUT_S = 10.0
"""A client that trickles its body slower than this is dropped with 408."""
READY_TIMEOUT_S = 2.0
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


async def _foreseen(
    foresee: Foresight, store: Store, env: EnvironmentSettings, window: DeployWindow, now: float
) -> list[str]:
    """The registration's warnings; none when they cannot be worked out (a bug): they
    are advice, and a deploy is never refused for them. A store that does not answer is
    the 503 it is at once: the window could not be stored either, and each such request
    logged an ERROR with a traceback saying the deploy was registered when it was not."""
    try:
        return await foresee(
            store, env, window.environment, window.deployed_at, window.ends_at, now=now
        )
    except Exception as exc:
        if store_outage(exc):
            raise
        log.exception(
            "registration warnings not worked out; the deploy is registered without them",
            extra={"environment": window.environment},
        )
        return []


def _now(request: web.Request) -> float:
    clock = request.config_dict.get(CLOCK)
    return clock() if clock is not None else time.time()


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(
        data,
        status=status,
        headers=dict(headers or {}),
        dumps=lambda obj: json.dumps(obj, ensure_ascii=False, allow_nan=False),
    )


# --- reading a JSON body ------------------------------------------------------------


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _sent_content_type(request: web.Request) -> str:
    """The media type the request gave, as a 415 quotes it: aiohttp reads a header that is
    not one (`json`) as application/octet-stream, which the client never sent."""
    given = request.headers.get(hdrs.CONTENT_TYPE)
    if given is None:
        return "none"
    if "/" not in given.partition(";")[0]:
        return f"{given[:64]!r}, not a media type"
    return request.content_type


async def _read_limited(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ApiProblem(413, f"the request body must be at most {limit // 1024} KiB")
        chunks.append(chunk)


async def read_json_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The request's JSON document, or the 413/415/400/408 the contract asks for.

    The size is enforced while reading (not from `Content-Length` alone, which a
    chunked or compressed body does not have), so a large body is never buffered.
    """
    if request.content_length is not None and request.content_length > limit:
        raise ApiProblem(413, f"the request body must be at most {limit // 1024} KiB")
    if not _is_json(request.content_type):
        sent = _sent_content_type(request)
        raise ApiProblem(415, f"send the body as Content-Type: application/json (got {sent})")
    coding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if coding not in decoded_codings():
        # aiohttp hands a coding it does not know on undecoded, as if there were none
        raise undecoded_coding(request.headers[hdrs.CONTENT_ENCODING])
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            raw = await _read_limited(request, limit)
    except ApiProblem:
        raise
    except TimeoutError:
        raise ApiProblem(408, "the request body did not arrive in time") from None
    except Exception as exc:  # a broken chunked encoding, bad gzip, a reset connection…
        raise unreadable_body(exc) from None
    try:
        # a key given twice is refused: read as its last, silently, it registered what
        # the sender may not have meant, and hashed as the last for `Idempotency-Key`
        return parse_json_text(raw, unique_keys=True)
    except JsonTextError as exc:
        raise ApiProblem(400, f"malformed JSON: {exc}") from None


def _idempotency_key(request: web.Request) -> str | None:
    given = request.headers.getall("Idempotency-Key", [])
    if not given:
        return None
    if len(given) > 1:  # the first was taken: sent the other way round, another window
        raise invalid_fields(
            [{"loc": ["header", "Idempotency-Key"], "msg": "give this header at most once"}]
        )
    key = given[0]
    if not _IDEMPOTENCY_KEY.match(key):
        raise invalid_fields(
            [
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "must be 1–255 printable ASCII characters",
                }
            ]
        )
    return key


# --- deploys ------------------------------------------------------------------------


def _page(request: web.Request, window_id: str) -> str | None:
    link = request.config_dict.get(PAGE_LINK)
    return link(window_id, _now(request)) if link is not None else None


async def _render(request: web.Request, window: DeployWindow) -> dict[str, Any]:
    """The deploy object; the API's clock marks a window ahead of its deploy `scheduled`."""
    store = request.config_dict[STORE]
    # any state may have one: a manual rollback (§7) can follow a pass
    rollback = await store.get_rollback(window.id) if window.state != "watching" else None
    if rollback is not None and rollback.state == "delivered" and window.state != "rolled_back":
        # delivered in between our two reads: the same transaction made the window
        # rolled_back (from failed, passed or inconclusive), so read it again rather
        # than show a state that never was
        window = await store.get_window(window.id) or window
    return await shown_deploy(
        store,
        window,
        rollback,
        page=_page(request, window.id),
        now=_now(request),
        settings=request.config_dict[SETTINGS],
    )


async def _differences(
    request: web.Request, stored: IdempotentResponse, document: Any, body: DeployRequest
) -> list[str]:
    """What a repeat of a key differs in from the request it registered (`differences`);
    none for the same request."""
    if stored_as_same(stored.request_hash, document, body):
        return []
    window_id = stored.body.get("id")
    window = (
        await request.config_dict[STORE].get_window(window_id)
        if isinstance(window_id, str)
        else None
    )
    environment = request.config_dict[SETTINGS].environments.get(body.environment)
    window_now = environment.window if environment is not None else None
    return differences(Registered(stored.body, window), body, window_now)


async def _replay(
    request: web.Request, stored: IdempotentResponse, document: Any, body: DeployRequest, key: str
) -> web.Response:
    """The key's first answer again for the same request (`_replayed`), else a 409."""
    differ = await _differences(request, stored, document, body)
    if differ:
        first = stored.body
        raise ApiProblem(
            409,
            f"Idempotency-Key {key!r} was already used for another request: it registered"
            f" {first.get('environment')} {first.get('version')} ({first.get('id')}), and this"
            f" one differs in {', '.join(differ)}. Send that request again to get its answer,"
            " or use a new key for a new deploy",
            slug="idempotency-key-reused",
        )
    return _replayed(stored)


def _replayed(stored: IdempotentResponse) -> web.Response:
    """A key's first answer, as a replay."""
    headers = {"Idempotent-Replayed": "true"}
    window_id = stored.body.get("id")
    if isinstance(window_id, str):
        headers["Location"] = deploy_path(window_id)
    return _json(stored.body, status=200, headers=headers)


def _notify(request: web.Request, opened: str | None, ended: list[str]) -> None:
    """Tell the watcher now rather than at its next poll. The change is already
    committed, so a failing watcher must not turn it into an error the pipeline
    would retry (and open a second window)."""
    events = request.config_dict.get(WINDOW_EVENTS)
    if events is None:
        return
    try:
        for window_id in ended:
            events.window_ended(window_id)
        if opened is not None:
            events.window_opened(opened)
    except Exception:
        log.exception("telling the watcher about a window change failed")


def _count_ended(request: web.Request, outcome: str, windows: list[DeployWindow]) -> None:
    """`postflight_windows_total` for the two endings that happen here, in the API, where
    the change is committed exactly once (the watcher counts the endings it decides)."""
    metrics = request.config_dict.get(METRICS)
    if metrics is not None:
        for window in windows:
            metrics.windows_total.labels(window.environment, outcome).inc()


async def create_deploy(request: web.Request) -> web.Response:
    store = request.config_dict[STORE]
    key = _idempotency_key(request)
    document = await read_json_body(request)
    stored = await store.idempotent_response(key) if key is not None else None
    try:
        body = DeployRequest.model_validate(document)
    except ValidationError as exc:
        if stored is not None and stored_as_same(stored.request_hash, document, None):
            # kept by a version before whose validation took it: its first answer
            return _replayed(stored)
        raise invalid_fields(
            validation_errors(exc, known_fields=DeployRequest.model_fields)
        ) from None
    if stored is not None:
        # compared by meaning once validated: `Z` or `+00:00`, `600` or `10m` are one
        # request, and so is a `window` left out that is the environment's now
        return await _replay(request, stored, document, body, cast(str, key))
    environment = _known_environment(request, body.environment)
    window_s = body.window if body.window is not None else environment.window
    if window_s < environment.interval:
        raise invalid_fields(
            [
                {
                    "loc": ["window"],
                    "msg": f"must be at least one interval of {body.environment}"
                    f" ({format_duration(environment.interval)})",
                }
            ]
        )
    now = _now(request)
    deployed_at = _deployed_at(body, window_s, now)
    window = DeployWindow(
        id=f"dep_{ULID()}",
        environment=body.environment,
        version=body.version,
        previous_version=body.previous_version,
        commit=body.commit,
        labels=dict(body.labels),
        state="watching",
        deployed_at=deployed_at,
        ends_at=deployed_at + window_s,
        created_at=now,
    )
    late = _ended_before_registered(window, now)
    if late is not None:
        window.state, window.ended_at = "inconclusive", now
        window.verdict = decided_verdict("inconclusive", late, now)
    page = _page(request, window.id)
    foresee = request.config_dict.get(FORESIGHT)
    if late is not None:
        warnings = [f"{window.environment} {window.version}: {late}"]
    elif foresee is not None:
        # answered, not logged: the window logs each once, as it finds it with its own
        # baseline (`WindowWatch`), not again at each restart or takeover; but for the
        # window a good release would likely not pass, which it never logs (below)
        warnings = await _foreseen(foresee, store, environment, window, now)
    else:
        warnings = []

    def answer(created: WindowCreated) -> IdempotentResponse:
        """The 201's body, with a warning for each live window it superseded that was
        deployed after it (read under the environment's lock), and what is kept under the
        key."""
        payload = deploy_object(created.window, page=page, now=now)
        said = warnings + [_overtaken(created.window, newer) for newer in _newer_live(created)]
        if said:
            payload["warnings"] = said
        return IdempotentResponse(
            key=key or "", request_hash=document_hash(document), status=201, body=payload
        )

    try:
        created = await store.create_window(window, answer if key is not None else None)
    except Exception:
        if key is not None:
            # A concurrent request with the same key won the race: answer as its replay.
            stored = await store.idempotent_response(key)
            if stored is not None:
                return await _replay(request, stored, document, body, key)
        raise
    payload = answer(created).body
    _notify(request, window.id, [old.id for old in created.superseded])
    _count_ended(request, "superseded", created.superseded)
    for newer in _newer_live(created):
        # the pipeline's author learns it here; the watch of the new window says nothing of it
        log.warning(
            _overtaken(window, newer),
            extra={"deploy_id": window.id, "environment": window.environment},
        )
    if late is not None:
        _count_ended(request, "inconclusive", [window])
        # decided here, and no watch follows: the one place it is logged
        log.warning(warnings[0], extra={"deploy_id": window.id, "environment": window.environment})
    for sentence in likely_inconclusive(warnings):  # registered once; the window never says it
        log.warning(sentence, extra={"deploy_id": window.id, "environment": window.environment})
    log.info(
        "deploy registered: %s %s (window %s%s)",
        window.environment,
        window.version,
        format_duration(window_s),
        f", supersedes {', '.join(o.id for o in created.superseded)}" if created.superseded else "",
        extra={"deploy_id": window.id, "environment": window.environment},
    )
    return _json(payload, status=201, headers={"Location": deploy_path(window.id)})


def _known_environment(request: web.Request, name: str) -> EnvironmentSettings:
    environment: EnvironmentSettings | None = request.config_dict[SETTINGS].environments.get(name)
    if environment is None:
        known = list(request.config_dict[SETTINGS].environments)
        raise ApiProblem(404, unknown_environment(name, known), slug="unknown-environment")
    return environment


async def _seen_environment(
    request: web.Request, store: Store, name: str, *, filtered: bool
) -> None:
    """The list's 404: an environment neither configured nor stored. One removed from the
    config keeps its history, also under a state filter none of its windows are in (that
    list answered 404 as if it had never been seen, where unfiltered it showed them)."""
    if name in request.config_dict[SETTINGS].environments:
        return
    if filtered and (await store.list_windows(environment=name, limit=1)).items:
        return
    _known_environment(request, name)


def _deployed_at(body: DeployRequest, window_s: float, now: float) -> float:
    """When the window starts. Ahead of now (at most `MAX_SCHEDULE_AHEAD_S`) it stays
    `scheduled` until then; a window already over is recorded as it is
    (`_ended_before_registered`). A few seconds of clock skew between the pipeline and
    us count as now."""
    if body.deployed_at is None:
        return now
    deployed_at = body.deployed_at.timestamp()
    ahead = deployed_at - now
    if ahead > MAX_SCHEDULE_AHEAD_S + CLOCK_SKEW_S:
        raise invalid_fields(
            [
                {
                    "loc": ["deployed_at"],
                    "msg": f"is {format_span(ahead)} ahead; at most"
                    f" {format_bound(MAX_SCHEDULE_AHEAD_S)} ahead is accepted",
                }
            ]
        )
    return now if 0 < ahead <= CLOCK_SKEW_S else deployed_at


def _newer_live(created: WindowCreated) -> list[DeployWindow]:
    """The windows this registration superseded that were deployed after its deployed_at
    and were live (not `scheduled`): a late or retried registration of an older deploy,
    or one that went live in between. Contract §2 has it supersede them as any new deploy
    does; the 201 and the log say so, for the newer deploy may be what serves.

    A window deployed as it was registered (no `deployed_at`) took its time from the clock
    of the replica that registered it: where that decides, the store's order of
    registrations does (`Store.create_window`, under the environment's lock: what this one
    superseded was registered before it), not two replicas' clocks. One registered a
    minute ahead on a replica whose clock ran ahead read as `scheduled` here, with no
    warning; this registration, deployed as registered, is the newest whatever the clocks."""
    window = created.window
    if _deployed_as_registered(window):
        return []
    return [
        old
        for old in created.superseded
        if window.deployed_at < old.deployed_at
        and (_deployed_as_registered(old) or old.deployed_at <= window.created_at)
    ]


def _deployed_as_registered(window: DeployWindow) -> bool:
    """Registered without a `deployed_at` (or one within `CLOCK_SKEW_S` ahead): deployed
    when its replica registered it (`_deployed_at`), live from then on."""
    return window.deployed_at == window.created_at


def _overtaken(window: DeployWindow, newer: DeployWindow) -> str:
    """The warning for a live window superseded by a registration deployed before it."""
    return (
        f"{window.environment} {window.version} (deployed at"
        f" {rfc3339(window.deployed_at, millis=False)}) registered after {newer.version}"
        f" ({newer.id}, deployed at {rfc3339(newer.deployed_at, millis=False)}, live): a late"
        " or retried registration of an older deploy supersedes it as any new deploy does;"
        f" if {newer.version} is what serves, register it again"
    )


def _ended_before_registered(window: DeployWindow, now: float) -> str | None:
    """A window whose end had passed when it was registered (a pipeline that reports a
    deploy late, or with a wrong clock) cannot be watched: its traffic can no longer be
    probed. It is kept as the deploy's record, ended `inconclusive` at once with a
    verdict that says why, and supersedes nothing. The reason, or None for a window
    still to watch."""
    if window.ends_at >= now - CLOCK_SKEW_S:
        return None
    late = format_span(now - window.ends_at)
    return (
        f"registered {late} after its window ended (deployed_at"
        f" {rfc3339(window.deployed_at, millis=False)} +"
        f" {format_duration(window.ends_at - window.deployed_at)}): nothing could be"
        " observed, so nothing was judged"
    )


def _list_query(request: web.Request) -> ListQuery:
    """The list's query parameters. An empty `environment`, `state` or `cursor` is that
    filter left out, as the contract spells the route (`?environment=&state=&limit=50
    &cursor=`) and as the list page reads them; an empty `limit` is refused, naming
    it; a repeated parameter is an error, not a silent pick."""
    query = request.query
    errors: list[dict[str, Any]] = []
    values: dict[str, str] = {}
    for name in dict.fromkeys(query):
        given = query.getall(name)
        if name == "":  # `?=x`: a script's `?${NAME}=${VALUE}` with NAME unset
            errors.append({"loc": [name], "msg": "a query parameter with no name; give name=value"})
        elif len(given) > 1:
            errors.append({"loc": [name], "msg": "give this parameter at most once"})
        elif given[0] == "" and name in EMPTY_MEANS_NOT_GIVEN:
            continue
        elif given[0] == "":
            errors.append({"loc": [name], "msg": "must not be empty; leave it out instead"})
        else:
            values[name] = given[0]
    try:
        parsed = ListQuery.model_validate(values)
    except ValidationError as exc:
        errors.extend(
            validation_errors(exc, known_fields=ListQuery.model_fields, field="query parameter")
        )
        raise invalid_fields(errors, whole="query") from None
    if errors:
        raise invalid_fields(errors, whole="query")
    return parsed


async def windows_shown(
    store: Store,
    *,
    environment: str | None,
    state: DeployState | None,
    limit: int,
    cursor: str | None,
    now: float,
) -> tuple[list[DeployWindow], bool]:
    """A page of windows in a state as the API shows it (`shown_state`), and whether more
    follow; `cursor` in the store's form. `watching` is the contract's state, a scheduled
    window's too; `scheduled` (an extension filter) is stored as `watching` and told by
    the clock, so the store's pages of active windows (one per environment: thousands on
    one agent) are read until `limit` scheduled ones are found or none are left; one page
    alone left a scheduled window behind 200 watching ones out, with no `next` to find it
    by. The list route and the list page filter alike."""
    if state == "scheduled":
        wanted: list[DeployWindow] = []
        while True:
            page = await store.list_windows(
                environment=environment, state="watching", limit=LIST_LIMIT_MAX, cursor=cursor
            )
            wanted += [w for w in page.items if shown_state(w, now) == state]
            if len(wanted) > limit or page.next_cursor is None:
                return wanted[:limit], len(wanted) > limit
            cursor = page.next_cursor
    page = await store.list_windows(
        environment=environment,
        state=state,  # not `scheduled`: handled above
        limit=limit,
        cursor=cursor,
    )
    return page.items, page.next_cursor is not None


async def list_deploys(request: web.Request) -> web.Response:
    store = request.config_dict[STORE]
    query = _list_query(request)
    now = _now(request)
    cursor = encode_cursor(*decode_list_cursor(query.cursor)) if query.cursor else None
    windows, more = await windows_shown(
        store,
        environment=query.environment,
        state=query.state,
        limit=query.limit,
        cursor=cursor,
        now=now,
    )
    if query.environment is not None and not windows:
        # a page past the cursor may be empty for one stored: a typo's is a 404 all the same
        filtered = query.state is not None or query.cursor is not None
        await _seen_environment(request, store, query.environment, filtered=filtered)
    items = [await _render(request, window) for window in windows]
    last = windows[-1] if windows and more else None
    next_cursor = encode_list_cursor(last.created_at, last.id) if last is not None else None
    return _json({"items": items, "next": next_cursor})


def _window_id(request: web.Request) -> str:
    window_id = request.match_info["id"]
    stored = deploy_id_as_stored(window_id)
    if stored is None:
        raise ApiProblem(
            404,
            f"no deploy {window_id[:64]!r}: a deploy id is dep_ and 26 characters of"
            " Crockford's base32 (digits, and letters other than I, L, O and U, in either"
            " case), as its registration answered (`id`, and the end of its `Location`)",
            slug="unknown-deploy",
        )
    return stored


async def get_deploy(request: web.Request) -> web.Response:
    store = request.config_dict[STORE]
    window_id = _window_id(request)
    window = await store.get_window(window_id)
    if window is None:
        raise ApiProblem(404, f"no deploy {window_id}", slug="unknown-deploy")
    return _json(await _render(request, window))


async def cancel_deploy(request: web.Request) -> web.Response:
    store = request.config_dict[STORE]
    window_id = _window_id(request)
    try:
        window = await store.cancel_window(window_id, _now(request))
    except KeyError:
        raise ApiProblem(404, f"no deploy {window_id}", slug="unknown-deploy") from None
    except Conflict as exc:
        raise ApiProblem(409, str(exc), slug="deploy-ended") from None
    _notify(request, None, [window.id])
    _count_ended(request, "cancelled", [window])
    log.info(
        "deploy cancelled",
        extra={"deploy_id": window.id, "environment": window.environment},
    )
    return _json(await _render(request, window))


# --- operations ---------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the configuration is loaded and the store answers (within a bound, so a
    wedged store makes the probe fail rather than hang)."""
    config_ok = request.config_dict.get(SETTINGS) is not None
    store = request.config_dict.get(STORE)
    store_ok = False
    if store is not None:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                store_ok = bool(await store.ping())
        except Exception:  # includes TimeoutError: a wedged store is simply not ready
            store_ok = False
        metrics = request.config_dict.get(METRICS)
        if not store_ok and metrics is not None:
            # said here too, whatever the loops do (one stopped on a bug tells nothing);
            # a ping answered is a read, no word that writes go through (`Metrics.store_up`)
            metrics.store_up.set(0)
    checks = {"config": config_ok, "store": store_ok}
    loops = request.config_dict.get(LOOPS)
    stopped = [what for what, loop in (loops or {}).items() if loop.done()]
    if loops is not None:  # the daemon's (an API mounted alone has none)
        checks["watching"] = not stopped
    if all(checks.values()):
        return _json({"status": "ok", "checks": checks})
    failing = [name for name in ("config", "store") if not checks[name]]
    said = [f"{', '.join(failing)} unavailable"] if failing else []
    if stopped:
        said.append(f"the {', '.join(stopped)} loop stopped (see the log; restart the agent)")
    raise ApiProblem(
        503,
        f"not ready: {'; '.join(said)}",
        slug="not-ready",
        extra={"checks": checks},
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus exposition, negotiated by `Accept` (text or OpenMetrics), `name[]` to
    filter, compressed when the scraper accepts it; a slice at a time (`agent.exposition`)."""
    body, content_type = await request.config_dict[METRICS].exposition.render(
        ",".join(request.headers.getall(hdrs.ACCEPT, [])),
        tuple(request.query.getall("name[]", [])),
    )
    response = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
    response.enable_compression()
    return response


async def openapi_json(request: web.Request) -> web.Response:
    from agent.api.openapi import openapi_document

    return _json(openapi_document())
