"""Schemathesis hooks for tests/api/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Two fields of `POST /v1/deploys` have bounds that a static document cannot state,
and the document says so in prose: `deployed_at` is judged against the server's
clock (at most 1h ahead, and the window must not have ended) and `window` against
the environment's `interval`. For cases schemathesis means to be valid (positive),
this hook moves those two fields into their bounds and picks a configured
environment, so `positive_data_acceptance` tests everything else; invalid (negative)
cases go out untouched.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation

from common.durations import parse_duration
from common.times import rfc3339

ENVIRONMENTS = ("production", "staging")
MIN_WINDOW_S = 30.0
"""The harness environments' interval (tests/api/harness.py)."""
MAX_WINDOW_S = 7 * 86400.0


def _positive_body(case: Any) -> bool:
    component = case.meta.components.get(ParameterLocation.BODY) if case.meta else None
    return component is not None and component.mode.is_positive


def _window_in_bounds(value: Any) -> bool:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return False
    return MIN_WINDOW_S <= seconds <= MAX_WINDOW_S


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    body = case.body
    if case.operation.path != "/v1/deploys" or case.method != "POST":
        return
    if not isinstance(body, dict) or not _positive_body(case):
        return
    if body.get("environment") not in ENVIRONMENTS:
        body["environment"] = ENVIRONMENTS[len(str(body.get("version"))) % 2]
    if "window" in body and not _window_in_bounds(body["window"]):
        body["window"] = "10m"
    if isinstance(body.get("deployed_at"), str):
        body["deployed_at"] = rfc3339(datetime.fromtimestamp(time.time() - 1, UTC))
