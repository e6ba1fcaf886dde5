"""A refused body or hook delivery says what to fix in the request or the configuration
(contract §2 and §7: 4xx problem+json), found by a live audit: the 400s quoted Python's
advice to itself ("use sys.set_int_max_str_digits()", "decode using utf-8-sig",
"maximum recursion depth"), a hook's named only `JSONDecodeError`, a GitHub hook left at
its default form encoding got the same, an agent with no webhook secret answered every
delivery "wrong signature", and a body sent with no Content-Type was said to be
`application/octet-stream`."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from agent.api import create_api_app
from agent.metrics import Metrics
from agent.settings import Settings
from agent.store.sqlite import SqliteStore
from tests.api.harness import AUTH, TOKEN
from tests.app_client import AppClient
from tests.fakes import github as gh
from tests.fakes import vercel as vc

GH_SECRET = "messages-github-secret"
VC_SECRET = "messages-vercel-secret"
PYTHON_WORDS = ("sys.", "utf-8-sig", "recursion", "JSONDecodeError", "ValueError", "decode")
MALFORMED = {
    "truncated": (b'{"environment": ', "line 1 column 17"),
    "bom": (b'\xef\xbb\xbf{"environment": "production"}', "byte order mark"),
    "not-utf8": (b"\xff\xfe{}", "UTF-8"),
    "empty": (b"", "send a JSON object"),
    "nan": (b'{"version": NaN}', "NaN"),
    "huge-int": (b'{"a": 1' + b"0" * 5000 + b"}", "too many digits"),
    "deep-nesting": (b"[" * 30000 + b"]" * 30000, "nested too deeply"),
    "lone-surrogate": (b'{"version": "\\ud800"}', "surrogate"),
}


def settings(*, hooks: bool) -> Settings:
    env = {"base_url": "http://127.0.0.1:9", "window": "10m", "interval": "30s"}
    sources = {
        "vercel": {"project": vc.PROJECT, "target": "production"},
        "github": {"repository": gh.REPOSITORY, "environment": "Production"},
    }
    integrations = {
        "github": {"token": "t", "webhook_secret": GH_SECRET},
        "vercel": {"token": "t", "webhook_secret": VC_SECRET},
    }
    return Settings(
        server={"api_tokens": [TOKEN]},
        integrations=integrations if hooks else {},
        environments={"production": {**env, "sources": sources} if hooks else env},
    )


StartsApp = Callable[..., Awaitable[AppClient]]


@pytest.fixture
def app_client(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]], store: SqliteStore
) -> StartsApp:
    async def start(*, hooks: bool = True) -> AppClient:
        return await aiohttp_client(create_api_app(settings(hooks=hooks), store, Metrics()))

    return start


async def problem(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    detail: str = (await response.json())["detail"]
    return detail


def vercel_headers(body: bytes) -> dict[str, str]:
    signature = hmac.new(VC_SECRET.encode(), body, hashlib.sha1).hexdigest()
    return {"Content-Type": "application/json", "x-vercel-signature": signature}


@pytest.mark.parametrize(("raw", "says"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_body_says_what_is_wrong_in_it_on_the_api_and_the_hooks(
    app_client: StartsApp, store: SqliteStore, raw: bytes, says: str
) -> None:
    client = await app_client()
    api = await client.post(
        "/v1/deploys", data=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    hook = await client.post("/v1/hooks/vercel", data=raw, headers=vercel_headers(raw))
    for detail in (await problem(api, 400), await problem(hook, 400)):
        assert detail.startswith("malformed JSON: ") and says in detail, detail
        assert not any(word in detail for word in PYTHON_WORDS), detail
    assert (await store.list_windows()).items == []


async def test_a_body_sent_without_a_content_type_is_said_to_have_none(
    app_client: StartsApp,
) -> None:
    client = await app_client()
    response = await client.post(
        "/v1/deploys",
        data=b'{"environment": "production", "version": "v1"}',
        headers=AUTH,
        skip_auto_headers=["Content-Type"],
    )
    assert (await problem(response, 415)).endswith("(got none)")
    response = await client.post(
        "/v1/deploys", data=b"{}", headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert (await problem(response, 415)).endswith("(got text/plain)")
    # not a media type at all: aiohttp reads it as application/octet-stream, which the
    # client never sent; said as given
    response = await client.post(
        "/v1/deploys", data=b"{}", headers={**AUTH, "Content-Type": "json"}
    )
    assert (await problem(response, 415)).endswith("(got 'json', not a media type)")


async def test_a_form_encoded_github_delivery_is_told_to_send_json(
    app_client: StartsApp, store: SqliteStore
) -> None:
    """GitHub's default content type for a new webhook is form-encoded (`payload=…`)."""
    client = await app_client()
    body = b"payload=" + gh.deployment_status()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "d-form",
        "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
    }
    response = await client.post("/v1/hooks/github", data=body, headers=headers)
    assert "set the webhook's content type to application/json" in await problem(response, 400)
    unsigned = {**headers, "X-Hub-Signature-256": gh.signature("wrong", body)}
    response = await client.post("/v1/hooks/github", data=body, headers=unsigned)
    await problem(response, 401)  # the signature first: an unsigned request learns nothing
    assert (await store.list_windows()).items == []


