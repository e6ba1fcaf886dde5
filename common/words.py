"""Counts said in words (`1 rule`, `2 rules`), and what a name may hold."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Protocol


def counted(count: float, noun: str) -> str:
    """`count` and `noun`, plural with an `s` unless it is one (`0 rounds`, `1 round`), the
    count's thousands separated (`1,000 bytes`) as the other figures an operator reads are.
    A whole count kept as a float (the judge's samples) is said without `.0`."""
    number = int(count) if isinstance(count, float) and count.is_integer() else count
    return f"{number:,} {noun}{'' if count == 1 else 's'}"


_NAME_CHARACTER = re.compile(r"[A-Za-z0-9_.:-]")


def name_refused(name: str) -> str:
    """Why `name` (an environment's, a check's) is no name, naming the character refused:
    `producci\u00f3n` was told it takes "only letters", which \u00f3 is. The configuration
    and the API say it alike."""
    refused = next((c for c in name if not _NAME_CHARACTER.fullmatch(c)), " ")
    if refused == " ":
        return "a name takes only letters, digits and _ . : - (no spaces)"
    letters = "the letters A-Z and a-z" if refused.isalnum() else "letters"
    return f"a name takes only {letters}, digits and _ . : - (not {refused!r})"


def closest(typed: str, known: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The one name in `known` a typo `typed` most likely meant, or None when none is
    `cutoff` alike (difflib's ratio): each "did you mean" (an unknown environment, config
    key, command or flag, a variable's environment) asks it here, where each called difflib
    itself. A caller's `cutoff` is how far its slips stray (0.75 for config keys, whose
    many short names are alike; 0.5 for a variable's environment, said with its reason)."""
    meant = difflib.get_close_matches(typed, list(known), n=1, cutoff=cutoff)
    return meant[0] if meant else None


def unknown_environment(name: str, known: list[str]) -> str:
    """An environment name that is not configured, with the names that are (sorted): the
    API's 404 and `postflight check` say it alike, where check said `(known: …)` in the
    file's order and the API `; configured: …`. A near miss names the one meant, as a
    misspelt config key does (`register --env mien` said only `configured: mine`)."""
    configured = ", ".join(sorted(known)) or "none"
    meant = closest(name, known)
    hint = f" (did you mean {meant!r}?)" if meant else ""  # as a misspelt config key says
    return f"unknown environment {name!r}; configured: {configured}{hint}"


DRY_RUN_NOT_SENT = "rollback not sent (rollback.dry_run)"
"""How a failed window whose rollback `rollback.dry_run` kept unsent says so, first, where it
says it failed (`register --wait`'s end line, `status`, the deploy page's state line): "no
rollback was delivered" read as one tried and refused, the dry run said only in the details
below it."""


class _HasState(Protocol):
    """A rollback as the CLI (the API's `Rollback`) and the deploy page (a stored intent)
    hold it: only its state is read."""

    @property
    def state(self) -> str: ...


def dry_run_unsent_note(state: str, rollback: _HasState | None) -> str | None:
    """`DRY_RUN_NOT_SENT` for a failed window whose rollback `rollback.dry_run` kept unsent
    (`skipped`), else None: the CLI (an API deploy) and the deploy page (a stored window)
    ask it alike, where each once spelt the test out."""
    if state == "failed" and rollback is not None and rollback.state == "skipped":
        return DRY_RUN_NOT_SENT
    return None


def odds(ratio: float) -> str:
    """A likelihood ratio as odds an operator reads: `2,340 to 1` (not `2.34e+03`), `741
    million to 1`, `more than a billion to 1` (the exact figure is in the evidence's
    `likelihood_ratio`); below 1 the other way round
    (`1 to 20`: the data favour no regression), where `0.05 to 1` read as a slip."""
    if 0 < ratio < 1:
        return f"1 to {odds_number(1.0 / ratio)}"
    return f"{odds_number(ratio)} to 1"


def odds_number(ratio: float) -> str:
    """Each form's bound is where its rounding would carry into the next one: the bar
    `1 / 0.001` is 999.9999999999989 in floating point, which `.3g` wrote `1e+03`."""
    if ratio < 999.5:
        return f"{ratio:.3g}"
    if ratio < 999_999.5:
        return f"{ratio:,.0f}"
    if ratio < 999_500_000:
        return f"{ratio / 1e6:.3g} million"
    if ratio < 1e9:
        return "a billion"
    return "more than a billion"
