"""The deploy pages (contract §8): `/deploys/{id}`, `/deploys`, the login form and the
page's own assets. Reads the store, renders with Jinja2; never writes a window.

Jinja2 with autoescape on, rather than `html.escape` by hand: every value a deploy
brings (labels, versions, check messages) is escaped unless a template says
otherwise, so safety does not depend on remembering one call per field.
Every response forbids loading anything from another origin (CSP), caching, and
sending the page's URL (which may carry a view token) as a referrer.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlencode

from aiohttp import web
from aiohttp.helpers import ETag

from agent.analysis.types import Rule
from agent.api.auth import CHALLENGE, bearer_token, token_matches
from agent.api.middleware import STORE_HEADER, store_said
from agent.api.models import LIST_LIMIT_DEFAULT, shown_state
from agent.api.problems import ApiProblem
from agent.api.routes import windows_shown
from agent.appkeys import SETTINGS, STORE, BrowserPage, UnavailablePage
from agent.records import (
    DEPLOY_STATES,
    DeliveryAttempt,
    DeployState,
    DeployWindow,
    RollbackIntent,
    RoundRecord,
    deploy_id_as_stored,
)
from agent.settings import EnvironmentSettings, ServerSettings, Settings
from agent.store.base import Store
from agent.store.cursor import encode_cursor
from agent.web import assets as static_files
from agent.web.access import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    access,
    session_subject,
    signed_in,
    view_admits,
)
from agent.web.built_views import BUILT_VIEWS, BuiltPage, BuiltViews
from agent.web.compression import accepts_gzip, compressed, deflated, gzip_around
from agent.web.links import as_signed, sign, signing_key
from agent.web.shared_reads import SharedReads
from agent.web.times import iso, request_now
from agent.web.view import (
    alert_result_words,
    as_of,
    delivered_rollback_advice,
    drawn_round,
    failed_rollback_advice,
    rollback_target_words,
    rounds_view,
    settled_rollback_words,
)
from common.durations import format_duration
from common.json_text import parse_json_text
from common.version import __version__
from common.words import counted

if TYPE_CHECKING:
    import jinja2

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@functools.cache
def _templates() -> jinja2.Environment:
    """Built at the first page shown: a daemon nobody opens a page of never loads Jinja2."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("agent.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["version"] = __version__
    env.filters["counted"] = counted
    env.filters["duration"] = lambda seconds: format_duration(round(seconds))
    env.filters["alert_result_words"] = alert_result_words
    env.tests["web_link"] = lambda value: (
        isinstance(value, str) and value.startswith(("https://", "http://"))
    )
    return env


def html(
    request: web.Request,
    template: str,
    status: int = 200,
    *,
    root: str | None = None,
    **context: Any,
) -> web.Response:
    """`template` rendered; its links start with `root`, `server.public_url`'s path (a
    reverse proxy's prefix: `/deploys/static/…` alone would miss the agent there), the
    request's settings' unless given (a page served before the app has them)."""
    return _response(request, _render(request, template, root, context), status)


async def html_off_loop(
    request: web.Request, template: str, status: int = 200, **context: Any
) -> web.Response:
    """`html`, rendered in a thread: a big page's render (0.3 s of CPU) holds the loop
    that times every window's probes no longer than Python's switch interval."""
    render = functools.partial(_render, request, template, None, context)
    return _response(request, await asyncio.to_thread(render), status)


def _render(request: web.Request, template: str, root: str | None, context: dict[str, Any]) -> str:
    if root is None:
        root = request.config_dict[SETTINGS].server.base_path
    context.setdefault("signed_in", False)
    asset = static_files.packaged().url_name  # `page.<digest>.js`: a new one with its page
    return _streamed(_templates().get_template(template), root=root, asset=asset, **context)


def _streamed(template: jinja2.Template, **context: Any) -> str:
    """`template.render(**context)`, its pieces joined a few hundred at a time: `render`
    (and a `StringIO`) holds every piece to the end, and each escaped value is a `Markup`,
    which the collector tracks (the rounds table of 720 rounds of 50 rules has 36,000
    cells): its full passes over them, in the render's thread, held the GIL, so the loop
    that times the probes."""
    done: list[str] = []
    pieces: list[str] = []
    for piece in template.generate(**context):
        pieces.append(piece)
        if len(pieces) >= _PIECES:
            done.append("".join(pieces))  # a plain str: nothing for the collector
            pieces.clear()
    done.append("".join(pieces))
    return "".join(done)


