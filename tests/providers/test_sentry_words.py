"""A misnamed release's words with one error in Sentry: `1 error`, where `1 errors` read as
a slip."""

from __future__ import annotations

from agent.providers.sentry import SentryProvider
from tests.fakes.sentry import FakeSentry, SentryStats
from tests.providers.support import BEFORE, rule, scope

ERRORS = rule(source="sentry", metric="error_count", max=100)


async def test_one_error_elsewhere_is_one_error(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.set_stats(SentryStats(errors=1), release="web@v2.4.0")
    obs = await sentry.fetch(ERRORS, scope(), BEFORE, "v2.4.0")
    assert obs.error is not None
    assert obs.error.startswith('Sentry has 1 error in this period, none of release "v2.4.0"')
