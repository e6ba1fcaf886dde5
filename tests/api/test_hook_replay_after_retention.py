"""A deploy event replayed after retention forgot its delivery opens nothing (contract §7:
one window per event). Retention deletes hook delivery keys older than
`store.retention.rounds`; neither provider's signature carries a time, so a captured,
validly signed delivery resent after that opened a window on an old sha again. The
event's own time (GitHub `deployment_status.created_at`, Vercel `createdAt` in ms) older
than the keys the store forgot answers `200 {"ignored": ...}`; a redelivery whose key is
still kept is answered as before, and a store that never forgot a key ignores nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiohttp import web

from agent.api import create_api_app
from agent.metrics import Metrics
from agent.retention import StorePruner
from agent.settings import Settings
from agent.store.sqlite import SqliteStore
from tests.app_client import AppClient
from tests.fakes import github as gh
from tests.fakes import vercel as vc

GH_SECRET = "replay-github-secret"
VC_SECRET = "replay-vercel-secret"
DAY = 86400.0
RETENTION = 7 * DAY


def hook_settings() -> Settings:
    env = {"base_url": "http://127.0.0.1:9", "window": "10m", "interval": "30s"}
    return Settings(
        server={"api_tokens": ["replay-token-0123456789"]},
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


def stamped(provider: str, at: float, deployment: str) -> tuple[bytes, dict[str, str]]:
    """A signed delivery of a deployment (`deployment`) whose event happened at `at`."""
    headers = {"Content-Type": "application/json"}
    if provider.startswith("vercel"):
        document = json.loads(vc.event(event_id=f"evt_{deployment}", deployment=deployment))
        document["createdAt"] = int(at * 1000)  # Vercel: ms since the epoch
        if provider == "vercel-date":  # Vercel's docs give its type as Number and as Date
            document["createdAt"] = datetime.fromtimestamp(at, UTC).isoformat()
        body = json.dumps(document).encode()
        headers["x-vercel-signature"] = vc.signature(VC_SECRET, body)
    else:
        document = json.loads(gh.deployment_status(deployment_id=int(deployment.strip("dpl_"))))
        iso = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        document["deployment_status"]["created_at"] = iso
        document["deployment"]["created_at"] = iso
        body = json.dumps(document).encode()
        headers["X-Hub-Signature-256"] = gh.signature(GH_SECRET, body)
        headers["X-GitHub-Event"] = "deployment_status"
        headers["X-GitHub-Delivery"] = f"guid-{deployment}"
    return body, headers


async def windows(store: SqliteStore) -> int:
    return len((await store.list_windows(limit=50)).items)


@pytest.mark.parametrize("variant", ["vercel", "vercel-date", "github"])
async def test_an_event_replayed_after_its_delivery_key_was_pruned_opens_nothing(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]],
    store: SqliteStore,
    variant: str,
) -> None:
    """`vercel-date`: a `createdAt` sent as a date (ISO 8601), as one version of Vercel's
    webhook reference types it, was not read as a time, and its replay opened a window."""
    provider = variant.removesuffix("-date")
    metrics = Metrics()
    client = await aiohttp_client(create_api_app(hook_settings(), store, metrics))
    now = time.time()
    body, headers = stamped(variant, now - 60, "dpl_111")
    first = await client.post(f"/v1/hooks/{provider}", data=body, headers=headers)
    assert first.status == 202, await first.text()
    again = await client.post(f"/v1/hooks/{provider}", data=body, headers=headers)
    assert (again.status, await again.json()) == (202, await first.json())  # as today
    assert await windows(store) == 1

    # eight days on: retention forgets the delivery's key
    pruner = StorePruner(
        store, rounds_s=RETENTION, probe_summaries_s=RETENTION, clock=lambda: now + 8 * DAY
    )
    assert (await pruner.prune_once()).idempotency_keys >= 1

    replay = await client.post(f"/v1/hooks/{provider}", data=body, headers=headers)
    assert replay.status == 200, await replay.text()
    assert "older than" in (await replay.json())["ignored"]
    assert await windows(store) == 1  # no new window on the old sha
    ignored = metrics.deploy_events_total.labels(provider, "ignored")._value.get()
    assert ignored == 1

    # an event of after the forgotten keys still opens its window
    body, headers = stamped(variant, now + 8 * DAY, "dpl_222")
    fresh = await client.post(f"/v1/hooks/{provider}", data=body, headers=headers)
    assert fresh.status == 202, await fresh.text()
    assert await windows(store) == 2