@pytest.mark.parametrize("provider", ["vercel", "github"])
async def test_a_hook_the_agent_has_no_secret_for_names_the_missing_setting(
    app_client: StartsApp, store: SqliteStore, provider: str
) -> None:
    body = vc.event() if provider == "vercel" else gh.deployment_status()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "deployment_status",
        "x-vercel-signature": vc.signature(VC_SECRET, body),
        "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
    }
    without = await (await app_client(hooks=False)).post(
        f"/v1/hooks/{provider}", data=body, headers=headers
    )
    detail = await problem(without, 401)
    assert f"integrations.{provider}.webhook_secret is not set on this agent" in detail, detail
    wrong = {**headers, "x-vercel-signature": "0" * 40, "X-Hub-Signature-256": "sha256=00"}
    configured = await (await app_client()).post(f"/v1/hooks/{provider}", data=body, headers=wrong)
    assert "webhook_secret" not in await problem(configured, 401)  # set: only "wrong"
    assert (await store.list_windows()).items == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"a": 1}', "type must be a non-empty string"),
        (b'{"type": "deployment.succeeded", "id": 7}', "id must be a non-empty string"),
        (b'{"type": "deployment.succeeded", "id": "e", "payload": []}', "payload must be"),
    ],
)
async def test_a_signed_body_that_is_not_a_vercel_event_names_its_field(
    app_client: StartsApp, body: bytes, says: str
) -> None:
    """It said `the body.type must be …`, a path no body has."""
    client = await app_client()
    response = await client.post("/v1/hooks/vercel", data=body, headers=vercel_headers(body))
    assert (await problem(response, 400)).startswith(says)


@pytest.mark.parametrize(
    ("deployment_id", "label"), [(None, None), (42, "42"), ("42", "42"), ("x", "400")]
)
async def test_a_deployment_status_with_what_the_contract_names_opens_a_window(
    app_client: StartsApp, store: SqliteStore, deployment_id: Any, label: str | None
) -> None:
    """The contract opens a window from `deployment_status.state`, `deployment.sha`,
    `deployment.environment` and `repository.full_name`; a delivery without
    `deployment.id` (a relay's, a test's) was a 400 "deployment.id must be an integer".
    Without one the window opens and no status can be posted; a numeric string is read
    as the number it says; anything else is still a 400."""
    client = await app_client()
    deployment: dict[str, Any] = {"sha": "9fceb02", "environment": "Production"}
    if deployment_id is not None:
        deployment["id"] = deployment_id
    document = {
        "deployment_status": {"state": "success"},
        "deployment": deployment,
        "repository": {"full_name": gh.REPOSITORY},
    }
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": f"d-minimal-{deployment_id}",
        "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
    }
    response = await client.post("/v1/hooks/github", data=body, headers=headers)
    if label == "400":
        assert "deployment.id" in await problem(response, 400)
        return
    assert response.status == 202, await response.text()
    deploy = (await response.json())["deploy"]
    assert deploy["version"] == "9fceb02"
    assert deploy["labels"].get("github.deployment") == label


