"""Counts said in words: `1 rule`, `2 rules`."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, plural with an `s` unless it is one (`0 rounds`, `1 round`)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
