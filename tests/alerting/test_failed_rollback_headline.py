"""A FAILED rollback's headline for every target, configured or not, with a newer deploy
since or a deploy of the version it went back to: what to do by hand, never a crash."""

from __future__ import annotations

from typing import get_args

import pytest

from alerting.events import (
    EVENTS,
    FAILED_WORDS,
    TARGET_HEADLINES,
    UNCONFIGURED_HEADLINE,
    RollbackTarget,
    failed_rollback_headline,
)

TARGETS: tuple[RollbackTarget, ...] = get_args(RollbackTarget)
V3 = ("v3", "dep_3")
"""A newer deploy that took effect after the rollback failed."""
V1 = ("v1", "dep_1b")
"""A deploy of the version the rollback went back to (`back_to`): done another way."""


def test_every_rollback_target_has_its_failed_words() -> None:
    """A target added to `RollbackTarget` without its words fell back to the webhook's."""
    assert set(FAILED_WORDS) == set(TARGETS)
    assert EVENTS["rollback_failed"].headline == FAILED_WORDS["webhook"].headline
    for target in TARGETS:
        assert TARGET_HEADLINES[("rollback_failed", target)] == FAILED_WORDS[target].headline


@pytest.mark.parametrize("unconfigured", [False, True])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("since", [None, V3, V1])
def test_a_failed_rollbacks_headline_for_every_target_and_deploy_since(
    target: RollbackTarget, unconfigured: bool, since: tuple[str, str] | None
) -> None:
    """`deployed_since` cut the headline at ": roll back by hand", which a `rollback.then`
    follow-up's ("run that step by hand") does not hold: ValueError. Each headline now
    keeps its parts; a newer deploy replaces only a rollback by hand, and a follow-up's
    own step stays what to do."""
    text = failed_rollback_headline(
        target, unconfigured=unconfigured, deployed_since=since, back_to="v1"
    )
    alone = failed_rollback_headline(target, unconfigured=unconfigured)
    if unconfigured:
        assert alone == UNCONFIGURED_HEADLINE
    else:
        assert alone == TARGET_HEADLINES[("rollback_failed", target)]
    if since is None or (target == "then" and not unconfigured):
        assert text == alone  # nothing deployed since, or the follow-up's step is its own
        return
    failed = alone[: alone.index(":", alone.index("**", 2))]
    assert text.startswith(f"{failed}. Since then {since[0]} ({since[1]}) was deployed, "), text
    assert ": roll back by hand" not in text
    if since == V1:
        assert text.endswith("the rollback was done another way, and nothing is left to roll"
                             " back by hand."), text  # fmt: skip
    else:
        assert text.endswith(
            "after this rollback was requested. Rolling back now would undo v3, so do not"
            " roll back by hand: v3's own window judges it."
        ), text
