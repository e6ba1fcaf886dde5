"""`deployed_at` against the API's clock: flagged `scheduled` ahead of it, bounds, clock skew."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from agent.api.models import LIST_LIMIT_MAX
from agent.records import ACTIVE_STATES, FINAL_STATES, DeployWindow
from agent.store.sqlite import SqliteStore
from common.times import rfc3339
from tests.api.conftest import NOW
from tests.api.harness import AUTH, RecordingEvents, make_app
from tests.api.test_deploys import FULL_REQUEST
from tests.app_client import AppClient


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
async def timed(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]],
    store: SqliteStore,
    events: RecordingEvents,
    clock: Clock,
) -> AppClient:
    return await aiohttp_client(make_app(store, events, clock=clock))


async def post(client: AppClient, offset_s: float, window: str = "10m") -> tuple[int, Any]:
    body = {
        "environment": "production",
        "version": "v2",
        "window": window,
        "deployed_at": rfc3339(NOW + offset_s),
    }
    response = await client.post("/v1/deploys", json=body, headers=AUTH)
    return response.status, await response.json()


async def states(client: AppClient, state: str) -> list[str]:
    response = await client.get(f"/v1/deploys?state={state}", headers=AUTH)
    assert response.status == 200
    return [item["id"] for item in (await response.json())["items"]]


CONTRACT_STATES = (*ACTIVE_STATES, *FINAL_STATES)
"""Contract section 2's `state` values (`watching` and the six ends), and no others."""


async def test_a_deploy_ahead_of_now_is_scheduled_until_it_comes(
    timed: AppClient, clock: Clock
) -> None:
    status, body = await post(timed, 1800)
    assert status == 201
    assert body["state"] == "watching" and body["scheduled"] is True and body["rounds"] == 0
    assert body["deployed_at"] == rfc3339(NOW + 1800)
    assert await states(timed, "scheduled") == [body["id"]]
    assert await states(timed, "watching") == [body["id"]]

    clock.now = NOW + 1800
    response = await timed.get(f"/v1/deploys/{body['id']}", headers=AUTH)
    assert (await response.json())["scheduled"] is False
    assert await states(timed, "scheduled") == []
    assert await states(timed, "watching") == [body["id"]]


async def test_a_window_ahead_holds_a_contract_state_and_the_scheduled_flag(
    timed: AppClient, clock: Clock
) -> None:
    """The API showed `state: scheduled` for a window before its `deployed_at`, a state
    contract section 2 does not have: a client checking the state against the contract's
    list failed. The state is `watching`; the extension flag says it has not started."""
    status, body = await post(timed, 30)
    assert status == 201
    assert body["state"] in CONTRACT_STATES and body["scheduled"] is True
    response = await timed.get(f"/v1/deploys/{body['id']}", headers=AUTH)
    read = await response.json()
    assert read["state"] in CONTRACT_STATES and read["scheduled"] is True
    listed = await timed.get("/v1/deploys", headers=AUTH)
    assert [d["state"] for d in (await listed.json())["items"]] == ["watching"]

    clock.now = NOW + 30
    response = await timed.get(f"/v1/deploys/{body['id']}", headers=AUTH)
    started = await response.json()
    assert started["state"] == "watching" and started["scheduled"] is False


async def test_more_than_an_hour_ahead_is_a_422(timed: AppClient) -> None:
    status, body = await post(timed, 3600 + 60)
    assert status == 422
    assert body["errors"][0]["loc"] == ["deployed_at"]
    assert "at most 1h ahead" in body["errors"][0]["msg"]


@pytest.mark.parametrize(
    ("offset_s", "said"),
    [
        (-(2529 * 86400 + 17 * 3600 + 50 * 60), "registered 2529d18h after its window ended"),
        (-(3 * 86400 + 1800), "registered 3d after its window ended"),
        (-(47 * 3600), "registered 46h50m after its window ended"),
    ],
)
async def test_a_deploy_time_years_back_says_how_late_in_days(
    timed: AppClient, offset_s: float, said: str
) -> None:
    """`--deployed-at 2020-01-01T00:00:00Z` (a wrong date, most likely): recorded with its
    warning, which said `registered 60713h44m10s after its window ended`: a figure nobody
    reads as six years. Days from two days on, to the hour."""
    status, body = await post(timed, offset_s)
    assert status == 201 and body["state"] == "inconclusive"
    assert body["warnings"][0].startswith(f"production v2: {said} (deployed_at "), body


async def test_a_deploy_time_years_ahead_is_refused_in_days(timed: AppClient) -> None:
    status, body = await post(timed, 26325 * 86400 + 5 * 3600)
    assert status == 422
    assert body["errors"] == [
        {"loc": ["deployed_at"], "msg": "is 26325d5h ahead; at most 1h ahead is accepted"}
    ]


