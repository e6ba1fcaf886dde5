"""POST/GET /v1/deploys, GET /v1/deploys/{id}, POST …/cancel: the happy paths and
their contract-level edge cases (supersede, idempotency, paging, rendering)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from jsonschema import Draft202012Validator

from agent.analysis.types import Verdict
from agent.api.openapi import openapi_document
from agent.metrics import Metrics
from agent.records import DeployWindow, RollbackIntent, decided_verdict
from agent.store.sqlite import SqliteStore
from agent.web.view import verdict_words
from agent.windows.evidence import verdict_to_dict
from common.durations import DURATION_TEXT_PATTERN
from tests.api.conftest import NOW
from tests.api.harness import (
    AUTH,
    OTHER_TOKEN,
    RecordingEvents,
    make_app,
    make_settings,
    rule,
)
from tests.app_client import AppClient
from tests.store.peek import rows, set_rollback
from tests.web.sse import events as sse_events

DEPLOY_KEYS = {
    "id",
    "environment",
    "version",
    "previous_version",
    "commit",
    "labels",
    "state",
    "deployed_at",
    "ends_at",
    "rounds",
    "verdict",
    "rollback",
    "links",
}
FULL_REQUEST = {
    "environment": "production",
    "version": "v2.4.1",
    "previous_version": "v2.4.0",
    "commit": "9fceb02",
    "window": "10m",
    "deployed_at": "2026-11-26T14:00:00Z",
    "labels": {"pipeline": "run-1234"},
}


async def register(client: AppClient, body: dict[str, Any] | None = None, **headers: str) -> Any:
    response = await client.post(
        "/v1/deploys",
        json=body or {"environment": "production", "version": "v1"},
        headers={**AUTH, **headers},
    )
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def test_register_returns_201_location_and_the_deploy_object(
    client: AppClient, events: RecordingEvents
) -> None:
    response = await client.post("/v1/deploys", json=FULL_REQUEST, headers=AUTH)
    assert response.status == 201
    body = await response.json()
    assert set(body) >= DEPLOY_KEYS
    assert body["id"].startswith("dep_") and len(body["id"]) == 30
    assert response.headers["Location"] == f"/v1/deploys/{body['id']}"
    assert body["links"]["self"] == f"/v1/deploys/{body['id']}"
    assert body["links"]["page"].startswith(f"http://127.0.0.1:8787/deploys/{body['id']}?view=")
    assert body["state"] == "watching"
    assert body["deployed_at"] == "2026-11-26T14:00:00Z"
    assert body["ends_at"] == "2026-11-26T14:10:00Z"
    assert body["rounds"] == 0
    assert body["verdict"] is None and body["rollback"] is None
    for key in ("environment", "version", "previous_version", "commit", "labels"):
        assert body[key] == FULL_REQUEST[key]
    assert events.opened == [body["id"]]
    assert events.ended == []


async def test_any_configured_token_is_accepted(client: AppClient) -> None:
    response = await client.post(
        "/v1/deploys",
        json={"environment": "production", "version": "v1"},
        headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
    )
    assert response.status == 201


async def test_window_defaults_to_the_environments_and_deployed_at_to_now(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]],
    store: SqliteStore,
    events: RecordingEvents,
) -> None:
    now = datetime.fromisoformat("2026-11-26T15:00:00+00:00").timestamp()
    client = await aiohttp_client(make_app(store, events, clock=lambda: now))
    body = await register(client, {"environment": "staging", "version": "v9"})
    assert body["deployed_at"] == "2026-11-26T15:00:00Z"
    assert body["ends_at"] == "2026-11-26T15:05:00Z"  # staging: window 5m
    assert body["previous_version"] is None and body["commit"] is None
    assert body["labels"] == {}


async def test_null_labels_are_no_labels_like_the_other_optional_fields_null(
    client: AppClient,
) -> None:
    """A pipeline that writes every optional field, null when it has none, is accepted:
    `labels: null` was a 422 while `previous_version: null` and `commit: null` were not."""
    body = await register(
        client,
        {
            "environment": "production",
            "version": "v1",
            "previous_version": None,
            "commit": None,
            "window": None,
            "deployed_at": None,
            "labels": None,
        },
    )
    assert body["labels"] == {}
    stored = await (await client.get(f"/v1/deploys/{body['id']}", headers=AUTH)).json()
    assert stored["labels"] == {}


def test_the_openapi_document_says_labels_may_be_null() -> None:
    """The document is the validation: a client generated from it may send null."""
    labels = openapi_document()["components"]["schemas"]["DeployRequest"]["properties"]["labels"]
    assert labels["type"] == ["object", "null"]


async def test_times_with_offsets_and_fractions_come_back_in_utc(client: AppClient) -> None:
    body = await register(
        client,
        {
            "environment": "production",
            "version": "v1",
            "window": 90,
            "deployed_at": "2026-11-26T16:00:00.250+02:00",
        },
    )
    assert body["deployed_at"] == "2026-11-26T14:00:00.250Z"
    assert body["ends_at"] == "2026-11-26T14:01:30.250Z"


@pytest.mark.parametrize(
    ("window", "ends_at"),
    [
        ("1h 30m", "2026-11-26T15:30:00Z"),
        ("30S", "2026-11-26T14:00:30Z"),
        ("1H30M", "2026-11-26T15:30:00Z"),
        ("500 s", "2026-11-26T14:08:20Z"),
        ("1e3", "2026-11-26T14:16:40Z"),
    ],
)
async def test_a_window_is_taken_as_the_configuration_takes_a_duration(
    client: AppClient, window: str, ends_at: str
) -> None:
    """`1h 30m` and `30S` validate in the configuration (common.durations): the API
    refused them with a 422, its pattern narrower than the configuration's."""
    body = {**FULL_REQUEST, "window": window, "deployed_at": "2026-11-26T14:00:00Z"}
    response = await client.post("/v1/deploys", json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    assert (await response.json())["ends_at"] == ends_at


def test_the_openapi_window_pattern_is_the_configurations() -> None:
    """One grammar: the document's pattern for `window` is the configuration schema's, and
    its description says the bounds the pattern cannot."""
    window = openapi_document()["components"]["schemas"]["DeployRequest"]["properties"]["window"]
    text, number = (
        next(s for s in window["anyOf"][0]["anyOf"] if s["type"] == kind)
        for kind in ("string", "number")
    )
    assert text["pattern"] == DURATION_TEXT_PATTERN
    assert number == {"type": "number", "exclusiveMinimum": 0, "maximum": 7 * 86400.0}
    for bound in ("more than 0s", "`interval`", "at most 7d"):
        assert bound in window["anyOf"][0]["description"]


async def test_a_new_deploy_supersedes_the_active_window_of_its_environment(
    client: AppClient, events: RecordingEvents
) -> None:
    first = await register(client, {"environment": "production", "version": "v1"})
    other_env = await register(client, {"environment": "staging", "version": "v1"})
    second = await register(client, {"environment": "production", "version": "v2"})

    old = await (await client.get(f"/v1/deploys/{first['id']}", headers=AUTH)).json()
    assert old["state"] == "superseded"
    assert events.ended == [first["id"]]
    assert events.opened == [first["id"], other_env["id"], second["id"]]
    staging = await (await client.get(f"/v1/deploys/{other_env['id']}", headers=AUTH)).json()
    assert staging["state"] == "watching"
    new = await (await client.get(f"/v1/deploys/{second['id']}", headers=AUTH)).json()
    assert new["state"] == "watching"


@pytest.mark.parametrize("ended_by", ["superseded", "cancelled"])
async def test_a_verdict_cut_off_by_a_supersede_or_cancel_is_no_verdict(
    client: AppClient, store: SqliteStore, ended_by: str
) -> None:
    """The watcher stores a round with its verdict, then ends the window: a supersede or
    cancel between the two wins (nothing is fired), and the window ends with no decision.
    It showed `verdict: fail` beside `superseded` and `rollback: null` (seen from outside:
    2 of 15 supersedes timed at the verdict's round)."""
    from agent.records import RoundRecord

    created = await register(client)
    judged: dict[str, Any] = {
        "outcome": "fail",
        "decided_at": None,
        "reason": "probe-errors: 1 > max 0.05",
    }
    judged["rules"] = [rule("probe-errors", "fail", 1.0)]
    assert await store.record_round(RoundRecord(created["id"], 6, 0.0, {}), judged)
    live = await (await client.get(f"/v1/deploys/{created['id']}", headers=AUTH)).json()
    assert (live["state"], live["verdict"]) == ("watching", None)  # not acted on yet
    if ended_by == "superseded":
        await register(client, {"environment": "production", "version": "v2"})
    else:
        cancel = await client.post(f"/v1/deploys/{created['id']}/cancel", headers=AUTH)
        assert (await cancel.json())["verdict"] is None
    body = await (await client.get(f"/v1/deploys/{created['id']}", headers=AUTH)).json()
    assert (body["state"], body["verdict"], body["rollback"]) == (ended_by, None, None)
    assert [r["outcome"] for r in body["progress"]["rules"]] == ["fail"]
    window = await store.get_window(created["id"])
    assert window is not None and window.verdict is not None
    said = verdict_words(window, window.verdict)  # the deploy page's words, as `status`'s
    assert said == ("none", f"{ended_by} before a verdict: probe-errors: 1 > max 0.05")


async def test_get_returns_the_stored_deploy(client: AppClient) -> None:
    created = await register(client, FULL_REQUEST)
    response = await client.get(f"/v1/deploys/{created['id']}", headers=AUTH)
    assert response.status == 200
    assert await response.json() == created


async def test_cancel_ends_the_window_and_tells_the_watcher(
    client: AppClient, events: RecordingEvents
) -> None:
    created = await register(client)
    response = await client.post(f"/v1/deploys/{created['id']}/cancel", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["state"] == "cancelled"
    assert body["id"] == created["id"]
    assert events.ended == [created["id"]]


async def test_cancel_of_an_ended_window_is_409(client: AppClient) -> None:
    created = await register(client)
    assert (await client.post(f"/v1/deploys/{created['id']}/cancel", headers=AUTH)).status == 200
    again = await client.post(f"/v1/deploys/{created['id']}/cancel", headers=AUTH)
    assert again.status == 409
    assert again.content_type == "application/problem+json"
    problem = await again.json()
    assert problem["status"] == 409 and "cancelled" in problem["detail"]


async def test_cancel_of_a_superseded_window_is_409(client: AppClient) -> None:
    first = await register(client)
    await register(client)
    response = await client.post(f"/v1/deploys/{first['id']}/cancel", headers=AUTH)
    assert response.status == 409


# --- idempotency ---------------------------------------------------------------------


async def test_same_idempotency_key_and_body_replays_the_first_response_with_200(
    client: AppClient, store: SqliteStore, events: RecordingEvents
) -> None:
    first = await client.post(
        "/v1/deploys", json=FULL_REQUEST, headers={**AUTH, "Idempotency-Key": "run-1234"}
    )
    assert first.status == 201
    # The same document spelled differently (key order, spacing) is the same request.
    respelled = json.dumps(dict(reversed(list(FULL_REQUEST.items()))), indent=4)
    again = await client.post(
        "/v1/deploys",
        data=respelled,
        headers={**AUTH, "Idempotency-Key": "run-1234", "Content-Type": "application/json"},
    )
    assert again.status == 200
    assert await again.json() == await first.json()
    assert again.headers["Location"] == first.headers["Location"]
    page = await store.list_windows()
    assert len(page.items) == 1
    assert len(events.opened) == 1


async def test_same_idempotency_key_with_another_body_is_409(
    client: AppClient, store: SqliteStore
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    assert (await client.post("/v1/deploys", json=FULL_REQUEST, headers=headers)).status == 201
    other = {**FULL_REQUEST, "version": "v2.4.2"}
    response = await client.post("/v1/deploys", json=other, headers=headers)
    assert response.status == 409
    problem = await response.json()
    assert problem["type"].endswith("idempotency-key-reused")
    assert len((await store.list_windows()).items) == 1


@pytest.mark.parametrize(
    ("first", "repeat"),
    [
        ({"labels": None}, {}),
        ({}, {"labels": None}),
        ({"labels": {}}, {"labels": None}),
        ({"commit": None, "window": None}, {"previous_version": None, "deployed_at": None}),
    ],
)
async def test_a_repeat_differing_only_in_a_null_for_a_field_left_out_is_the_same_request(
    client: AppClient, store: SqliteStore, first: dict[str, Any], repeat: dict[str, Any]
) -> None:
    """The README: an optional field given as null is left out (`labels: null` is no
    labels). A pipeline's template that writes `labels: null` one run and leaves it out
    the next sends the same request: replayed, not 409."""
    headers = {**AUTH, "Idempotency-Key": "k-null"}
    base = {"environment": "production", "version": "v2.4.1"}
    created = await client.post("/v1/deploys", json={**base, **first}, headers=headers)
    assert created.status == 201, await created.text()
    again = await client.post("/v1/deploys", json={**base, **repeat}, headers=headers)
    assert again.status == 200, await again.text()
    assert await again.json() == await created.json()
    assert len((await store.list_windows()).items) == 1


@pytest.mark.parametrize(
    "repeat",
    [
        {**FULL_REQUEST, "deployed_at": "2026-11-26T14:00:00+00:00"},
        {**FULL_REQUEST, "deployed_at": "2026-11-26T15:00:00+01:00"},
        {**FULL_REQUEST, "deployed_at": "2026-11-26t14:00:00.000z"},
        {**FULL_REQUEST, "window": 600},
        {**FULL_REQUEST, "window": 600.0},
        {**FULL_REQUEST, "window": "600s"},
        {**FULL_REQUEST, "window": "10M"},
        dict(sorted(FULL_REQUEST.items())),
    ],
    ids=["plus-zero", "other-offset", "lower-case-millis", "int", "float", "600s", "10M", "order"],
)
async def test_a_repeat_equal_in_meaning_replays_the_first_answer(
    client: AppClient, store: SqliteStore, repeat: dict[str, Any]
) -> None:
    """Compared by the validated request, not the bytes: one instant written with another
    offset, one window in seconds or words, is the same request (it was a 409: a
    pipeline's retry that formats its time with `+00:00` got no answer to its deploy)."""
    headers = {**AUTH, "Idempotency-Key": "k-meaning"}
    created = await client.post("/v1/deploys", json=FULL_REQUEST, headers=headers)
    assert created.status == 201, await created.text()
    again = await client.post("/v1/deploys", json=repeat, headers=headers)
    assert again.status == 200, await again.text()
    assert await again.json() == await created.json()
    assert len((await store.list_windows()).items) == 1


@pytest.mark.parametrize(
    ("repeat", "named"),
    [
        ({**FULL_REQUEST, "deployed_at": "2026-11-26T14:00:00+01:00"}, "deployed_at"),
        ({**FULL_REQUEST, "deployed_at": "2026-11-26T14:00:00.001Z"}, "deployed_at"),
        ({**FULL_REQUEST, "window": 601}, "window"),
        ({**FULL_REQUEST, "labels": {"pipeline": "run-1235"}}, "labels"),
        ({**FULL_REQUEST, "commit": None}, "commit"),
        (
            {**FULL_REQUEST, "version": "v2.4.2", "commit": "abc", "window": "1h"},
            "version, commit, window",
        ),
        (
            {**FULL_REQUEST, "window": None, "deployed_at": None},
            "deployed_at (left out: the moment of registration, and the key's deploy was"
            " registered deployed at 2026-11-26T14:00:00Z)",
        ),
    ],
    ids=[
        "other-instant",
        "one-ms-later",
        "window",
        "labels",
        "commit-left-out",
        "three",
        "deployed-at-left-out",
    ],
)
async def test_a_repeat_that_means_another_request_is_409_naming_what_differs(
    client: AppClient, store: SqliteStore, repeat: dict[str, Any], named: str
) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-other"}
    created = await client.post("/v1/deploys", json=FULL_REQUEST, headers=headers)
    assert created.status == 201, await created.text()
    first = await created.json()
    again = await client.post("/v1/deploys", json=repeat, headers=headers)
    assert again.status == 409, await again.text()
    problem = await again.json()
    assert problem["type"].endswith("idempotency-key-reused")
    assert f"it registered production v2.4.1 ({first['id']})" in problem["detail"]
    assert f"this one differs in {named}." in problem["detail"], problem["detail"]
    assert "use a new key for a new deploy" in problem["detail"]
    assert len((await store.list_windows()).items) == 1


BARE = {"environment": "production", "version": "v2.4.1"}
"""A registration giving only what is required: production's window (10m), deployed now."""


@pytest.mark.parametrize(
    ("first", "repeat"),
    [
        (FULL_REQUEST, {k: v for k, v in FULL_REQUEST.items() if k != "window"}),
        (FULL_REQUEST, {**FULL_REQUEST, "window": None}),
        (BARE, {**BARE, "window": "10m"}),
        (BARE, {**BARE, "window": 600, "labels": {}, "commit": None}),
        ({**BARE, "window": 600.0}, BARE),
        ({**BARE, "environment": "staging", "window": "5m"}, {**BARE, "environment": "staging"}),
        ({**BARE, "window": "10m"}, {**BARE, "window": "600s"}),
    ],
    ids=[
        "window-left-out",
        "window-null",
        "default-given",
        "default-given-with-nulls",
        "given-then-left-out",
        "staging-5m",
        "both-left-out-deployed-at",
    ],
)
async def test_a_repeat_leaving_out_what_the_environment_gives_is_the_same_request(
    client: AppClient, store: SqliteStore, first: dict[str, Any], repeat: dict[str, Any]
) -> None:
    """A `window` left out is the environment's: a repeat that leaves out the window the
    first gave, equal to the environment's, or gives the environment's where the first
    left it out, asks for the deploy its key registered, replayed (a 409 before: a
    pipeline's retry from a template that writes the window one run and not the next got
    no answer to its deploy). `deployed_at` left out in both is the first's moment."""
    headers = {**AUTH, "Idempotency-Key": "k-default"}
    created = await client.post("/v1/deploys", json=first, headers=headers)
    assert created.status == 201, await created.text()
    again = await client.post("/v1/deploys", json=repeat, headers=headers)
    assert again.status == 200, await again.text()
    assert await again.json() == await created.json()
    assert again.headers["Location"] == created.headers["Location"]
    assert len((await store.list_windows()).items) == 1


async def test_a_deployed_at_taken_as_the_moment_of_registration_is_that_moment(
    client: AppClient, store: SqliteStore
) -> None:
    """A `deployed_at` up to 5 s ahead (clock skew) is registered as now: a repeat that
    leaves it out, or writes the same instant another way, is that registration."""
    ahead = datetime.fromtimestamp(NOW + 3, UTC)
    first = {**BARE, "deployed_at": ahead.isoformat().replace("+00:00", "Z")}
    headers = {**AUTH, "Idempotency-Key": "k-skew"}
    created = await client.post("/v1/deploys", json=first, headers=headers)
    assert created.status == 201, await created.text()
    for repeat in (BARE, {**BARE, "deployed_at": ahead.isoformat()}):
        again = await client.post("/v1/deploys", json=repeat, headers=headers)
        assert again.status == 200, await again.text()
        assert await again.json() == await created.json()
    assert len((await store.list_windows()).items) == 1


async def test_a_window_left_out_is_the_environments_window_in_the_configuration_now(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]],
    store: SqliteStore,
    events: RecordingEvents,
) -> None:
    """A repeat that leaves `window` out asks for the environment's window as configured
    when it arrives: after production's 10m became 15m (a restart, or a replica started
    with the new configuration) it asks for 15m, not the 10m deploy its key registered, a
    409 saying so. A repeat that leaves it out as the first did is the same body, and one
    giving the 10m registered is that request: both replayed."""
    before = await aiohttp_client(make_app(store, events))
    headers = {**AUTH, "Idempotency-Key": "k-config"}
    given = await before.post("/v1/deploys", json={**BARE, "window": "10m"}, headers=headers)
    assert given.status == 201, await given.text()
    left_out = await before.post(
        "/v1/deploys", json={**BARE, "version": "v2"}, headers={**AUTH, "Idempotency-Key": "k-2"}
    )
    assert left_out.status == 201, await left_out.text()
    after = await aiohttp_client(make_app(store, events, settings=make_settings("15m")))
    refused = await after.post("/v1/deploys", json=BARE, headers=headers)
    assert refused.status == 409, await refused.text()
    detail = (await refused.json())["detail"]
    assert (
        "this one differs in window (left out: production's window is 15m now, and the"
        " key's deploy is watched for 10m)." in detail
    ), detail
    for repeat, key, first in (
        ({**BARE, "window": "10m"}, "k-config", given),
        ({**BARE, "version": "v2"}, "k-2", left_out),
        ({**BARE, "version": "v2", "window": 600}, "k-2", left_out),
    ):
        again = await after.post(
            "/v1/deploys", json=repeat, headers={**AUTH, "Idempotency-Key": key}
        )
        assert again.status == 200, await again.text()
        assert await again.json() == await first.json()
    fifteen = await after.post(
        "/v1/deploys",
        json={**BARE, "version": "v2", "window": "15m"},
        headers={**AUTH, "Idempotency-Key": "k-2"},
    )
    assert fifteen.status == 409, await fifteen.text()
    assert "this one differs in window." in (await fifteen.json())["detail"]
    assert len((await store.list_windows()).items) == 2


async def test_an_invalid_repeat_of_a_key_is_422_naming_its_field(client: AppClient) -> None:
    """Validated before it is compared: what to fix, not a 409 that hides it."""
    headers = {**AUTH, "Idempotency-Key": "k-bad"}
    assert (await client.post("/v1/deploys", json=FULL_REQUEST, headers=headers)).status == 201
    again = await client.post(
        "/v1/deploys", json={**FULL_REQUEST, "window": "ten minutes"}, headers=headers
    )
    assert again.status == 422, await again.text()
    assert [e["loc"] for e in (await again.json())["errors"]] == [["window"]]


def _hash_before_null_was_left_out(document: Any) -> str:
    """How the version before hashed a request for its `Idempotency-Key` (pinned here: a
    store upgraded from it keeps these hashes)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@pytest.mark.parametrize(
    ("stored", "repeat", "status"),
    [
        (FULL_REQUEST, FULL_REQUEST, 200),
        ({**FULL_REQUEST, "labels": None}, {**FULL_REQUEST, "labels": None}, 200),
        ({**FULL_REQUEST, "labels": None}, {**FULL_REQUEST, "labels": {}}, 200),
        (
            {**FULL_REQUEST, "commit": None, "labels": None},
            {**{k: v for k, v in FULL_REQUEST.items() if k != "commit"}, "labels": {}},
            200,
        ),
        (FULL_REQUEST, {**FULL_REQUEST, "version": "v2.4.2"}, 409),
    ],
)
async def test_a_key_stored_by_the_version_before_still_answers_its_repeat(
    client: AppClient,
    store: SqliteStore,
    stored: dict[str, Any],
    repeat: dict[str, Any],
    status: int,
) -> None:
    """After an upgrade, a key the previous version stored (with its hash of the raw
    document) replays its repeat, a repeat differing in a null for a field left out
    too, and still refuses another request."""
    stored_hash = _hash_before_null_was_left_out(stored)
    await repeated_under_a_hash(client, store, stored, stored_hash, repeat, status)


async def repeated_under_a_hash(
    client: AppClient,
    store: SqliteStore,
    first: dict[str, Any],
    stored_hash: str,
    repeat: dict[str, Any],
    status: int,
) -> ClientResponse:
    """`first` registered with a key whose stored hash is then `stored_hash` (as a version
    before stored it), and `repeat` sent with that key: answered `status`, with the first
    answer again as a replay for a 200, and one deploy registered in all. The answer."""
    headers = {**AUTH, "Idempotency-Key": "k-upgraded"}
    created = await client.post("/v1/deploys", json=first, headers=headers)
    assert created.status == 201, await created.text()
    await rows(
        store,
        "UPDATE idempotency SET request_hash = ? WHERE key = ?",
        stored_hash,
        "k-upgraded",
    )
    again = await client.post("/v1/deploys", json=repeat, headers=headers)
    assert again.status == status, await again.text()
    if status == 200:
        assert await again.json() == await created.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Location"] == created.headers["Location"]
    assert len((await store.list_windows()).items) == 1
    return again


TAKEN_BEFORE = {**FULL_REQUEST, "version": "v2.4.1\u061c"}
"""A request a version before took (b38f2f91 refused the Arabic letter mark) and a 422 now."""


@pytest.mark.parametrize(
    ("repeat", "status"),
    [
        (TAKEN_BEFORE, 200),
        (dict(reversed(list(TAKEN_BEFORE.items()))), 200),
        ({**TAKEN_BEFORE, "labels": None}, 422),
        ({**TAKEN_BEFORE, "version": "v2.4.2\u061c"}, 422),
    ],
    ids=["same", "key-order", "other-labels", "other-version"],
)
async def test_an_invalid_repeat_of_a_key_a_version_before_took_is_replayed(
    client: AppClient, store: SqliteStore, repeat: dict[str, Any], status: int
) -> None:
    """A key a version before stored for a request it took and this one refuses (its
    hash of that document; the deploy here is FULL_REQUEST's, as one now cannot register
    it): its pipeline's retry, that same document, gets the first answer as a replay,
    where a 422 would ask it to fix a deploy already registered; another invalid body
    under that key is the 422 naming what to fix."""
    again = await repeated_under_a_hash(
        client, store, FULL_REQUEST, _hash_before_null_was_left_out(TAKEN_BEFORE), repeat, status
    )
    if status == 422:
        assert [e["loc"] for e in (await again.json())["errors"]] == [["version"]]


async def test_different_idempotency_keys_are_different_deploys(client: AppClient) -> None:
    a = await register(client, FULL_REQUEST, **{"Idempotency-Key": "a"})
    b = await register(client, FULL_REQUEST, **{"Idempotency-Key": "b"})
    assert a["id"] != b["id"]


# --- listing -------------------------------------------------------------------------


async def test_list_is_newest_first_and_pages_with_the_cursor(client: AppClient) -> None:
    created = []
    for i in range(5):
        env = "production" if i % 2 == 0 else "staging"
        created.append((await register(client, {"environment": env, "version": f"v{i}"}))["id"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        url = "/v1/deploys?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url, headers=AUTH)
        assert response.status == 200
        page = await response.json()
        seen.extend(item["id"] for item in page["items"])
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(created))
    assert pages == 3


async def test_a_list_without_limit_pages_by_50_newest_first(client: AppClient) -> None:
    """Contract §2's `GET /v1/deploys?...&limit=50`: left out, a page holds 50 (with a
    `next`), and the 51st deploy, the oldest, is the next page's one; the tests above
    always named a limit."""
    created = [
        (await register(client, {"environment": "staging", "version": f"v{i}"}))["id"]
        for i in range(51)
    ]
    first = await (await client.get("/v1/deploys", headers=AUTH)).json()
    assert [i["id"] for i in first["items"]] == created[:0:-1]
    assert isinstance(first["next"], str), first["next"]
    last = await (await client.get(f"/v1/deploys?cursor={first['next']}", headers=AUTH)).json()
    assert last == {"items": [last["items"][0]], "next": None}
    assert last["items"][0]["id"] == created[0]


async def test_list_filters_by_environment_and_state(client: AppClient) -> None:
    p1 = await register(client, {"environment": "production", "version": "v1"})
    s1 = await register(client, {"environment": "staging", "version": "v1"})
    p2 = await register(client, {"environment": "production", "version": "v2"})
    prod = await (await client.get("/v1/deploys?environment=production", headers=AUTH)).json()
    assert [i["id"] for i in prod["items"]] == [p2["id"], p1["id"]]
    assert prod["next"] is None
    watching = await (await client.get("/v1/deploys?state=watching", headers=AUTH)).json()
    assert {i["id"] for i in watching["items"]} == {p2["id"], s1["id"]}
    both = await (
        await client.get("/v1/deploys?environment=production&state=superseded", headers=AUTH)
    ).json()
    assert [i["id"] for i in both["items"]] == [p1["id"]]


async def test_an_environment_removed_from_the_config_is_listed_under_any_state_filter(
    client: AppClient, store: SqliteStore
) -> None:
    """One removed from the config keeps its history (the list's 404 is for one neither
    configured nor stored), but under a state filter that matched none of its windows
    the list answered 404 "unknown environment", as if it had never been seen, where the
    same list without the filter showed them (live audit)."""
    retired = DeployWindow(
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WR", "retired", "v0", None, None, {}, "passed",
        NOW - 900, NOW - 300, NOW - 900,
    )  # fmt: skip
    await store.create_window(retired)
    listed = await client.get("/v1/deploys?environment=retired", headers=AUTH)
    assert [i["id"] for i in (await listed.json())["items"]] == [retired.id]
    for state in ("watching", "scheduled", "failed"):
        response = await client.get(f"/v1/deploys?environment=retired&state={state}", headers=AUTH)
        assert response.status == 200, await response.text()
        assert await response.json() == {"items": [], "next": None}
    never = await client.get("/v1/deploys?environment=prodction&state=passed", headers=AUTH)
    assert never.status == 404


async def test_an_environment_never_seen_is_404_with_a_cursor_too(
    client: AppClient, store: SqliteStore
) -> None:
    """The README: an environment neither configured nor stored is a 404, under any
    filter. Paged (a cursor given, with or without a state), a typo answered 200 and an
    empty page, as if the environment had merely run out of windows; a removed one that
    is stored still pages as before."""
    retired = DeployWindow(
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WR", "retired", "v0", None, None, {}, "passed",
        NOW - 900, NOW - 300, NOW - 900,
    )  # fmt: skip
    await store.create_window(retired)
    await register(client)
    await register(client)
    first = await (await client.get("/v1/deploys?limit=1", headers=AUTH)).json()
    cursor = first["next"]
    assert cursor
    for query in (f"cursor={cursor}", f"cursor={cursor}&state=passed"):
        never = await client.get(f"/v1/deploys?environment=prodction&{query}", headers=AUTH)
        assert never.status == 404, await never.text()
        assert (await never.json())["type"].endswith("unknown-environment")
        stored = await client.get(f"/v1/deploys?environment=retired&{query}", headers=AUTH)
        assert stored.status == 200, await stored.text()


async def test_list_of_an_empty_store(client: AppClient) -> None:
    response = await client.get("/v1/deploys", headers=AUTH)
    assert await response.json() == {"items": [], "next": None}


# --- rendering of verdicts and rollbacks -----------------------------------------------


async def test_a_decided_window_shows_its_verdict_and_rollback(
    client: AppClient, store: SqliteStore
) -> None:
    created = await register(client)
    verdict = {
        "outcome": "fail",
        "decided_at": "2026-11-26T14:01:30Z",
        "reason": "probe-errors: error_rate 0.31 > max 0.05 for 3 rounds",
        "rules": [rule("probe-errors", "fail", 0.31, evidence={"rounds": 3}, link=None)],
    }
    at = datetime.fromisoformat("2026-11-26T14:01:30+00:00").timestamp()
    intent = RollbackIntent(window_id=created["id"], state="pending", body="{}", requested_at=at)
    assert await store.finish_window(created["id"], "failed", verdict, at, intent)
    intent.state, intent.attempts, intent.last_status = "delivered", 2, 200
    await set_rollback(store, intent)

    body = await (await client.get(f"/v1/deploys/{created['id']}", headers=AUTH)).json()
    assert body["state"] == "rolled_back"
    assert body["verdict"]["outcome"] == "fail"
    assert body["verdict"]["decided_at"] == "2026-11-26T14:01:30Z"
    assert body["verdict"]["reason"].startswith("probe-errors")
    [r] = body["verdict"]["rules"]
    assert {
        k: r[k]
        for k in (
            "name",
            "source",
            "metric",
            "outcome",
            "observed",
            "baseline",
            "threshold",
            "detail",
        )
    } == {
        "name": "probe-errors",
        "source": "checks",
        "metric": "error_rate",
        "outcome": "fail",
        "observed": 0.31,
        "baseline": 0.0,
        "threshold": "max 0.05",
        "detail": "probe-errors detail",
    }
    assert body["rollback"] == {
        "state": "delivered",
        "attempts": 2,
        "last_status": 200,
        "requested_at": "2026-11-26T14:01:30Z",
    }


async def rolled_back_with_follow_ups(client: AppClient, store: SqliteStore, *names: str) -> Any:
    """A registered window that failed, its rollback delivered, and its follow-ups `names`
    taken, each pending till the test records its outcome: the window as registered."""
    created = await register(client)
    at = datetime.fromisoformat("2026-11-26T14:01:30+00:00").timestamp()
    intent = RollbackIntent(window_id=created["id"], state="pending", body="{}", requested_at=at)
    assert await store.finish_window(created["id"], "failed", None, at, intent)
    intent.state, intent.attempts, intent.last_status = "delivered", 1, 200
    await set_rollback(store, intent)
    for name in names:
        assert await store.take_alert(created["id"], f"then:{name}", at, lapsed_before=0.0)
    return created


async def test_a_rollback_and_its_follow_ups_match_the_served_document(
    client: AppClient, store: SqliteStore
) -> None:
    """The served document describes the rollback object as it is sent, its states and its
    follow-ups' states as enums of exactly what the code produces: the rollback was an
    open `object` (its serializer hid its fields from the schema) and a follow-up's
    `state` free text, so neither a client generator nor a schema check knew them."""
    created = await rolled_back_with_follow_ups(client, store, "db", "cdn", "cache")
    await store.record_alert(created["id"], "then:db", "delivered", "HTTP 200 after 1 attempt(s)")
    await store.record_alert(created["id"], "then:cdn", "failed", "HTTP 500 after 8 attempt(s)")

    body = await (await client.get(f"/v1/deploys/{created['id']}", headers=AUTH)).json()
    document = await (await client.get("/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    deploy = Draft202012Validator({"$ref": "#/components/schemas/Deploy", **document})
    assert sorted(body["rollback"]["then"], key=lambda f: f["name"]) == [
        {"name": "cache", "state": "pending"},
        {"name": "cdn", "state": "failed"},
        {"name": "db", "state": "delivered"},
    ]
    assert list(deploy.iter_errors(body)) == []
    follow_up = schemas["FollowUpOutcome"]["properties"]["state"]
    assert sorted(follow_up["enum"]) == ["delivered", "failed", "pending"]
    assert sorted(schemas["Rollback"]["properties"]["state"]["enum"]) == [
        "delivered",
        "failed",
        "pending",
        "skipped",
    ]
    body["rollback"]["then"][0]["state"] = "claimed"  # the store's word, never sent
    assert not deploy.is_valid(body)


async def test_the_event_streams_deploy_object_is_the_apis_with_its_follow_ups(
    client: AppClient, store: SqliteStore
) -> None:
    """Contract §8: a `state` event's data is the deploy object. The stream's lacked the
    rollback's `then` (its reader rendered the object without the follow-ups), so a
    client reading the stream never saw them where `GET /v1/deploys/{id}` showed them."""
    created = await rolled_back_with_follow_ups(client, store, "db", "cdn")
    await store.record_alert(created["id"], "then:db", "delivered", "HTTP 200 after 1 attempt(s)")

    got = await (await client.get(f"/v1/deploys/{created['id']}", headers=AUTH)).json()
    response = await client.get(f"/v1/deploys/{created['id']}/events", headers=AUTH)
    assert response.status == 200
    sent = [event async for event in sse_events(response)]
    assert [event.name for event in sent] == ["state"]
    assert sorted(sent[0].data["rollback"]["then"], key=lambda f: f["name"]) == [
        {"name": "cdn", "state": "pending"},
        {"name": "db", "state": "delivered"},
    ]
    assert sent[0].data == got


@pytest.mark.parametrize("decided_by", ["judge", "outside-the-judge"])
async def test_a_verdicts_decided_at_has_the_milliseconds_of_the_objects_other_times(
    client: AppClient, store: SqliteStore, decided_by: str
) -> None:
    """A verdict decided and a rollback requested at one instant (a manual rollback of a
    watching window) read the same in the deploy object: `decided_at` was cut to whole
    seconds while `requested_at` kept its milliseconds."""
    created = await register(client)
    at = datetime.fromisoformat("2026-11-26T14:01:30.250+00:00").timestamp()
    if decided_by == "judge":
        verdict = verdict_to_dict(Verdict("fail", "probe-errors failed", ()), decided_at=at)
    else:
        verdict = decided_verdict("fail", "manual rollback by ci: bad", at)
    intent = RollbackIntent(window_id=created["id"], state="pending", body="{}", requested_at=at)
    assert await store.finish_window(created["id"], "failed", verdict, at, intent)

    body = await (await client.get(f"/v1/deploys/{created['id']}", headers=AUTH)).json()
    assert body["rollback"]["requested_at"] == "2026-11-26T14:01:30.250Z"
    assert body["verdict"]["decided_at"] == body["rollback"]["requested_at"]


async def test_a_live_window_keeps_verdict_null_and_shows_progress(
    client: AppClient, store: SqliteStore
) -> None:
    from agent.records import RoundRecord

    created = await register(client)
    pending = {
        "outcome": "pending",
        "decided_at": None,
        "reason": "",
        "rules": [rule("probe-errors", "pass"), rule("latency", "inconclusive", float("nan"))],
    }
    assert await store.record_round(RoundRecord(created["id"], 1, 0.0, {}), pending)
    body = await (await client.get(f"/v1/deploys/{created['id']}", headers=AUTH)).json()
    assert body["verdict"] is None
    assert body["rounds"] == 1
    assert [r["outcome"] for r in body["progress"]["rules"]] == ["pass", "inconclusive"]
    assert body["progress"]["rules"][1]["observed"] is None  # NaN is not JSON


async def test_progress_says_which_round_its_figures_are_of(
    client: AppClient, store: SqliteStore
) -> None:
    """The words are refreshed every few rounds: `progress.round` says which round the
    figures are of (the agent stores it with them); progress an older agent stored has
    none (`null`), and the OpenAPI document describes the field."""
    from agent.records import RoundRecord

    created = await register(client)
    worded: dict[str, Any] = {"outcome": "pending", "decided_at": None, "reason": "", "round": 2}
    worded["rules"] = [rule("probe-errors", "pass")]
    assert await store.record_round(RoundRecord(created["id"], 2, 0.0, {}), worded)
    assert await store.record_round(RoundRecord(created["id"], 3, 0.0, {}), None)
    body = await (await client.get(f"/v1/deploys/{created['id']}", headers=AUTH)).json()
    assert (body["rounds"], body["progress"]["round"]) == (3, 2)

    older = await register(client, {"environment": "staging", "version": "v1"})
    del worded["round"]
    assert await store.record_round(RoundRecord(older["id"], 1, 0.0, {}), worded)
    body = await (await client.get(f"/v1/deploys/{older['id']}", headers=AUTH)).json()
    assert body["progress"]["round"] is None

    schema = openapi_document()["components"]["schemas"]["Progress"]
    assert "round" in schema["properties"]


async def test_requests_are_counted_by_status_class(client: AppClient, metrics: Metrics) -> None:
    await register(client)
    await client.get("/v1/deploys/dep_nope", headers=AUTH)
    await client.get("/healthz")
    assert (
        metrics.registry.get_sample_value("postflight_api_requests_total", {"result": "2xx"}) == 2
    )
    assert (
        metrics.registry.get_sample_value("postflight_api_requests_total", {"result": "4xx"}) == 1
    )


async def test_a_failing_watcher_does_not_fail_a_committed_registration(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]],
    store: SqliteStore,
    tmp_path: Path,
) -> None:
    class Broken(RecordingEvents):
        def window_opened(self, window_id: str) -> None:
            raise RuntimeError("watcher is down")

    client = await aiohttp_client(make_app(store, Broken()))
    response = await client.post(
        "/v1/deploys", json={"environment": "production", "version": "v1"}, headers=AUTH
    )
    assert response.status == 201
    assert len((await store.list_windows()).items) == 1


async def test_concurrent_repeats_of_one_idempotency_key_open_one_window(
    client: AppClient, store: SqliteStore
) -> None:
    """Five requests with one key at once, ten times over (a key each time): one opens the
    window, the others replay it. The repeats that lose the race often share the winner's
    group commit (`SqliteStore._tx`), where they see its row before it is committed; they
    must still answer with its replay, not a 500 (2 runs in 15 did, one race each)."""
    import asyncio

    for race in range(10):
        headers = {**AUTH, "Idempotency-Key": f"race-{race}"}
        responses = await asyncio.gather(
            *(client.post("/v1/deploys", json=FULL_REQUEST, headers=headers) for _ in range(5))
        )
        statuses = sorted(r.status for r in responses)
        assert statuses == [200, 200, 200, 200, 201], (race, statuses)
        bodies = [await r.json() for r in responses]
        assert len({b["id"] for b in bodies}) == 1
    assert len((await store.list_windows()).items) == 10


async def test_a_bug_answers_a_clean_500_problem_and_logs_it_redacted(
    client: AppClient,
    store: SqliteStore,
    metrics: Metrics,
    monkeypatch: Any,
    caplog: Any,
) -> None:
    from tests.api.harness import TOKEN

    async def broken(window_id: str) -> None:
        raise RuntimeError(f"database said no; token was {TOKEN}")

    monkeypatch.setattr(store, "get_window", broken)
    response = await client.get("/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ", headers=AUTH)
    assert response.status == 500
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == 500 and TOKEN not in json.dumps(body)
    assert "database said no" in caplog.text and TOKEN not in caplog.text
    assert (
        metrics.registry.get_sample_value("postflight_api_requests_total", {"result": "5xx"}) == 1
    )


async def test_an_empty_limit_is_a_422_naming_it(client: AppClient) -> None:
    await register(client)
    response = await client.get("/v1/deploys?limit=", headers=AUTH)
    assert response.status == 422
    body = await response.json()
    assert body["errors"] == [{"loc": ["limit"], "msg": "must not be empty; leave it out instead"}]
    assert body["detail"].startswith("limit:")


@pytest.mark.parametrize(
    "query",
    [
        "environment=&state=&limit=50&cursor=",  # the route as the contract spells it
        "environment=",
        "state=",
        "cursor=",
    ],
)
async def test_an_empty_filter_or_cursor_is_left_out(client: AppClient, query: str) -> None:
    created = await register(client)
    response = await client.get(f"/v1/deploys?{query}", headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert [i["id"] for i in body["items"]] == [created["id"]]
    assert body["next"] is None


def test_the_openapi_document_accepts_the_empty_filters_and_cursor() -> None:
    parameters = openapi_document()["paths"]["/v1/deploys"]["get"]["parameters"]
    by_name = {p["name"]: Draft202012Validator(p["schema"]) for p in parameters}
    for name in ("environment", "state", "cursor"):
        assert by_name[name].is_valid(""), name
    assert not by_name["state"].is_valid("bogus")
    assert by_name["environment"].is_valid("production")
    assert not by_name["environment"].is_valid("no spaces")


async def test_leaving_the_list_parameters_out_lists_everything(client: AppClient) -> None:
    created = await register(client)
    response = await client.get("/v1/deploys?limit=50", headers=AUTH)
    assert response.status == 200
    assert [i["id"] for i in (await response.json())["items"]] == [created["id"]]


async def test_cancelled_and_superseded_windows_are_counted(
    client: AppClient, metrics: Metrics
) -> None:
    first = await register(client)
    await register(client)  # supersedes the first
    third = await register(client, {"environment": "staging", "version": "v1"})
    await client.post(f"/v1/deploys/{third['id']}/cancel", headers=AUTH)
    sample = metrics.registry.get_sample_value
    assert first["id"]
    assert (
        sample("postflight_windows_total", {"environment": "production", "outcome": "superseded"})
        == 1
    )
    assert (
        sample("postflight_windows_total", {"environment": "staging", "outcome": "cancelled"}) == 1
    )