@pytest.mark.parametrize("provider", ["vercel", "github"])
@pytest.mark.parametrize("order", ["wrong-first", "right-first", "both-right", "folded"])
async def test_a_delivery_with_more_than_one_signature_is_refused_whatever_their_order(
    app_client: StartsApp, store: SqliteStore, provider: str, order: str
) -> None:
    """A delivery carrying its signature header twice, one right and one wrong, was taken
    or refused by the headers' order (the first counted): a provider signs a delivery
    once, so any more is 401, whichever came first, and nothing is stored."""
    body = vc.event() if provider == "vercel" else gh.deployment_status()
    if provider == "vercel":
        name, right, wrong = "x-vercel-signature", vc.signature(VC_SECRET, body), "0" * 40
    else:
        name, right = "X-Hub-Signature-256", gh.signature(GH_SECRET, body)
        wrong = gh.signature("wrong", body)
    values = {
        "wrong-first": [wrong, right],
        "right-first": [right, wrong],
        "both-right": [right, right],
        "folded": [f"{right}, {right}"],  # a proxy that joins repeated headers
    }[order]
    headers = CIMultiDict(
        [
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "deployment_status"),
            ("X-GitHub-Delivery", "d-twice"),
            *((name, value) for value in values),
        ]
    )
    client = await app_client()
    response = await client.post(f"/v1/hooks/{provider}", data=body, headers=headers)
    assert f"{name} was sent 2 times" in await problem(response, 401)
    assert (await store.list_windows()).items == []
    once = {**{k: v for k, v in headers.items() if k != name}, name: right}
    response = await client.post(f"/v1/hooks/{provider}", data=body, headers=once)
    assert response.status == 202, await response.text()


@pytest.mark.parametrize("provider", ["vercel", "github"])
async def test_a_signature_written_in_upper_case_hex_is_the_same_signature(
    app_client: StartsApp, store: SqliteStore, provider: str
) -> None:
    """A hex HMAC printed upper case (a sender's digest library) was refused 401, though
    it is the same signature; a wrong one in upper case still is."""
    body = vc.event() if provider == "vercel" else gh.deployment_status()
    if provider == "vercel":
        name, right = "x-vercel-signature", vc.signature(VC_SECRET, body)
    else:
        name, right = "X-Hub-Signature-256", gh.signature(GH_SECRET, body)
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "d-upper",
    }
    client = await app_client()
    wrong = right[:-4] + ("0000" if not right.endswith("0000") else "1111")
    response = await client.post(
        f"/v1/hooks/{provider}", data=body, headers={**headers, name: wrong.upper()}
    )
    await problem(response, 401)
    assert (await store.list_windows()).items == []
    response = await client.post(
        f"/v1/hooks/{provider}", data=body, headers={**headers, name: right.upper()}
    )
    assert response.status == 202, await response.text()


