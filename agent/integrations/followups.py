"""How the `rollback.then` follow-ups of a deploy went, from the store's event marks
(`then:<name>` → result). Pure; must not do I/O."""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "then:"


OUTCOMES = frozenset({"delivered", "failed"})
"""A follow-up's outcomes as stored (`record_alert`)."""


def follow_up_states(events: Mapping[str, str | None]) -> dict[str, str]:
    """name → `pending` (claimed, no outcome yet), `delivered` or `failed`: the states the
    API documents (`FollowUpOutcome`). A claim without an outcome is stored as `claimed`,
    the alerts' word, which the deploy object showed as it was."""
    return {
        key.removeprefix(PREFIX): (result if result in OUTCOMES else "pending")
        for key, result in events.items()
        if key.startswith(PREFIX)
    }
