"""The fixed round schedule: which slot runs next, late rounds, restarts, the last round,
and checks fitted to their round."""

from __future__ import annotations

import pytest

from agent.windows.probing import fit_to_round
from agent.windows.schedule import RoundSchedule, overrun_s, round_timing
from checks.http import HttpCheckConfig
from checks.load import LoadCheckConfig
from checks.registry import build_check

SCHEDULE = RoundSchedule(start=1000.0, interval=2.0, end=1009.0)


def test_slot_k_is_due_at_deployed_at_plus_k_intervals_and_the_last_is_short() -> None:
    assert SCHEDULE.slots == 5
    assert [SCHEDULE.due(k) for k in range(5)] == [1000.0, 1002.0, 1004.0, 1006.0, 1008.0]
    assert SCHEDULE.ends(3) == 1008.0
    assert SCHEDULE.ends(4) == 1009.0  # the window's end, not the next slot
    assert SCHEDULE.is_last(4) and not SCHEDULE.is_last(3)


def test_a_late_round_does_not_make_the_next_one_late() -> None:
    # slot 0 started late, at 1001.5: slot 1 is still due at 1002.0
    assert SCHEDULE.next_slot(None, 1001.5) == 0
    assert SCHEDULE.next_slot(0, 1001.6) == 1
    # its checks have what is left of its slot, less a tenth of the interval for
    # judging and storing it
    assert SCHEDULE.length(0, 1001.5) == pytest.approx(0.3)
    assert SCHEDULE.length(1, 1002.0) == pytest.approx(1.8)
    assert SCHEDULE.length(4, 1009.5) == 0.05  # past the end: the final round, brief


def test_slots_passed_over_are_not_run_in_a_burst() -> None:
    # slot 0's round finished at 1005.1: slots 1 and 2 have passed; slot 2 is under way
    assert SCHEDULE.next_slot(0, 1005.1) == 2
    assert overrun_s(SCHEDULE, 0, 1005.1) == pytest.approx(3.1)


def test_a_restart_goes_on_after_the_last_stored_round() -> None:
    last_started = 1004.3  # slot 2 ran before the crash; the restart is still in slot 2
    assert SCHEDULE.next_slot(SCHEDULE.slot_at(last_started), 1005.0) == 3


def test_after_the_window_ends_the_final_round_runs_once_late() -> None:
    assert SCHEDULE.next_slot(None, 1100.0) == 4
    assert SCHEDULE.next_slot(None, 990.0) == 0  # deployed in the future: wait for it


def test_a_window_registered_after_its_start_runs_the_slots_left() -> None:
    """As many rounds as `next_slot` runs from its registration on: each figure said of
    the window (its warnings, the judge's horizon) counts those, not the whole window."""
    assert SCHEDULE.rounds_from(990.0) == 5  # registered ahead: all of them
    assert SCHEDULE.rounds_from(1000.0) == 5
    assert SCHEDULE.rounds_from(1003.9) == 4  # slot 1, run late, and slots 2 to 4
    assert SCHEDULE.next_slot(None, 1003.9) == 1
    assert SCHEDULE.rounds_from(1008.5) == 1  # only the last
    assert SCHEDULE.rounds_from(1020.0) == 1  # after the end: the final round, late


def test_a_window_shorter_than_an_interval_has_one_round() -> None:
    assert RoundSchedule(0.0, 30.0, 10.0).slots == 1


def test_the_stored_timing_is_the_real_start_and_duration() -> None:
    timing = round_timing(SCHEDULE, 1, started=1002.01, lag=0.01, now=1003.5)
    assert timing == {
        "slot": 1,
        "due_at": 1002.0,
        "started_at": 1002.01,
        "lag_s": 0.01,
        "duration_s": 1.49,
    }


def test_a_load_check_is_fitted_to_what_its_round_leaves() -> None:
    config = LoadCheckConfig(name="feed", path="/", rate=20, duration=1.0)  # warmup 1s
    check = build_check(config)
    on_time = fit_to_round(check, 0.9)
    assert (on_time.config.warmup, on_time.config.duration) == (0.0, 0.9)  # type: ignore[attr-defined]
    roomy = fit_to_round(check, 5.0)
    assert roomy is check  # warm-up and duration fit: the configured check runs as is
    assert fit_to_round(build_check(HttpCheckConfig(name="h", path="/")), 0.1).type == "http"
