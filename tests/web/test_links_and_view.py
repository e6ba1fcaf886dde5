"""View tokens, page links and the page's view model (pure parts)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from agent.analysis.types import Rule
from agent.settings import ServerSettings
from agent.web.charts import nice_ticks
from agent.web.links import deploy_page_url, sign, signing_key, verify
from agent.web.view import alert_words, bounds, round_event
from agent.windows.integrations import APPROVAL_KEY
from tests.web.views import ID, NOW, page_view, rounds, window

OTHER = "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WR"


def server(**kw: Any) -> ServerSettings:
    return ServerSettings(api_tokens=[SecretStr("api-token-1-0123456789")], **kw)


def test_a_token_verifies_for_its_deploy_until_it_expires() -> None:
    key = signing_key(server())
    token = sign(key, ID, NOW + 60)
    assert verify(key, token, ID, NOW)
    assert not verify(key, token, ID, NOW + 60)  # expired
    assert not verify(key, token, OTHER, NOW)  # another deploy
    assert not verify(key, token, "session", NOW)  # not a session
    assert not verify(key, token[:-1] + ("x" if token[-1] != "x" else "y"), ID, NOW)
    assert not verify(key, token.replace(".", ".9", 1), ID, NOW)  # a later expiry
    for junk in ("", "v1", "v1..", "v2." + token[3:], "v1.-5.abc", "v1.1e9.abc"):
        assert not verify(key, junk, ID, NOW)


def test_the_key_comes_from_view_secret_else_the_first_api_token() -> None:
    by_token = signing_key(server())
    by_secret = signing_key(server(view_secret=SecretStr("another secret")))
    assert by_token != by_secret
    assert b"api-token-1" not in by_token
    token = sign(by_token, ID, NOW + 60)
    assert not verify(by_secret, token, ID, NOW)


def test_page_url_uses_public_url_and_is_none_with_the_ui_off() -> None:
    url = deploy_page_url(server(public_url="https://pf.example.com/"), ID, now=NOW)
    assert url is not None and url.startswith(f"https://pf.example.com/deploys/{ID}?view=v1.")
    default = deploy_page_url(server(listen="10.0.0.5:9000"), ID, now=NOW)
    assert default is not None and default.startswith(f"http://10.0.0.5:9000/deploys/{ID}?")
    assert deploy_page_url(server(ui=False), ID, now=NOW) is None
    expiry = int(url.split("?view=")[1].split(".")[1])
    assert expiry == NOW + 7 * 86400  # view_ttl's default
    short = deploy_page_url(server(view_ttl="1h"), ID, now=NOW)
    assert short is not None and int(short.split(".")[-2]) == NOW + 3600


@pytest.mark.parametrize("ttl", ["1ms", "500ms", "1500ms", "1h", "3650d"])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.999])
def test_a_link_opens_for_at_least_its_ttl(ttl: str, fraction: float) -> None:
    """The expiry was truncated to a whole second: `view_ttl: 500ms` gave a link that had
    expired as it was made (at a whole second), and `1500ms` one that opened for 0.5s."""
    settings = server(view_ttl=ttl)
    made = NOW + fraction
    url = deploy_page_url(settings, ID, now=made)
    assert url is not None
    token = url.split("?view=")[1]
    key = signing_key(settings)
    last = made + settings.view_ttl - 0.0005  # the link's last moment within its ttl
    assert verify(key, token, ID, made) and verify(key, token, ID, last), (ttl, token)
    assert not verify(key, token, ID, made + settings.view_ttl + 1)  # and not much longer


def test_the_view_draws_bounds_evidence_and_the_last_step_that_failed() -> None:
    rule = Rule(name="errors", source="checks", metric="error_rate", max=0.05)
    verdict = {
        "outcome": "pending",
        "reason": "no rule failed",
        "rules": [
            {
                "name": "errors",
                "source": "checks",
                "metric": "error_rate",
                "outcome": "pass",
                "observed": 0.2,
                "baseline": 0.01,
                "threshold": "max 0.05",
                "evidence": {
                    "policy": "sequential",
                    "likelihood_ratio": 40.0,
                    "likelihood_ratio_needed": 100.0,
                    "effect_interval": [0.5, 2.0],
                    "tolerance": 0.25,
                },
            },
        ],
    }
    view = page_view(window(verdict=verdict), rounds(), [rule], alerts={"breach:errors": "sent"})
    charts = {c.kind: c for c in view.rules[0].charts}
    assert set(charts) == {"rounds", "evidence", "band"}
    observed = charts["rounds"]
    assert [line.kind for line in observed.lines] == ["baseline", "bound"]
    assert [breach for *_, breach in observed.series[0]] == [False, True]
    assert "max 5%" in observed.description and "round 2: 20%" in observed.description
    assert "fails when it reaches 100" in charts["evidence"].description
    assert [line.kind for line in charts["evidence"].lines] == ["baseline", "threshold"]
    assert "beyond the tolerance" in charts["band"].description
    assert view.failures[0].step == "orders" and view.failures[0].got == "500"
    assert view.broken_steps == []  # the rule passes: no step to blame
    assert view.progress["fraction"] == 0.5


def test_alerts_sent_lists_alerts_not_the_marks_stored_beside_them() -> None:
    """A rolled-back deploy's page listed `rollback:follow-ups: done` and
    `rollback:settled: delivered` under "Alerts sent": bookkeeping, not alerts."""
    stored = {
        "breach:errors": "sent",
        "rollback_requested": "sent",
        "rollback_delivered": "sent",
        "provider_unreachable:sentry": "failed",
        "marker:sentry:deploy": "sent",
        "alert:then:purge": "sent",
        "integration_failed:vercel:approve-stage": "sent",
        "rollback:settled": "delivered",
        "rollback:follow-ups": "done",
        "github:success": "delivered",
        "github:commit:success": "delivered",
        "vercel:approve-stage": "delivered",
        "then:purge": "failed",
    }
    view = page_view(window(), rounds(), [], alerts=stored)
    assert [(key, result) for key, _, result in view.alerts] == [  # as a window sends them
        ("breach:errors", "sent"),
        ("provider_unreachable:sentry", "failed"),
        ("rollback_requested", "sent"),
        ("rollback_delivered", "sent"),
        ("integration_failed:vercel:approve-stage", "sent"),
        ("marker:sentry:deploy", "sent"),
        ("alert:then:purge", "sent"),
    ]
    assert [words for _, words, _ in view.alerts][:2] == [
        "errors breached",
        "sentry unreachable",
    ]


@pytest.mark.parametrize(
    ("mark", "result", "words"),
    [
        (
            APPROVAL_KEY,
            "skipped",  # declined: the stage now active not known to be the one judged
            "Rolling Release stage not approved by Postflight (approve it by hand if the"
            " window judged it)",
        ),
        (APPROVAL_KEY, "failed", "Rolling Release stage approval given up (approve it by hand)"),
        (
            "github:success",
            "failed",
            "GitHub deployment status success not posted (post it by hand)",
        ),
        (
            "github:commit:failure",
            "failed",
            "GitHub commit status failure not set (set it by hand)",
        ),
        (
            "gate:42:Production@1700000000",
            None,
            "protection rule not answered (answer it by hand in GitHub)",
        ),
    ],
)
def test_an_integration_alert_says_which_call_was_not_made(
    mark: str, result: str | None, words: str
) -> None:
    """What on-call reads on the page for each call an `integration_failed` alert was
    about: a declined approval is no call given up."""
    key = f"integration_failed:{mark}"
    marks = {key: "sent"} | ({mark: result} if result is not None else {})
    assert alert_words(key, marks) == words
    view = page_view(window(), rounds(), [], alerts=marks)
    assert view.alerts == [(key, words, "sent")]


def test_a_round_event_carries_no_raw_samples_and_the_progress() -> None:
    event = round_event(rounds()[1], window(), NOW)
    assert event["round"] == 2
    assert "values" not in event["summary"]["observations"]["errors"]
    assert event["progress"]["rounds"] == 2 and event["progress"]["remaining_s"] == 30


def test_relative_bounds_follow_the_bad_direction() -> None:
    up = Rule(name="r", source="checks", metric="latency_p95", max_increase=0.5)
    down = Rule(
        name="r", source="s", metric="crash_free_rate", max_increase=0.1, direction="decrease"
    )
    assert abs(bounds(up, 0.2)[0][1] - 0.3) < 1e-9
    assert abs(bounds(down, 0.99)[0][1] - 0.891) < 1e-9
    assert bounds(up, None) == []


def test_ticks_are_round_numbers() -> None:
    assert nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(0, 0.056) == [0, 0.02, 0.04]


def test_the_feed_carries_stored_rounds_and_other_news_to_each_subscriber() -> None:
    from agent.web.feed import DeployFeed

    feed = DeployFeed()
    record = rounds()[0]
    with feed.subscribe(ID) as one, feed.subscribe(ID) as two, feed.subscribe(OTHER) as other:
        feed.publish(ID, record)
        feed.publish(ID)
        assert one.wake.is_set() and two.wake.is_set() and not other.wake.is_set()
        assert one.take() == ([record], True)
        assert not one.wake.is_set() and one.take() == ([], False)
        assert two.take() == ([record], True)
        assert feed.subscribers == 3
    assert feed.subscribers == 0


def test_a_rules_bound_is_said_in_the_unit_of_its_values() -> None:
    """The rule line said `observed 50% vs baseline 2%, bound max 0.05` (the judge's words,
    a fraction) where the chart and the rounds table said `max 5%`: each rule's line is in
    one unit now, % for a rate and ms for a latency, as the charts label its bounds."""

    def said(
        metric: str, threshold: str, configured: list[Rule], observed: float, baseline: float
    ) -> str:
        verdict = {
            "outcome": "fail",
            "reason": "r",
            "rules": [
                {
                    "name": "errors",
                    "source": "checks",
                    "metric": metric,
                    "outcome": "fail",
                    "observed": observed,
                    "baseline": baseline,
                    "threshold": threshold,
                }
            ],
        }
        view = page_view(
            window(verdict=verdict, state="failed", ended_at=NOW), rounds(), configured
        )
        rule = view.rules[0]
        assert rule.observed.endswith("%" if metric == "error_rate" else "ms"), rule.observed
        return rule.threshold

    rate = Rule(name="errors", source="checks", metric="error_rate", max=0.05)
    assert said("error_rate", "max 0.05", [rate], 0.5, 0.02) == "max 5%"
    # a rule no longer configured: the judge's words, a rate's bound in %
    assert said("error_rate", "max 0.05", [], 0.5, 0.02) == "max 5%"
    assert said("error_rate", "min 0.995, max 0.05", [], 0.5, 0.02) == "min 99.5%, max 5%"
    latency = Rule(
        name="errors", source="checks", metric="latency_p95", max=0.3, max_increase=0.025
    )
    shown = said("latency_p95", "max 300ms, max_increase 2.5%", [latency], 0.2, 0.1)
    assert shown == "max 300ms, baseline +2.5% 102ms", shown


def test_a_rule_past_its_bound_as_its_window_passed_is_not_a_tick() -> None:
    """A threshold window passed with its rule past `max 0.05` in its last round, one of
    the two in a row that fail it: the page showed it `✔ pass` beside 40%, as
    `register --wait` said `✓ pass probe-errors 0.4 (max 0.05)`. It is `! pass` now, its
    bound saying how far along the limit it was."""
    evidence = {"policy": "threshold", "streak": 1, "failure_limit": 2, "failing_rounds": [2]}
    verdict = {
        "outcome": "pass",
        "reason": "1 of 1 rule passed over 2 rounds",
        "rules": [
            {
                "name": "errors",
                "source": "checks",
                "metric": "error_rate",
                "outcome": "pass",
                "observed": 0.4,
                "baseline": 0.392,
                "threshold": "max 0.05",
                "evidence": evidence,
            }
        ],
    }
    view = page_view(
        window(verdict=verdict, state="passed", ended_at=NOW),
        rounds(),
        [Rule(name="errors", source="checks", metric="error_rate", max=0.05)],
    )
    rule = view.rules[0]
    assert rule.outcome == "short", rule
    assert rule.threshold == "max 5%, 1 of 2 rounds past it: too few to fail", rule.threshold
