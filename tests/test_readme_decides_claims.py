"""Claims of the README's "How Postflight decides" that no other test held, in the form the
daemon makes them: registration's `warnings` from the store's background runs
(`registration_warnings`, what `POST /v1/deploys` answers with)."""

from __future__ import annotations

import argparse
import random

import pytest

from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import registration_warnings
from bench.live_judge import env_yaml

NOW = 1_800_000_000.0


def issue_10(probes: int) -> str:
    """Issue 10's new user, as `bench/live_judge.py trial` configures it (its `env_yaml`,
    not a copy): the example's shapes on the defaults (15-minute windows of 30 s rounds),
    only `probes_per_round` set."""
    timing = argparse.Namespace(window=None, interval=None, background=None, probes=probes)
    environment = env_yaml("production", "http://127.0.0.1:9", "http://127.0.0.1:9998/rb", timing)
    return f"""\
server:
  listen: 127.0.0.1:8787
  api_tokens: ["tok-1234567890abcdef"]
alerting:
  channels:
    - url: json://127.0.0.1:9/alerts
      tags: [oncall]
environments:{environment}"""


async def background_runs(store: SqliteStore, fingerprint: str, probes: int, every: int) -> None:
    """An hour of background runs, one every 30 s, of `probes` probes of a 50 ms service:
    one probe in `every` failed, spread evenly (no burst)."""
    rnd = random.Random(probes)
    for run in range(120):
        summary = {
            "ok": [int((run * probes + i) % every != 0) for i in range(probes)],
            "latency": [round(rnd.lognormvariate(-3.0, 0.3), 6) for _ in range(probes)],
        }
        at = NOW - 3600 + run * 30 + 1
        await store.add_probe_summary("production", "api-health", at, summary, fingerprint)


@pytest.mark.parametrize(("probes", "said"), [(40, "8.03%"), (20, "9.47%"), (10, "11.7%")])
async def test_issue_10s_new_user_is_told_what_probe_errors_can_catch(
    store: SqliteStore, probes: int, said: str
) -> None:
    """README: issue 10's user is told at registration what `probe-errors` (`max: 0.05`) can
    catch, 8.0% at 40 probes a round, 9.5% at 20 and 11.7% at 10, over background runs of a
    50 ms service failing 2% of its probes (a full hour of them, one every 30 s)."""
    env = load_settings_text(issue_10(probes)).environments["production"]
    assert env.window == 900 and env.interval == 30  # the defaults the README names
    fingerprint = check_fingerprints(env)["api-health"]
    await background_runs(store, fingerprint, probes, every=50)
    warnings = await registration_warnings(store, env, "production", NOW, NOW + env.window)
    errors = [w for w in warnings if w.startswith("rule probe-errors:")]
    # what it can see is the sentence's first clause (a 2% service at 20 or 10 probes a
    # round is told next that it would likely end inconclusive: 600 or 300 probes)
    assert [e.partition("; and it cannot pass")[0] for e in errors] == [
        "rule probe-errors: its max bound is tighter than the smallest change it can detect by"
        f" the window's end at the baseline's traffic ({probes} samples a round): error_rate"
        f" {said} or more"
    ], warnings


@pytest.mark.parametrize(("probes", "warned"), [(40, False), (20, True), (10, True)])
async def test_below_2_percent_the_40_probes_rule_is_not_warned(
    store: SqliteStore, probes: int, warned: bool
) -> None:
    """README: a warning needs a change more than twice the one the bound allows, so at 40
    probes (8.0%) `probe-errors` is warned only over a baseline of about 2% or more: 8.0% -
    b > 2 (5% - b) is b > 2.0%. Over 1.5% (one probe in 67) it is not; at 20 and 10 it is."""
    env = load_settings_text(issue_10(probes)).environments["production"]
    await background_runs(store, check_fingerprints(env)["api-health"], probes, every=67)
    warnings = await registration_warnings(store, env, "production", NOW, NOW + env.window)
    assert any(w.startswith("rule probe-errors:") for w in warnings) is warned, warnings


async def test_fifteen_clean_runs_of_20_bound_a_relative_error_rule_like_15_requests(
    store: SqliteStore,
) -> None:
    """README: after 15 clean background runs of 20 probes, a 10-round window can only show
    an error rate of about 0.82 past a +100% bound, and registration's warning says so."""
    text = issue_10(20).replace(
        "    probes_per_round: 20\n", "    probes_per_round: 20\n    window: 5m\n"
    )
    text = text.replace("        max: 0.05\n", "        max_increase: 100%\n", 1)
    head, _, tail = text.partition("      - name: health-p95\n")
    text = head + tail[tail.index("    rollback:\n") :]  # alone: beside health-p95, 0.984
    env = load_settings_text(text).environments["production"]
    fingerprint = check_fingerprints(env)["api-health"]
    for run in range(15):
        summary = {"ok": [1] * 20, "latency": [0.05] * 20}
        at = NOW - 15 * 30 + run * 30
        await store.add_probe_summary("production", "api-health", at, summary, fingerprint)
    warnings = await registration_warnings(store, env, "production", NOW, NOW + env.window)
    errors = [w for w in warnings if w.startswith("rule probe-errors:")]
    assert len(errors) == 1 and "max_increase bound is tighter" in errors[0], warnings
    assert ": error_rate 82.4% or more; and it cannot pass on evidence" in errors[0], errors
    assert "; the lookback holds 15 of the 120" in errors[0], errors
