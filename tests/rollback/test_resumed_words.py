"""What the daemon's sweep says when it picks up a stored rollback (`resumed_from`): a
first attempt is started, not resumed, and it names the sender it took it from (it said
"resuming rollback delivery (attempt 1, from nobody)" of each manual rollback)."""

from __future__ import annotations

import pytest

from agent.records import RollbackIntent
from agent.rollback.contract import resumed_from


def intent(attempts: int, owner: str | None) -> RollbackIntent:
    return RollbackIntent(
        window_id="dep_01JD0000000000000000000000",
        state="pending",
        body="{}",
        requested_at=0.0,
        attempts=attempts,
        lease_owner=owner,
        lease_epoch=1 if owner else 0,
    )


@pytest.mark.parametrize(
    ("attempts", "owner", "startup", "said"),
    [
        (0, None, False, "starting rollback delivery (attempt 1: stored, no sender had taken it)"),
        (2, None, False, "resuming rollback delivery (attempt 3: no sender held it)"),
        (
            0,
            "replica-a",
            False,
            "starting rollback delivery (attempt 1, none sent before), taken over from"
            " replica-a, whose lease lapsed",
        ),
        (
            3,
            "replica-a",
            False,
            "resuming rollback delivery (attempt 4), taken over from replica-a, whose lease lapsed",
        ),
        (
            1,
            "replica-b",
            True,
            "resuming rollback delivery (attempt 2), taken over from this replica's previous"
            " process",
        ),
        (
            1,
            "replica-b",
            False,
            "resuming rollback delivery (attempt 2), taken over from this replica's own"
            " sender, whose lease lapsed",
        ),
    ],
)
def test_a_picked_up_rollback_is_said_as_what_it_is(
    attempts: int, owner: str | None, startup: bool, said: str
) -> None:
    words = resumed_from(intent(attempts, owner), "replica-b", startup=startup)
    assert words == said
    assert "nobody" not in words