_PIECES = 512


def _response(request: web.Request, body: str, status: int) -> web.Response:
    response = web.Response(
        text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )
    return compressed(request, response)  # no secret in a page: `agent.web.compression`


def _denied(request: web.Request, verdict: str) -> web.Response:
    if verdict == "forbidden":
        # the sign-in form it advises, back to this page without the link's token: signed
        # in, the page opens whatever the token in an old alert's link says
        return html(
            request,
            "login.html",
            403,
            next=_safe_next(request.path),
            error="This link is expired, altered, or for another deploy. Ask for a new"
            " link, or sign in with an API token.",
        )
    # a bearer token the server does not accept (a tool's, a proxy's) is said so, not
    # shown the sign-in form as if none had been sent
    refused = "That token is not accepted." if bearer_token(request) is not None else None
    return html(request, "login.html", 401, next=request.path_qs, error=refused)


def unavailable_page(server: ServerSettings) -> UnavailablePage:
    """The page for a deploy page's path while the store does not answer, or is busy
    (the API's paths get its 503 problem): the on-call engineer who opens a link from an
    alert during a database restart reads why, and the page loads itself again shortly,
    where the tab showed the API's JSON. A busy store (PostgreSQL up, refusing one read for
    now: a lock held past `lock_timeout`, a deadlock) is said busy: "does not answer" sent
    the engineer to a database that answered. `Postflight-Store` says which to the page's
    script, whose fetch of the live part gets this page too."""

    def page(
        request: web.Request, retry_after_s: int, *, busy: bool = False
    ) -> web.Response | None:
        path = request.path
        if not server.ui or not (
            path in ("/deploys", "/login", "/logout") or path.startswith("/deploys/")
        ):
            return None
        refresh_s = max(retry_after_s, 5)
        if busy:
            title = "Busy for a moment"
            message = (
                "Postflight's store is busy just now: the database answers, but refused this"
                " read for now (a lock held, a deadlock). This page tries again by itself"
                f" every {refresh_s} s until it goes through."
            )
        else:
            title = "Unavailable for a moment"
            message = (
                "Postflight's store does not answer just now (a database restarting, or"
                " the agent starting). This page loads again by itself once it does."
            )
        response = html(
            request,
            "message.html",
            503,
            title=title,
            message=message,
            refresh_s=refresh_s,
            root=server.base_path,
        )
        response.headers["Retry-After"] = str(retry_after_s)
        response.headers[STORE_HEADER] = store_said(busy)
        return response

    return page


def page_for_browser(server: ServerSettings) -> BrowserPage:
    """The deploy's page for a browser that opened its API object without a token (a
    GitHub deployment status's `log_url`): the page offers sign-in and comes back to it.
    Any query goes along (a `?view=` opens the page). None when the pages are off, for
    any other route, and for a client that does not prefer HTML to JSON."""

    def page(request: web.Request) -> str | None:
        route = request.match_info.route
        if not server.ui or route.name != "get_deploy":
            return None
        if not prefers_html(request.headers.get("Accept", "")):
            return None
        query = f"?{request.query_string}" if request.query_string else ""
        return f"{server.base_path}/deploys/{quote(request.match_info['id'])}{query}"

    return page


def prefers_html(accept: str) -> bool:
    """Whether an `Accept` header ranks text/html above application/json (a browser's
    `text/html,...,*/*;q=0.8` does; none, `*/*` and `application/json` do not), by each
    type's most specific matching range (RFC 9110 section 12.5.1)."""
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media:
            ranges.append((media.lower(), quality))

    def quality_of(kind: str) -> float:
        major = kind.split("/")[0]
        for wanted in (kind, f"{major}/*", "*/*"):
            found = [q for media, q in ranges if media == wanted]
            if found:
                return max(found)
        return 0.0

    html_q = quality_of("text/html")
    return html_q > 0 and html_q > quality_of("application/json")


