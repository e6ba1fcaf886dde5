"""A provider rule's no-data words after an empty answer (`agent.windows.no_data`), now
that the judge keeps an earlier round's error over a round with nothing in it."""

from __future__ import annotations

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge
from agent.windows.no_data import EmptyAnswers

SENTRY = Rule("sentry-errors", "sentry", "error_rate", max=0.05)
DOWN = Observation(None, error="Sentry answered 503")
EMPTY = Observation(None)


def test_an_empty_answer_after_an_outage_is_said_over_the_outage() -> None:
    """Sentry down, then back with nothing of the release: the judge keeps the outage as
    why (its empty round says nothing), and the empty answer's words, the latest news
    and what to check, are said over it, as over `no data (no data)`."""
    verdict = judge([SENTRY], {}, [{SENTRY.name: DOWN}, {SENTRY.name: EMPTY}], Policy(), final=True)
    assert verdict.rules[0].detail == "no data (Sentry answered 503)"
    empty = EmptyAnswers()
    empty.note(SENTRY, EMPTY, "v2")
    said = empty.said(verdict)
    assert said.rules[0].detail.startswith(
        'no data (sentry answered with nothing to measure for release "v2"'
    )
    assert "Sentry answered 503" not in said.reason and said.rules[0].detail in said.reason
    # an empty answer only: the judge's bare `no data`, said so as before
    bare = judge([SENTRY], {}, [{SENTRY.name: EMPTY}], Policy(), final=True)
    assert bare.rules[0].detail == "no data (no data)"
    assert empty.said(bare).rules[0].detail == said.rules[0].detail
    # the provider down again since: its error is the news, the empty answer forgotten
    empty.note(SENTRY, DOWN, "v2")
    assert empty.said(verdict) == verdict
