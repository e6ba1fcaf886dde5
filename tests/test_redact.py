"""Secrets never leave the agent: the redactor behind logs, alerts and API errors."""

from __future__ import annotations

import pytest

from agent.redact import MASK, Redactor


@pytest.mark.parametrize(
    ("text", "secret_part"),
    [
        ("calling json://user:p4ss@chat.local/alerts", "p4ss"),
        ("header Authorization: Bearer eyJhbGciOi.abc", "eyJhbGciOi.abc"),
        ("GET /x?api_key=abcd1234&x=1", "abcd1234"),
        ("token=zzzz9999 rejected", "zzzz9999"),
        ("the configured value is hunter2hunter2", "hunter2hunter2"),
    ],
)
def test_secrets_are_masked(text: str, secret_part: str) -> None:
    redacted = Redactor(["hunter2hunter2"])(text)
    assert secret_part not in redacted
    assert MASK in redacted


def test_plain_text_is_left_alone() -> None:
    text = "Sentry token rejected (401); error_rate 0.31 > max 0.05 for 3 rounds"
    assert Redactor(["unrelated-secret"])(text) == text


def test_longer_secrets_are_masked_before_their_prefixes() -> None:
    redact = Redactor(["abcd", "abcdefgh"])
    assert redact("x abcdefgh y") == f"x {MASK} y"
