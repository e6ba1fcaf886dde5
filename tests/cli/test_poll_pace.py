"""`register --wait`'s polls keep up with the window's rounds (`PollPace`), on a clock of
the test's own: every 2 s skipped rounds of a window whose `interval` is shorter."""

from __future__ import annotations

from agent.api.models import Deploy
from agent.client import FASTEST_POLL_S, PollPace


def deploy(rounds: int, state: str = "watching") -> Deploy:
    return Deploy.model_validate(
        {
            "id": "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
            "environment": "production",
            "version": "v1",
            "state": state,
            "deployed_at": "2026-11-26T14:00:00Z",
            "ends_at": "2026-11-26T14:10:00Z",
            "rounds": rounds,
            "links": {"self": "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"},
        }
    )


def follow(interval: float, polls: int, state: str = "watching") -> tuple[PollPace, list[int]]:
    """Poll a window whose rounds start every `interval` s (round 1 at 0.1 s) as `wait`
    does: the pace, and the rounds each poll saw."""
    now = [0.0]
    pace = PollPace(2.0, clock=lambda: now[0])
    seen = []
    for _ in range(polls):
        rounds = int((now[0] - 0.1) // interval) + 1 if now[0] >= 0.1 else 0
        seen.append(rounds)
        pace.seen(deploy(rounds, state))
        now[0] += pace.next()
    return pace, seen


def test_rounds_shorter_than_the_poll_are_each_seen() -> None:
    pace, seen = follow(0.5, 60)
    assert pace.interval is not None and abs(pace.interval - 0.5) < 0.1
    assert set(range(1, max(seen) + 1)) <= set(seen)  # no round skipped
    assert pace.next() == FASTEST_POLL_S  # half of 0.5 s


def test_rounds_of_a_second_are_polled_twice_a_round() -> None:
    pace, seen = follow(1.0, 40)
    assert pace.interval is not None and abs(pace.interval - 1.0) < 0.2
    assert 0.4 < pace.next() < 0.6
    assert set(range(1, max(seen) + 1)) <= set(seen)


def test_the_polls_are_never_faster_than_the_bound() -> None:
    pace, _ = follow(0.1, 40)
    assert pace.next() == FASTEST_POLL_S


def test_long_rounds_are_polled_every_2_s_as_before() -> None:
    pace, seen = follow(30.0, 40)
    assert pace.next() == 2.0
    # a few quicker polls at the start, then 2 s apart: 40 polls cover over a minute
    assert max(seen) >= 2


def test_after_the_verdict_it_backs_off_to_the_slowest() -> None:
    """A failed window's rollback being followed: no rounds to keep up with."""
    pace, _ = follow(0.5, 20)
    pace.seen(deploy(40, "failed"))
    for _ in range(5):
        pace.seen(deploy(40, "failed"))
    assert pace.next() == 2.0


def test_no_answer_backs_off_and_a_shorter_interval_asked_is_kept() -> None:
    pace = PollPace(2.0)
    for _ in range(6):
        pace.seen(None)
    assert pace.next() == 2.0
    assert PollPace(0.05).next() == 0.05  # the CLI's tests poll every 50 ms