@pytest.mark.parametrize("configured", ["Production", "PRODUCTION", "production"])
async def test_a_vercel_target_written_capitalised_still_maps_its_events(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]],
    store: SqliteStore,
    configured: str,
) -> None:
    """Vercel's events say `"target": "production"`; `sources.vercel.target: Production`
    (written as GitHub's environment beside it is) matched none, and every deploy of the
    environment was answered 200 ignored, watched by nobody. Compared case-insensitively,
    as `sources.github.environment` is."""
    config = Settings(
        server={"api_tokens": [TOKEN]},
        integrations={"vercel": {"token": "t", "webhook_secret": VC_SECRET}},
        environments={
            "production": {
                "base_url": "http://127.0.0.1:9",
                "sources": {"vercel": {"project": vc.PROJECT, "target": configured}},
            }
        },
    )
    client = await aiohttp_client(create_api_app(config, store, Metrics()))
    body = vc.event(target="production")
    response = await client.post("/v1/hooks/vercel", data=body, headers=vercel_headers(body))
    assert response.status == 202, await response.text()
    body = vc.event(event_id="evt_preview", deployment="dpl_p", target=None)
    response = await client.post("/v1/hooks/vercel", data=body, headers=vercel_headers(body))
    assert (response.status, await response.json()) == (
        200,
        {"ignored": f"project {vc.PROJECT} target 'preview' is not mapped to an environment"},
    )


async def test_each_vercel_target_the_contract_names_maps_its_events(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]], store: SqliteStore
) -> None:
    """Contract §7: `target: production | preview | a custom environment's name`, and the
    version is `meta.githubCommitSha` when present, else the deployment id. Vercel says a
    preview with `"target": null` (the key may be left out) and a custom environment by
    its name; a deployment from the CLI carries no git metadata."""
    env = {"base_url": "http://127.0.0.1:9"}
    config = Settings(
        server={"api_tokens": [TOKEN]},
        integrations={"vercel": {"token": "t", "webhook_secret": VC_SECRET}},
        environments={
            name: {**env, "sources": {"vercel": {"project": vc.PROJECT, "target": target}}}
            for name, target in [("prod", "production"), ("pr", "preview"), ("qa", "staging")]
        },
    )
    client = await aiohttp_client(create_api_app(config, store, Metrics()))
    sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"
    preview = json.loads(vc.event(event_id="e3", deployment="dpl_pr2", target=None, sha=None))
    del preview["payload"]["target"], preview["payload"]["deployment"]["meta"]
    sent = [
        (vc.event(event_id="e1", deployment="dpl_prod", sha=sha), "prod", sha),
        (vc.event(event_id="e2", deployment="dpl_pr1", target=None), "pr", sha),
        (json.dumps(preview).encode(), "pr", "dpl_pr2"),
        (vc.event(event_id="e4", deployment="dpl_qa", target="staging", sha=None), "qa", "dpl_qa"),
    ]
    for body, environment, version in sent:
        response = await client.post("/v1/hooks/vercel", data=body, headers=vercel_headers(body))
        assert response.status == 202, await response.text()
        deploy = (await response.json())["deploy"]
        assert (deploy["environment"], deploy["version"]) == (environment, version), deploy
        assert (
            deploy["labels"]["vercel.deployment"] == json.loads(body)["payload"]["deployment"]["id"]
        )


@pytest.mark.parametrize("provider", ["vercel", "github"])
async def test_a_hook_url_with_a_trailing_slash_is_the_same_hook(
    app_client: StartsApp, store: SqliteStore, provider: str
) -> None:
    """`/v1/hooks/vercel/`, as an operator pastes it into the provider's form, answered
    401 "needs Bearer" (the rule for unknown /v1 routes), read as a signature problem;
    the provider follows no redirect. It is served: signed, a window; unsigned, the
    hook's own 401 naming the signature."""
    client = await app_client()
    body = vc.event() if provider == "vercel" else gh.deployment_status()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "d-slash",
        "x-vercel-signature": vc.signature(VC_SECRET, body),
        "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
    }
    wrong = {**headers, "x-vercel-signature": "0" * 40, "X-Hub-Signature-256": "sha256=00"}
    refused = await client.post(f"/v1/hooks/{provider}/", data=body, headers=wrong)
    assert "signature" in (await problem(refused, 401)).lower()
    assert "Bearer" not in refused.headers.get("WWW-Authenticate", "")
    response = await client.post(f"/v1/hooks/{provider}/", data=body, headers=headers)
    assert response.status == 202, await response.text()
    assert len((await store.list_windows()).items) == 1
    again = await client.post(f"/v1/hooks/{provider}", data=body, headers=headers)
    assert again.status == 202  # the same delivery without the slash: a redelivery
    assert len((await store.list_windows()).items) == 1
    wrong_method = await client.get(f"/v1/hooks/{provider}/")
    assert wrong_method.status == 405