def _ui_on(request: web.Request) -> None:
    if not request.config_dict[SETTINGS].server.ui:
        raise web.HTTPNotFound()


async def home(request: web.Request) -> web.Response:
    """The agent's own address (`listening on http://…` in its log), opened in a browser:
    a redirect (303) to the deploy list, where it was the API's JSON 404. Any other client
    or method, and everyone with the pages off, gets that 404 as before."""
    server = request.config_dict[SETTINGS].server
    browser = prefers_html(request.headers.get("Accept", ""))
    if server.ui and browser and request.method in ("GET", "HEAD"):
        raise web.HTTPSeeOther(location=f"{server.base_path}/deploys", headers=SECURITY_HEADERS)
    raise web.HTTPNotFound()


async def without_slash(request: web.Request) -> web.Response:
    """`/deploys/` and `/deploys/<id>/`, as people type or paste them: a redirect to the
    page, where they were the API's JSON 404 in the browser."""
    _ui_on(request)
    path = request.config_dict[SETTINGS].server.base_path + request.path.rstrip("/")
    query = f"?{request.query_string}" if request.query_string else ""
    raise web.HTTPPermanentRedirect(location=path + query, headers=SECURITY_HEADERS)


@dataclass(frozen=True, slots=True)
class _Stored:
    """What a deploy's page shows, as one read of the store found it."""

    window: DeployWindow
    rollback: RollbackIntent | None
    built: BuiltPage
    """What the window's stored round makes, built and rendered (`BuiltViews`)."""
    attempts: list[DeliveryAttempt]
    alerts: dict[str, str]


_PAGE_READS: SharedReads[_Stored | None] = SharedReads()
"""A deploy's pages fetched at once (every open tab on each live event) share a read."""


def _reading(
    store: Store, window_id: str, settings: Settings, built: BuiltViews
) -> Callable[[], Awaitable[_Stored | None]]:
    async def read() -> _Stored | None:
        window = await store.get_window(window_id)
        if window is None:
            return None
        rollback = await store.get_rollback(window_id)
        env = settings.environments.get(window.environment)
        configured = env.rules if env is not None else None
        page = built.get(window, configured)
        if page is None:  # a round stored since: the rounds since read, the charts drawn
            earlier, pooled = built.earlier(window)
            # each round slimmed to what the page draws as the store parses it (in its
            # thread, counting on `pooled`): the first page of a long window held every
            # round's every sample at once, and the collector's full passes over them held
            # the loop 0.2-0.4 s
            drawn = functools.partial(drawn_round, pooled=pooled)
            after = earlier[-1].number if earlier else 0
            new = await store.rounds(window_id, after=after, each=drawn)
            rules = [r.to_rule() for r in configured or ()]
            build = functools.partial(_built_page, window, earlier, new, rules)
            fresh, kept = await asyncio.to_thread(build)
            built.put(window, configured, fresh, kept, pooled)
            page = fresh
        return _Stored(
            window,
            rollback,
            page,
            await store.deliveries(window_id) if rollback is not None else [],
            await store.alert_events(window_id),
        )

    return read


def _built_page(
    window: DeployWindow,
    earlier: list[RoundRecord],
    new: list[RoundRecord],
    rules: list[Rule],
) -> tuple[BuiltPage, list[RoundRecord]]:
    """CPU only, run in a thread: `rounds_view` and its sections' HTML, from the rounds
    kept before and those read since (as drawn: `drawn_round`); and the rounds as kept
    for the next build."""
    import markupsafe

    kept = earlier + new
    view = rounds_view(window, kept, rules=rules)
    part = _streamed(_templates().get_template("rounds.html"), d=view)
    # its charts and rounds are in `part` now: kept, they were 13 MB of a page's 16
    drawn = [replace(rule, charts=[], per_round={}) for rule in view.rules]
    page = BuiltPage(replace(view, rules=drawn, rounds=[]), markupsafe.Markup(part), deflated(part))
    return page, kept


async def deploy_page(request: web.Request) -> web.Response:
    _ui_on(request)
    server = request.config_dict[SETTINGS].server
    return _session_from_bearer(request, server, request_now(request), await _deploy_page(request))


