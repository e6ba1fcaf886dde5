"""Registration's word on a baseline probed while the service was down (a README
walk-through: the background runs began before the local stand-ins were up, 96% errors), in
the daemon's form: background runs stored as the prober stores them, read back through
`registration_warnings`. The judge's absolute bound does not read that baseline
(tests/analysis/test_outage_baseline.py), so the warning is the only place it is said."""

from __future__ import annotations

import pytest

from agent.settings_file import load_settings
from agent.store.sqlite import SqliteStore
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import registration_warnings
from agent.windows.probing import background_burst, background_every
from checks.registry import build_check
from tests.test_foresight import EXAMPLE


@pytest.mark.parametrize(("down", "warned"), [(False, False), (True, True)])
async def test_a_baseline_of_mostly_errors_is_said_to_be_probed_while_the_service_was_down(
    store: SqliteStore, example_env: dict[str, str], down: bool, warned: bool
) -> None:
    """The example's production checks over an hour of background runs, all but one probe
    in 25 failing (down) or none failing: `probe-errors` (`max: 0.05`) is warned of in the
    first case only, with the share and what it means for its absolute bound."""
    settings = load_settings(EXAMPLE)
    env = settings.environments["production"]
    prints = check_fingerprints(env)
    now = 1_800_000_000.0
    for config in env.checks:
        check = build_check(config)
        every = background_every(check, env)
        if every is None:
            continue
        per_run = background_burst(check, env)
        if check.once_per_round:
            per_run *= round(config.rate * config.duration)  # type: ignore[attr-defined]
        for k in range(int(env.lookback // every)):
            ok = [1 if not down or (k + i) % 25 == 0 else 0 for i in range(per_run)]
            at = now - env.lookback + k * every + 1
            await store.add_probe_summary(
                "production",
                config.name,
                at,
                {"ok": ok, "latency": [0.04] * per_run},
                prints[config.name],
            )
    errors_only = env.model_copy(
        update={"rules": [r for r in env.rules if r.name == "probe-errors"]}
    )
    said = await registration_warnings(store, errors_only, "production", now, now + env.window)
    outage = [s for s in said if "while the service was down" in s]
    assert bool(outage) == warned, said
    if warned:
        assert outage[0].startswith("rule probe-errors: its baseline is 96% errors ("), outage
        # the bound in %, as the baseline's share beside it (`max 0.05` beside `96%`)
        assert "its max 5% is judged on the release's own probes" in outage[0], outage
