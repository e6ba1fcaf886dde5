"""The inbound hooks (contract §7) under garbled bodies and headers: never a 5xx, and
nothing stored from a request that fails its signature.

Hypothesis (derandomised: the same examples on every run) drives a real server
(aiohttp on a SqliteStore in memory, a fresh one for every example) through its test
client. Three kinds of input per hook:
anything unsigned (random bodies and headers, wrong or truncated signatures), signed
garbage (valid signatures over bodies that are not the provider's JSON), and signed
mutations of real events (fields removed, retyped or replaced).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.api import create_api_app
from agent.settings import Settings
from tests.api.harness import LoopApi
from tests.fakes import github as gh
from tests.fakes import vercel as vc

GH_SECRET = "fuzz-github-secret"
VC_SECRET = "fuzz-vercel-secret"
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fuzz_settings() -> Settings:
    env = {"base_url": "http://127.0.0.1:9", "window": "10m", "interval": "30s"}
    return Settings(
        server={"api_tokens": ["fuzz-token-0123456789"]},
        integrations={
            "github": {"token": "t", "webhook_secret": GH_SECRET},
            "vercel": {"token": "t", "webhook_secret": VC_SECRET},
        },
        environments={
            "production": {
                **env,
                "sources": {
                    "vercel": {"project": vc.PROJECT, "target": "production"},
                    "github": {"repository": gh.REPOSITORY, "environment": "Production"},
                },
            }
        },
    )


class HookApi(LoopApi):
    """The hooks' app on a store of its own in memory: a fresh, empty one for every
    example, as a file was, without creating that file (its WAL, migrations and reader
    connection, each change synced to disk): 85 of the 135 ms an example of signed garbage
    took, most of it waiting on the disk."""

    def __init__(self) -> None:
        super().__init__(
            Path(":memory:"),
            lambda store, metrics: create_api_app(fuzz_settings(), store, metrics=metrics),
        )

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        return self.request("POST", path, data=body, headers=headers)

    def windows(self) -> int:
        return len(self.run(self.store.list_windows(limit=200)).items)


@contextmanager
def hook_api() -> Iterator[HookApi]:
    api = HookApi()
    try:
        yield api
        assert api.five_hundreds() == 0
    finally:
        api.close()


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
bodies = st.one_of(
    st.binary(max_size=400),
    st.sampled_from([vc.event(), gh.deployment_status(), b"", b"{}", b"null", b"[]"]),
    st.builds(
        lambda b, n: b[:n],
        st.sampled_from([vc.event(), gh.deployment_status()]),
        st.integers(0, 400),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _mutate(document: dict[str, Any], path: list[str], value: Any, drop: bool) -> bytes:
    node: Any = document
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        if drop:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return json.dumps(document).encode()


VERCEL_PATHS = [
    ["type"],
    ["id"],
    ["payload"],
    ["payload", "deployment"],
    ["payload", "deployment", "id"],
    ["payload", "deployment", "meta"],
    ["payload", "deployment", "meta", "githubCommitSha"],
    ["payload", "target"],
    ["payload", "project"],
    ["payload", "project", "id"],
]
GITHUB_PATHS = [
    ["deployment_status"],
    ["deployment_status", "state"],
    ["deployment"],
    ["deployment", "sha"],
    ["deployment", "id"],
    ["deployment", "environment"],
    ["repository"],
    ["repository", "full_name"],
]


@FUZZ
@given(
    body=bodies,
    signature=st.one_of(st.none(), header_text, st.sampled_from(["", "sha256=", "0" * 40])),
    wrong_secret=st.booleans(),
    event=st.one_of(st.none(), header_text, st.just("deployment_status")),
    delivery=st.one_of(st.none(), header_text),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/x-www-form-urlencoded"]
    ),
)
def test_unsigned_input_is_never_a_5xx_and_stores_nothing(
    body: bytes,
    signature: str | None,
    wrong_secret: bool,
    event: str | None,
    delivery: str | None,
    content_type: str,
) -> None:
    with hook_api() as api:
        for path, header, signer in (
            ("/v1/hooks/vercel", "x-vercel-signature", vc.signature),
            ("/v1/hooks/github", "X-Hub-Signature-256", gh.signature),
        ):
            headers = {"Content-Type": content_type} if content_type else {}
            if wrong_secret:
                headers[header] = signer("not-the-secret", body)
            elif signature is not None:
                headers[header] = signature
            if event is not None:
                headers["X-GitHub-Event"] = event
            if delivery is not None:
                headers["X-GitHub-Delivery"] = delivery
            assert api.post(path, body, headers) == 401
        assert api.windows() == 0


@FUZZ
@given(
    body=bodies,
    event=st.one_of(
        header_text, st.sampled_from(["deployment_status", "deployment_protection_rule"])
    ),
    delivery=st.one_of(st.just(""), header_text),
)
def test_signed_garbage_is_never_a_5xx(body: bytes, event: str, delivery: str) -> None:
    with hook_api() as api:
        status = api.post(
            "/v1/hooks/vercel", body, {"x-vercel-signature": vc.signature(VC_SECRET, body)}
        )
        assert status in (200, 202, 400), status
        headers = {
            "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
        }
        assert api.post("/v1/hooks/github", body, headers) in (200, 202, 400)


@FUZZ
@given(
    vercel_path=st.sampled_from(VERCEL_PATHS),
    github_path=st.sampled_from(GITHUB_PATHS),
    value=json_values,
    drop=st.booleans(),
)
def test_signed_mutated_events_are_never_a_5xx(
    vercel_path: list[str], github_path: list[str], value: Any, drop: bool
) -> None:
    with hook_api() as api:
        body = _mutate(json.loads(vc.event()), vercel_path, value, drop)
        status = api.post(
            "/v1/hooks/vercel", body, {"x-vercel-signature": vc.signature(VC_SECRET, body)}
        )
        assert status in (200, 202, 400), status
        body = _mutate(json.loads(gh.deployment_status()), github_path, value, drop)
        headers = {
            "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": "fuzz-1",
        }
        assert api.post("/v1/hooks/github", body, headers) in (200, 202, 400)


def test_a_valid_signed_event_opens_one_window_however_often_it_is_delivered() -> None:
    with hook_api() as api:
        body = vc.event()
        headers = {"x-vercel-signature": vc.signature(VC_SECRET, body)}
        assert [api.post("/v1/hooks/vercel", body, headers) for _ in range(3)] == [202] * 3
        # another commit: GitHub's event of the same one is that deploy reported again
        # (Vercel's GitHub integration), which joins its window
        body = gh.deployment_status(sha="b" * 40)
        headers = {
            "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": "same-guid",
        }
        assert [api.post("/v1/hooks/github", body, headers) for _ in range(3)] == [202] * 3
        assert api.windows() == 2


def test_a_github_delivery_without_its_guid_opens_one_window_keyed_by_its_body() -> None:
    """GitHub always sends `X-GitHub-Delivery`; a sender that does not (a script, a
    proxy that drops it, a test) had a signed, valid `deployment_status` refused with a
    400. Its body then keys the delivery: the same body again is a redelivery (the first
    202, one window), another body another event."""
    with hook_api() as api:
        body = gh.deployment_status()
        headers = {
            "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
            "X-GitHub-Event": "deployment_status",
        }
        assert [api.post("/v1/hooks/github", body, headers) for _ in range(2)] == [202, 202]
        assert api.windows() == 1
        # another deployment: another body of the one still watched would join its window
        other = gh.deployment_status(sha="a" * 40, deployment_id=gh.DEPLOYMENT_ID + 1)
        headers["X-Hub-Signature-256"] = gh.signature(GH_SECRET, other)
        headers["X-GitHub-Delivery"] = ""
        assert api.post("/v1/hooks/github", other, headers) == 202
        assert api.windows() == 2


def test_a_github_event_replayed_under_a_new_guid_opens_no_second_window() -> None:
    """GitHub signs the body, not `X-GitHub-Delivery`: a captured `success` resent under
    a fresh GUID passed as a new event, and once its window had ended opened another on
    the old sha (superseding whatever was watched). The signed body keys it: the same
    status is one event, however its GUID reads; another status of the deployment (a
    re-run) is another event, and so is another deployment under a reused status id (a
    script's fixture), which a key of the status id alone took for a replay."""
    with hook_api() as api:
        body = gh.deployment_status()
        headers = {
            "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": "guid-1",
        }
        assert api.post("/v1/hooks/github", body, headers) == 202
        (window,) = api.run(api.store.list_windows(limit=10)).items
        api.run(api.store.cancel_window(window.id, window.deployed_at + 1))
        assert api.post("/v1/hooks/github", body, {**headers, "X-GitHub-Delivery": "guid-2"}) == 202
        assert api.windows() == 1
        rerun = json.loads(body)
        rerun["deployment_status"]["id"] += 1
        other = json.dumps(rerun).encode()
        headers = {**headers, "X-Hub-Signature-256": gh.signature(GH_SECRET, other)}
        assert api.post("/v1/hooks/github", other, {**headers, "X-GitHub-Delivery": "g3"}) == 202
        assert api.windows() == 2
        reused = json.loads(body)
        reused["deployment"]["sha"] = "f" * 40
        reused["deployment"]["id"] += 1
        third = json.dumps(reused).encode()
        headers = {**headers, "X-Hub-Signature-256": gh.signature(GH_SECRET, third)}
        assert api.post("/v1/hooks/github", third, {**headers, "X-GitHub-Delivery": "g4"}) == 202
        assert api.windows() == 3


def test_a_vercel_event_without_its_id_opens_one_window_keyed_by_its_body() -> None:
    """Vercel's envelope carries the event `id`; one without it (a hand-written
    delivery) was a 400. Its body keys it then, as a GitHub delivery without its GUID;
    an `id` that is there but not a string is still not Vercel's JSON (400)."""
    with hook_api() as api:

        def without_id(**fields: Any) -> bytes:
            document = json.loads(vc.event(**fields))
            del document["id"]
            return json.dumps(document).encode()

        body = without_id()
        headers = {"x-vercel-signature": vc.signature(VC_SECRET, body)}
        assert [api.post("/v1/hooks/vercel", body, headers) for _ in range(2)] == [202, 202]
        assert api.windows() == 1
        other = without_id(deployment="dpl_other", sha="b" * 40)
        assert (
            api.post(
                "/v1/hooks/vercel", other, {"x-vercel-signature": vc.signature(VC_SECRET, other)}
            )
            == 202
        )
        assert api.windows() == 2
        numbered = json.dumps({**json.loads(vc.event()), "id": 7}).encode()
        headers = {"x-vercel-signature": vc.signature(VC_SECRET, numbered)}
        assert api.post("/v1/hooks/vercel", numbered, headers) == 400