@dataclass(frozen=True, slots=True)
class _RollbackSaid:
    advice: str | None = None
    """What to do (`as_of`'s `rollback_advice`)."""
    alert: str | None = None
    """Its alert's title words (`as_of`'s `rollback_alert`)."""


async def _rollback_said(
    store: Store,
    window: DeployWindow,
    rollback: RollbackIntent | None,
    attempts: Sequence[DeliveryAttempt],
    env: EnvironmentSettings | None,
    now: float,
) -> _RollbackSaid:
    """What its settled rollback's alert said, in the same words: a FAILED one's advice
    (roll back by hand, or not: given up for a newer deploy, one deployed since it
    failed, or its previous version deployed since: done another way), a delivered one's
    when a newer deploy took effect while it was out (check what serves), and their
    titles. The newer deploy its sender met is the one that took effect by its end
    (`finished_at`), as the alert named; the page named the newest at the fetch, and said
    a rollback refused before it was given up for it."""
    if rollback is None or rollback.state not in ("failed", "delivered"):
        return _RollbackSaid()
    configured = env.rollback if env is not None else None
    target = configured.target if configured is not None else "webhook"
    ended = rollback.finished_at if rollback.finished_at is not None else now  # its sender's clock
    met = await store.newer_deploy(window.id, ended)
    alert = settled_rollback_words(target, rollback, met, attempts)
    if rollback.state == "delivered":
        return _RollbackSaid(delivered_rollback_advice(target, met, window.previous_version), alert)
    given_up_for = met if rollback.given_up_for(met) else None
    since = None
    if given_up_for is None:  # a deploy of previous_version: the rollback done another way
        since = await store.newer_deploy(window.id, now, counting_previous=True)
    advice = failed_rollback_advice(
        target,
        given_up_for,
        unconfigured=configured is None,
        attempts=attempts,
        deployed_since=since,
        back_to=window.previous_version,
    )
    return _RollbackSaid(advice, alert)


