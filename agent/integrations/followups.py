"""How the `rollback.then` follow-ups of a deploy went, from the store's event marks
(`then:<name>` → result). Pure; must not do I/O."""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "then:"


def follow_up_states(events: Mapping[str, str | None]) -> dict[str, str]:
    """name → `pending` (claimed, no outcome yet), `delivered` or `failed`."""
    return {
        key.removeprefix(PREFIX): (result or "pending")
        for key, result in events.items()
        if key.startswith(PREFIX)
    }
