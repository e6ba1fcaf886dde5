"""The rate-limit hold-offs a provider keeps (`HttpProvider._quiet_until`) stay bounded.

They are kept per URL, and a release's URLs name it (`…/releases/{version}/`): an entry
left by a 429 was removed only when the same URL was asked again, which a past
release's never is, so a long-running agent kept one more per release that was ever
rate-limited. Adding one now drops those whose hold-off has passed."""

from __future__ import annotations

import asyncio

import pytest

from agent.metrics import Metrics
from agent.providers.client import ProviderUnreachable
from agent.providers.sentry import SentryProvider
from tests.fakes.sentry import FakeSentry
from tests.providers.support import sentry_settings

RELEASES = 30


async def test_hold_offs_that_passed_are_dropped_when_another_is_kept(
    sentry_fake: FakeSentry,
) -> None:
    sentry_fake.fail("429", reset_in=0.05, match="/releases/")
    provider = SentryProvider(sentry_settings(sentry_fake, max_attempts=1), metrics=Metrics())
    root = f"{sentry_fake.url}/api/0/organizations/{sentry_fake.org}/releases"
    loop = asyncio.get_running_loop()
    try:
        for n in range(RELEASES):  # one release after another, each rate-limited once
            with pytest.raises(ProviderUnreachable):
                await provider.send("GET", f"{root}/v{n}/", deadline=loop.time() + 5)
            await asyncio.sleep(0.1)  # past its reset: the next release's round
        held = provider._quiet_until
    finally:
        await provider.aclose()
    assert len(sentry_fake.seen("/releases/")) == RELEASES  # each was refused once
    assert len(held) <= 2, sorted(held)  # was one per release: 30