async def test_a_window_over_before_it_was_registered_is_recorded_inconclusive(
    timed: AppClient, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Registered a day after its 1-minute window ended: 201, kept as the deploy's record,
    ended `inconclusive` at once with a verdict that says why; the active window of its
    environment goes on (it supersedes nothing) and nothing will watch it, so the API
    logs its warning, once."""
    caplog.set_level(logging.WARNING, logger="postflight.api")
    _, active = await post(timed, 0)
    status, body = await post(timed, -86400, window="1m")
    assert status == 201
    assert body["state"] == "inconclusive" and body["rounds"] == 0
    assert body["deployed_at"] == rfc3339(NOW - 86400)
    verdict = body["verdict"]
    assert verdict["outcome"] == "inconclusive" and verdict["rules"] == []
    assert verdict["reason"].startswith("registered 23h59m after its window ended")
    assert "nothing could be observed" in verdict["reason"]
    assert body["warnings"] == [f"production v2: {verdict['reason']}"]
    logged = [r for r in caplog.records if r.getMessage() == body["warnings"][0]]
    assert [getattr(r, "deploy_id", None) for r in logged] == [body["id"]]
    still = await timed.get(f"/v1/deploys/{active['id']}", headers=AUTH)
    assert (await still.json())["state"] == "watching"
    stored = await store.get_window(body["id"])
    assert stored is not None and not stored.active


async def test_the_contracts_example_request_is_created_as_written(
    timed: AppClient, clock: Clock
) -> None:
    """The body of contract section 2, word for word, on a clock five days past it (as
    the real one is): its window is long over, so it is recorded, not refused."""
    clock.now = NOW + 5 * 86400
    example = FULL_REQUEST  # the contract's body
    response = await timed.post("/v1/deploys", json=example, headers=AUTH)
    assert response.status == 201
    body = await response.json()
    assert response.headers["Location"] == f"/v1/deploys/{body['id']}"
    for field in ("environment", "version", "previous_version", "commit", "labels"):
        assert body[field] == example[field]
    assert body["deployed_at"] == example["deployed_at"]
    assert body["ends_at"] == "2026-11-26T14:10:00Z"
    assert body["state"] == "inconclusive"


async def test_a_window_still_open_from_the_past_is_watched_for_the_rest(timed: AppClient) -> None:
    status, body = await post(timed, -300, window="10m")
    assert status == 201
    assert body["state"] == "watching"
    assert body["ends_at"] == rfc3339(NOW + 300)


async def test_a_few_seconds_of_clock_skew_are_tolerated(timed: AppClient) -> None:
    status, ahead = await post(timed, 3)
    assert status == 201
    assert ahead["state"] == "watching"  # a pipeline clock 3s fast: taken as now
    assert ahead["deployed_at"] == rfc3339(NOW)
    status, _ = await post(timed, -60 - 3, window="1m")  # ended 3s ago by our clock
    assert status == 201
    status, _ = await post(timed, 3600 + 3)  # 1h ahead by the pipeline's clock
    assert status == 201


async def test_a_scheduled_window_is_listed_behind_more_watching_windows_than_a_store_page(
    timed: AppClient, store: SqliteStore
) -> None:
    """`?state=scheduled` read one store page of active windows and filtered it by the
    clock: with more watching windows than that page holds (one per environment; an
    agent watches thousands), a scheduled window behind them was left out and the list
    said `next: null`, as if there were none (live audit). `watching` lists them all,
    the scheduled one (stored as watching) too."""
    _, scheduled = await post(timed, 1800)
    watching = [
        DeployWindow(
            id=f"dep_01JDW{i:021d}",
            environment=f"env-{i}",
            version="v1",
            previous_version=None,
            commit=None,
            labels={},
            state="watching",
            deployed_at=NOW - 60,
            ends_at=NOW + 600,
            created_at=NOW + 1 + i,  # registered after the scheduled one: listed before it
        )
        for i in range(LIST_LIMIT_MAX + 5)
    ]
    for window in watching:
        await store.create_window(window)
    assert await states(timed, "scheduled") == [scheduled["id"]]
    seen: list[str] = []
    cursor = ""
    while True:
        response = await timed.get(f"/v1/deploys?state=watching&limit=150{cursor}", headers=AUTH)
        page = await response.json()
        seen += [item["id"] for item in page["items"]]
        if page["next"] is None:
            break
        cursor = f"&cursor={page['next']}"
    assert seen == [window.id for window in reversed(watching)] + [scheduled["id"]]


async def test_a_scheduled_window_can_be_cancelled(timed: AppClient) -> None:
    _, body = await post(timed, 1800)
    response = await timed.post(f"/v1/deploys/{body['id']}/cancel", headers=AUTH)
    assert response.status == 200
    assert (await response.json())["state"] == "cancelled"


def test_the_openapi_document_says_a_window_already_over_is_recorded_not_refused() -> None:
    """`deployed_at`'s description in the OpenAPI document said such a window "is
    refused", while the route records it `inconclusive` (201, above): a client generated
    from the document, or its reader, expected a 422 that never comes (live audit)."""
    from agent.api.openapi import openapi_document

    described = openapi_document()["components"]["schemas"]["DeployRequest"]["properties"][
        "deployed_at"
    ]["description"]
    assert "refused" not in described.split("ahead")[-1], described
    assert "inconclusive" in described, described


def test_the_openapi_document_names_every_kind_of_registration_warning() -> None:
    """`warnings` was described as bounds below what a rule can detect only; a
    registration also warns of background runs left out of the baseline, a relative
    checks rule with no baseline, and a window over before it was registered (the first
    answered a live `register`, the last the test above)."""
    from agent.api.openapi import openapi_document

    described = openapi_document()["components"]["schemas"]["Deploy"]["properties"]["warnings"][
        "description"
    ]
    for kind in ("left out of the baseline", "no baseline", "ended before it was registered"):
        assert kind in described, described