async def _deploy_page(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    store = request.config_dict[STORE]
    asked = request.match_info["id"]
    known = deploy_id_as_stored(asked)  # `dep_01jd…` is `dep_01JD…`: a ULID's case is no part of it
    window_id = asked if known is None else known
    now = request_now(request)
    verdict = access(request, settings.server, window_id, now)
    if verdict != "ok":
        return _denied(request, verdict)
    stored = None
    if known is not None:
        reading = _reading(store, window_id, settings, request.config_dict[BUILT_VIEWS])
        stored = await _PAGE_READS.read((store, window_id), reading)
    if stored is None:
        return html(
            request, "message.html", 404, title="Not found", message=f"No deploy {window_id}."
        )
    window = stored.window
    env = settings.environments.get(window.environment)
    said = await _rollback_said(store, window, stored.rollback, stored.attempts, env, now)
    view = as_of(
        stored.built.view,
        window,
        rollback=stored.rollback,
        attempts=stored.attempts,
        alerts=stored.alerts,
        now=now,
        rollback_target=(
            rollback_target_words(
                env.rollback.target,
                window.labels,
                env.rollback.github.workflow if env.rollback.github else None,
            )
            if env is not None and env.rollback is not None
            else None
        ),
        rollback_advice=said.advice,
        rollback_alert=said.alert,
    )
    view_token = request.query.get("view")
    view_token = None if view_token is None else as_signed(view_token)
    if not view_admits(settings.server, view_token, window_id, now):
        view_token = None  # let in by a session or a bearer token: the whole UI is theirs
    query = f"?{urlencode({'view': view_token})}" if view_token else ""
    root = settings.server.base_path
    context: dict[str, Any] = {
        "d": view,
        "rounds_part": stored.built.rounds_html,
        "iso": iso,
        "events_url": f"{root}/v1/deploys/{quote(window_id)}/events{query}",
        "list_url": None if view_token else f"{root}/deploys",
        "signed_in": signed_in(request, settings.server, now),
    }
    # 2.6 MB of HTML for a 720-round window of 50 rules: rendered off the loop
    template = "live.html" if request.query.get("fragment") else "deploy.html"
    if stored.built.deflated is None or not accepts_gzip(
        request.headers.get("Accept-Encoding", "")
    ):
        return await html_off_loop(request, template, **context)
    return await _spliced_off_loop(request, template, stored.built, context)


async def _spliced_off_loop(
    request: web.Request, template: str, built: BuiltPage, context: dict[str, Any]
) -> web.Response:
    """The deploy page gzipped around its rounds part as deflated once per stored round
    (`BuiltPage.deflated`, `gzip_around`), where each tab's fetch on each event gzipped
    all of it again; rendered off the loop as `html_off_loop`."""
    import markupsafe

    assert built.deflated is not None
    part = built.deflated
    marker = markupsafe.Markup(f"<!--{secrets.token_hex(16)}-->")  # nowhere else on the page
    render = functools.partial(_render, request, template, None, {**context, "rounds_part": marker})

    def spliced() -> bytes:
        head, found, tail = render().partition(marker)
        if not found:  # a template that lost `rounds_part`: a bug, not a page without it
            raise RuntimeError(f"{template} has no rounds_part")
        return gzip_around(head, part, tail)

    response = web.Response(
        body=await asyncio.to_thread(spliced),
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
    )
    return response


async def deploy_list(request: web.Request) -> web.Response:
    _ui_on(request)
    server = request.config_dict[SETTINGS].server
    return _session_from_bearer(request, server, request_now(request), await _deploy_list(request))


async def _deploy_list(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    store = request.config_dict[STORE]
    now = request_now(request)
    verdict = access(request, settings.server, None, now)
    if verdict != "ok":
        return _denied(request, verdict)
    environment = request.query.get("environment") or None
    state = request.query.get("state") or None  # the form's "all" sends `state=`
    environments = sorted(settings.environments)
    unknown = False
    if environment is not None and environment not in settings.environments:
        # an environment removed from the config keeps its history, as in the API's list;
        # one never seen is an error, never every window under a filter that looks applied
        if (await store.list_windows(environment=environment, limit=1)).items:
            environments = sorted([*environments, environment])
        else:
            unknown = True
    context: dict[str, Any] = {
        "environments": environments,
        "states": DEPLOY_STATES,
        "environment": environment,
        "iso": iso,
        "shown": lambda window: shown_state(window, now),
        "signed_in": signed_in(request, settings.server, now),
    }
    if unknown:
        assert environment is not None
        return html(
            request,
            "list.html",
            400,
            **context | {"environment": None},
            state=state,
            items=[],
            next_url=None,
            error=(
                f"No environment {environment[:64]!r}: choose one of {', '.join(environments)}."
            ),
        )
    if state is not None and state not in DEPLOY_STATES:
        # as the API's list refuses it (422): a 400 naming the states, never every
        # window under a filter that looks applied
        return html(
            request,
            "list.html",
            400,
            **context,
            state=None,
            items=[],
            next_url=None,
            error=f"No state {state[:64]!r}: choose one of {', '.join(DEPLOY_STATES)}.",
        )
    items: list[DeployWindow] = []
    next_url = None
    try:
        items, more = await windows_shown(
            store,
            environment=environment,
            state=cast(DeployState | None, state),
            limit=LIST_LIMIT_DEFAULT,
            cursor=request.query.get("cursor") or None,
            now=now,
        )
    except ValueError:
        more = False
    if more and items:
        params = {k: v for k, v in (("environment", environment), ("state", state)) if v}
        cursor = encode_cursor(items[-1].created_at, items[-1].id)
        next_url = f"{settings.server.base_path}/deploys?" + urlencode({**params, "cursor": cursor})
    return html(
        request, "list.html", **context, state=state, items=items, next_url=next_url, error=None
    )


_PATH_AS_SENT = "/%!$&'()*+,=:@~"
"""What a browser leaves as it is in a URL's path, beside letters and digits (`quote`
keeps `_.-` too); the rest it percent-encodes. `;` ends a cookie attribute: encoded."""

_NEXT = re.compile(r"/[!-~]*")
"""Printable ASCII, no space: a browser drops tabs and newlines from a Location (so
`/<TAB>/other.example` would be `//other.example`), and CR or LF cannot go in a header."""


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never `//other.example` or `https://…`."""
    if not target or not _NEXT.fullmatch(target) or target.startswith("//") or "\\" in target:
        return "/deploys"
    return target


_PAGE = re.compile(r"/deploys(?:/[^/?]+/?)?(?:\?.*)?")
"""The agent's pages a sign-in comes back to: the list, a deploy's page, with a query."""


def _next_on_agent(target: str | None, server: ServerSettings) -> str:
    """`_safe_next`, as a path of the agent's: one that starts with the proxy's prefix
    (the address the browser shows, typed into a sign-in link) loses it, since the
    redirect puts it back; the prefix alone, or with anything but a page, is the list.
    A page of the agent's own that starts like the prefix (`/deploys/…` under a prefix
    `/deploys`) is kept."""
    safe = _safe_next(target)
    prefix = _prefix_as_sent(server)
    if not prefix or _PAGE.fullmatch(safe):
        return safe
    rest = safe.removeprefix(prefix)
    if rest == safe or rest[:1] not in ("", "/", "?"):
        return safe  # not under the prefix (`/postflight-eu/…` is another path)
    return rest if _PAGE.fullmatch(rest) else "/deploys"


async def login_form(request: web.Request) -> web.Response:
    _ui_on(request)
    server = request.config_dict[SETTINGS].server
    return html(
        request, "login.html", next=_next_on_agent(request.query.get("next"), server), error=None
    )


async def login(request: web.Request) -> web.Response:
    _ui_on(request)
    settings = request.config_dict[SETTINGS]
    if _cross_site(request):  # login CSRF: another site's form signing in as it chose
        refused = "Another site asked to sign you in: sign in from this page."
        return _login_refused(request, 403, "/deploys", refused)
    try:
        token, asked = await _login_fields(request)
    except ValueError:  # UnicodeDecodeError: a form in another charset; a broken multipart
        unread = "The form could not be read: send it as UTF-8 (or a JSON object)."
        return _login_refused(request, 400, "/deploys", unread)
    target = _next_on_agent(asked, settings.server)
    if not token or not token_matches(token, settings.server.accepted_tokens()):
        return _login_refused(request, 401, target, "That token is not accepted.")
    # `next` is a path of the agent's; the browser goes there through the proxy's prefix
    location = _prefix_as_sent(settings.server) + target
    response = web.Response(status=303, headers={**SECURITY_HEADERS, "Location": location})
    _set_session(response, settings.server, token, request_now(request))
    return response


def _set_session(
    response: web.StreamResponse, server: ServerSettings, token: str, now: float
) -> None:
    """The session cookie, made from accepted API token `token` (never holding it)."""
    key = signing_key(server)
    response.set_cookie(
        SESSION_COOKIE,
        sign(key, session_subject(key, token), now + SESSION_TTL_S),
        max_age=int(SESSION_TTL_S),
        httponly=True,
        # Lax, not Strict: a deploy page's link followed from chat or a ticket (a
        # navigation from another site) opens it signed in, where a Strict cookie was not
        # sent and the sign-in form came. The cookie admits GETs of pages and their event
        # stream only (the API's writes take a bearer token), and Lax keeps it off other
        # sites' POSTs and frames all the same.
        samesite="Lax",
        secure=server.base_url.startswith("https://"),
        path=_cookie_path(server),
    )


def _session_from_bearer(
    request: web.Request, server: ServerSettings, now: float, response: web.Response
) -> web.Response:
    """Contract §8 opens the pages with "a session cookie set from" an API token and names
    no login route: a page opened with the token as `Authorization: Bearer` sets the
    session too, as `POST /login` does, so a client holding only the token and the
    contract gets the cookie that opens the pages and the event stream (an EventSource
    sends no header). Not again while the request's own session holds."""
    token = bearer_token(request)
    if token is None or signed_in(request, server, now):
        return response
    if token_matches(token, server.accepted_tokens()):
        _set_session(response, server, token, now)
    return response


def _login_refused(request: web.Request, status: int, target: str, why: str) -> web.Response:
    """A refused sign-in: the form again with `why` for a browser; for a client that sent
    JSON or its bearer token, or asks for JSON, `application/problem+json` as the API
    answers (it read the form's HTML page)."""
    accept = request.headers.get("Accept", "")
    client = (
        request.content_type == "application/json"
        or bearer_token(request) is not None
        or "json" in accept.lower()
    )
    if not client or prefers_html(accept):
        return html(request, "login.html", status, next=target, error=why)
    headers = {**SECURITY_HEADERS, **(CHALLENGE if status == 401 else {})}
    return ApiProblem(status, why, headers=headers).response()


async def _login_fields(request: web.Request) -> tuple[str, str]:
    """The API token and the `next` path a sign-in sends: the form's fields, or a JSON
    object's (`{"token": …, "next": …}`), else the request's bearer token and `?next=`.
    A client that is no browser (a script, a test) sent JSON or its bearer token, and
    was refused the token it uses on /v1. ValueError: a body that cannot be read."""
    fields: Any
    if request.content_type == "application/json":
        fields = parse_json_text(await request.read())  # JsonTextError: a ValueError
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
    else:
        fields = await request.post()
    token, asked = fields.get("token"), fields.get("next")
    token = token if isinstance(token, str) else ""
    asked = asked if isinstance(asked, str) else request.query.get("next", "")
    return token or bearer_token(request) or "", asked


def _prefix_as_sent(server: ServerSettings) -> str:
    """`server.base_path` as a browser sends it (`/ops%20eu`, `/%C3%A9t%C3%A9`): the form
    a cookie's path is matched against, and ASCII, as a `Location` header must be (it
    carried `/été` as raw UTF-8 bytes)."""
    return quote(server.base_path, safe=_PATH_AS_SENT)


def _cookie_path(server: ServerSettings) -> str:
    """The proxy's prefix: the host's other applications never get the session. Signing
    out deletes the cookie at the same path (a browser keeps one of another path)."""
    return _prefix_as_sent(server) or "/"


def _cross_site(request: web.Request) -> bool:
    """A browser's request from another site's page (`Sec-Fetch-Site`): a form there
    posting to `/login` or `/logout` acts for the browser's user behind their back. A
    client that is no browser sends no such header, and a browser never lets a page set it."""
    return request.headers.get("Sec-Fetch-Site") == "cross-site"


async def logout_form(request: web.Request) -> web.Response:
    """`GET /logout`, as a browser user types it: a page whose button posts the sign-out
    (signed in), or says there is nothing to sign out of. A GET signs no one out (a link or
    an image on another site would); it answered the API's JSON 405."""
    _ui_on(request)
    server = request.config_dict[SETTINGS].server
    return html(request, "logout.html", signed_in=signed_in(request, server, request_now(request)))


async def logout(request: web.Request) -> web.Response:
    """Sign out: the session cookie deleted, back to the sign-in form. Another site's
    form posting here (`Sec-Fetch-Site: cross-site`) is refused: it would sign the
    browser out behind the engineer's back."""
    _ui_on(request)
    server = request.config_dict[SETTINGS].server
    if _cross_site(request):
        return html(
            request,
            "message.html",
            403,
            title="Not signed out",
            message="Another site asked to sign you out: sign out from Postflight's own page.",
        )
    response = web.Response(
        status=303, headers={**SECURITY_HEADERS, "Location": f"{_prefix_as_sent(server)}/login"}
    )
    response.del_cookie(
        SESSION_COOKIE,
        path=_cookie_path(server),
        secure=server.base_url.startswith("https://"),
        httponly=True,
        samesite="Lax",
    )
    return response


async def asset(request: web.Request) -> web.Response:
    """A page's file: under its content's URL (`page.<digest>.js`, what pages link) cached
    as immutable; under its plain name revalidated on each use (`no-cache`, its ETag);
    another version's digest a 404 (`agent.web.assets`)."""
    _ui_on(request)
    found = static_files.packaged().find(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(headers={"Cache-Control": "no-store"})
    item, versioned = found
    cache = "public, max-age=31536000, immutable" if versioned else "no-cache"
    headers = {
        "Cache-Control": cache,
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    if any(tag.value in (item.etag, "*") for tag in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
        response.etag = item.etag
        return response
    response = web.Response(body=item.body, content_type=item.content_type, headers=headers)
    compressed(request, response)
    # gzipped, its bytes are not the file's: a weak tag (as nginx makes it), the same value
    response.etag = ETag(item.etag, is_weak=response.compression)
    return response
