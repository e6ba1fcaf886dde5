"""Contract §2: "Compare tokens in constant time". Timing cannot be asserted in a test on
a loaded machine; what makes it constant can: every accepted token is compared, each with
`hmac.compare_digest` on digests of one length, whichever matched and however long the
presented token is (a plain `==` or an early return leaks which token, and how much of
it, matched)."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from pydantic import SecretStr

from agent.api import auth

ACCEPTED = [SecretStr("first-token-0123456789"), SecretStr("second"), SecretStr("third-" * 9)]


@pytest.mark.parametrize(
    ("presented", "matches"),
    [
        ("first-token-0123456789", True),
        ("third-" * 9, True),
        ("first-token-012345678X", False),
        ("f", False),
        ("x" * 4096, False),
    ],
    ids=["the-first", "the-last", "one-character-off", "a-prefix", "very-long"],
)
def test_every_accepted_token_is_compared_by_digest_whichever_matches(
    monkeypatch: pytest.MonkeyPatch, presented: str, matches: bool
) -> None:
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr("agent.api.auth.hmac.compare_digest", spy)
    assert auth.token_matches(presented, ACCEPTED) is matches
    assert compared == [(32, 32)] * len(ACCEPTED)
    compared.clear()
    named = [(f"t{i}", token) for i, token in enumerate(ACCEPTED)]
    assert (auth.token_name(presented, named) is not None) is matches
    assert compared == [(32, 32)] * len(ACCEPTED)