@pytest.mark.parametrize("provider", ["vercel", "github"])
async def test_an_event_url_longer_than_a_label_is_not_kept_cut_short(
    app_client: StartsApp, provider: str
) -> None:
    """A label holds 256 characters: an event's URL longer than that was kept cut at 256,
    a URL of nothing, which each GitHub status then posted as the deployment's
    `environment_url` (its "View deployment" link) and `use_environment_url` probed (a
    window of 404s: a rollback). Not kept, it is neither; a URL that fits is kept whole."""
    client = await app_client()
    long_url = "https://web-git-" + "a" * 300 + ".vercel.app"
    short_url = "https://web-git-main.vercel.app"
    for n, url in enumerate((long_url, short_url)):
        if provider == "vercel":
            document = json.loads(vc.event(event_id=f"evt_url_{n}", deployment=f"dpl_url{n}"))
            document["payload"]["deployment"]["url"] = url.removeprefix("https://")
            body = json.dumps(document).encode()
            headers = {"x-vercel-signature": vc.signature(VC_SECRET, body)}
            label = "vercel.url"
        else:
            document = json.loads(gh.deployment_status(deployment_id=100 + n))
            document["deployment_status"]["environment_url"] = url
            body = json.dumps(document).encode()
            headers = {
                "X-GitHub-Event": "deployment_status",
                "X-GitHub-Delivery": f"d-url-{n}",
                "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
            }
            label = "github.environment_url"
        response = await client.post(
            f"/v1/hooks/{provider}",
            data=body,
            headers={"Content-Type": "application/json", **headers},
        )
        assert response.status == 202, await response.text()
        kept = (await response.json())["deploy"]["labels"].get(label)
        if url == long_url:
            assert kept is None
        else:
            assert kept == (url if provider == "github" else url.removeprefix("https://"))


@pytest.mark.parametrize(
    ("provider", "event_field"),
    [
        ("github", "deployment.sha"),
        ("vercel", "payload.deployment.meta.githubCommitSha"),
        ("vercel-no-sha", "payload.deployment.id"),
    ],
)
async def test_a_signed_event_whose_values_cannot_make_a_window_names_the_event_field(
    app_client: StartsApp, store: SqliteStore, provider: str, event_field: str
) -> None:
    """A signed event whose commit (or Vercel deployment id, the version without one) is
    no version the API takes (longer than 128 characters) was a 400 reading `the event
    cannot open a window: ('version',): String should have at most 128 characters;
    ('commit',): …`: Python's tuples, and the window's fields where the sender knows only
    the event's. It names the event's field, once, and what the window needs of it."""
    client = await app_client()
    long = "f" * 200
    if provider == "github":
        body = gh.deployment_status(sha=long)
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": "d-long-sha",
            "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
        }
    elif provider == "vercel":
        body = vc.event(event_id="evt_long_sha", sha=long)
        headers = vercel_headers(body)
    else:
        body = vc.event(event_id="evt_long_id", deployment="dpl_" + long, sha=None)
        headers = vercel_headers(body)
    path = "/v1/hooks/" + provider.removesuffix("-no-sha")
    detail = await problem(await client.post(path, data=body, headers=headers), 400)
    assert detail.startswith(f"the event cannot open a window: {event_field} ("), detail
    assert "at most 128 characters" in detail, detail
    assert "(" + "'" not in detail and detail.count(event_field) == 1, detail
    assert (await store.list_windows()).items == []
