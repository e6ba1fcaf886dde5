"""The unit of evidence: one request or probe. Checks make samples; the judge counts them.

Pure data, importing nothing of Postflight, so `checks` (which makes them) and
`agent.analysis` (which judges them) share it without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Target = Literal["deploy", "baseline"]
"""Which side a sample was taken from: the new deploy, or a canary's stable baseline."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One request or probe: the unit of evidence the judge counts."""

    check: str
    ok: bool
    latency_s: float | None = None
    status: int | None = None
    error: str | None = None
    """Error class when not ok: `timeout`, `connect`, `status`, `assertion`, `tls`, `dropped`…"""
    bytes: int = 0
    target: Target = "deploy"
