"""How the `rollback.then` follow-ups of a deploy went, from the store's event marks
(`then:<name>` → result). Pure; must not do I/O."""

from __future__ import annotations

from collections.abc import Mapping

from agent.records import FollowUpState

PREFIX = "then:"


OUTCOMES: dict[str | None, FollowUpState] = {"delivered": "delivered", "failed": "failed"}
"""A follow-up's outcomes as stored (`record_alert`), as the API shows them."""


def follow_up_states(events: Mapping[str, str | None]) -> dict[str, FollowUpState]:
    """name → `pending` (claimed, no outcome yet), `delivered` or `failed`: the states the
    API documents (`FollowUpOutcome`, an enum of `FollowUpState`). A claim without an
    outcome is stored as `claimed`, the alerts' word, which the deploy object showed as
    it was."""
    return {
        key.removeprefix(PREFIX): OUTCOMES.get(result, "pending")
        for key, result in events.items()
        if key.startswith(PREFIX)
    }
