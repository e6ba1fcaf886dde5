"""The wire models of API v1: what handlers validate with, what the OpenAPI document is
generated from, and what the CLI client parses responses into.

One set of models for all three is the point: the documentation cannot drift from
the validation, and the client breaks in tests (not in a pipeline) when the server
changes shape. Pure: no I/O; imports only pydantic and the agent's pure modules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_serializer,
)

from agent.records import DeployWindow, RollbackIntent, WindowState
from common.durations import parse_duration
from common.jsonsafe import json_safe
from common.times import rfc3339

log = logging.getLogger("postflight.api")

MAX_BODY_BYTES = 64 * 1024
MAX_LABELS = 32
MAX_WINDOW_S = 7 * 86400.0
"""A deploy window longer than a week is a mistake in a pipeline, not a plan."""
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
DEPLOY_ID_PATTERN = r"^dep_[0-9A-HJKMNP-TV-Z]{26}$"
"""`dep_` + a ULID (Crockford base32: no I, L, O, U)."""

STATES: tuple[WindowState, ...] = get_args(WindowState)
RuleOutcome = Literal["pass", "fail", "inconclusive"]
RollbackStateName = Literal["pending", "delivered", "failed", "skipped"]

# --- time ---------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""Far enough from year 9999 that `deployed_at + window` always formats."""


def parse_rfc3339(value: Any) -> datetime:
    """An RFC 3339 timestamp with its offset (`2026-11-26T14:00:00Z`), as aware UTC.

    Stricter than pydantic's datetime parsing on purpose: a bare number or a naive
    time would be read in some unstated zone and shift the deploy window silently.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a time needs its UTC offset, e.g. 2026-11-26T14:00:00Z")
        parsed = value
    elif isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError("expected an RFC 3339 time with its offset, e.g. 2026-11-26T14:00:00Z")
        text = value.upper()
        # fromisoformat takes at most 6 fraction digits; RFC 3339 allows any number.
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid date and time") from None
    else:
        raise ValueError("expected an RFC 3339 time string, e.g. 2026-11-26T14:00:00Z")
    parsed = parsed.astimezone(UTC)
    if not _EARLIEST <= parsed < _LATEST:
        raise ValueError("the time must be between 1970 and 9000")
    return parsed


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_rfc3339),
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-11-26T14:00:00Z"]}),
]

# --- strings ------------------------------------------------------------------------


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must contain only printable characters (no control characters)")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _printable_or_empty(value: str) -> str:
    return _printable(value) if value else value


_Text = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_printable)]
Environment = Annotated[
    _Text, Field(description="A configured environment (`environments` in postflight.yaml).")
]
Version = Annotated[_Text, Field(description="1–128 printable characters.")]
LabelKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_printable)
]
LabelValue = Annotated[str, StringConstraints(max_length=256), AfterValidator(_printable_or_empty)]


def _window_seconds(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("the window must be longer than 0s")
    if seconds > MAX_WINDOW_S:
        raise ValueError("the window must be at most 7d")
    return seconds


WindowDuration = Annotated[
    float,
    BeforeValidator(_window_seconds),
    WithJsonSchema(
        {
            "type": ["string", "number"],
            "description": "How long to watch: `30s`, `10m`, `1h30m`, or seconds."
            " Defaults to the environment's `window`; at least one `interval`, at most 7d.",
            "examples": ["10m"],
        }
    ),
]


# --- requests -----------------------------------------------------------------------


class DeployRequest(BaseModel):
    """`POST /v1/deploys`: open a deploy window. Unknown fields are refused so that a
    typo (`enviroment`) fails loudly instead of watching with defaults."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "environment": "production",
                    "version": "v2.4.1",
                    "previous_version": "v2.4.0",
                    "commit": "9fceb02",
                    "window": "10m",
                    "deployed_at": "2026-11-26T14:00:00Z",
                    "labels": {"pipeline": "run-1234"},
                }
            ]
        },
    )

    environment: Environment = Field(examples=["production"])
    version: Version = Field(examples=["v2.4.1"])
    previous_version: _Text | None = Field(
        default=None, description="The version this deploy replaces.", examples=["v2.4.0"]
    )
    commit: _Text | None = Field(
        default=None, description="The revision deployed.", examples=["9fceb02"]
    )
    window: WindowDuration | None = None
    deployed_at: Timestamp | None = Field(
        default=None, description="When the deploy went live; defaults to now."
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        description="A flat map of strings (at most 32 entries), echoed back and in alerts.",
    )


class ListQuery(BaseModel):
    """`GET /v1/deploys` query parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$"),
            Field(description="Only this environment's windows."),
        ]
        | None
    ) = None
    state: WindowState | None = Field(default=None, description="Only windows in this state.")
    limit: int = Field(
        default=LIST_LIMIT_DEFAULT,
        ge=1,
        le=LIST_LIMIT_MAX,
        description="Page size, 1–200.",
    )
    cursor: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_=-]+$"),
            Field(description="The `next` value of the previous page."),
        ]
        | None
    ) = None


# --- responses ----------------------------------------------------------------------


class _Out(BaseModel):
    """Responses ignore fields they do not know, so an older client survives a newer agent."""

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        json_schema_serialization_defaults_required=True,
    )


class RuleResult(_Out):
    name: str
    source: str = Field(examples=["checks"])
    metric: str = Field(examples=["error_rate"])
    outcome: RuleOutcome = Field(
        description="`inconclusive`: no data, or a provider could not be reached;"
        " never a reason to roll back."
    )
    observed: float | None = None
    baseline: float | None = None
    threshold: str = Field(default="", examples=["max 0.05"])
    detail: str = ""
    evidence: dict[str, Any] = Field(
        default_factory=dict,
        description="Extension: the statistics behind the outcome (test statistic, p-value,"
        " effect size, failing rounds…).",
    )
    query: str | None = Field(
        default=None,
        description="Extension: the provider query the rule ran (NRQL, PromQL, Sentry query).",
    )
    link: str | None = Field(
        default=None, description="Extension: where to look at this rule's data, if known."
    )


class Verdict(_Out):
    outcome: RuleOutcome
    decided_at: Timestamp
    reason: str = ""
    rules: list[RuleResult] = Field(default_factory=list)


class Progress(_Out):
    """Extension: the latest round's judgement while no decision has been made, so a
    live window (and `postflight register --wait`) can show its rules' evidence while
    `verdict` stays `null` as the contract says."""

    outcome: Literal["pending"] = "pending"
    reason: str = ""
    rules: list[RuleResult] = Field(default_factory=list)


class FollowUpOutcome(_Out):
    name: str
    state: str = Field(description="`pending`, `delivered` or `failed`.")


class Rollback(_Out):
    state: RollbackStateName = Field(
        description="`skipped`: the environment's rollback.dry_run is true."
    )
    attempts: int = 0
    last_status: int | None = None
    requested_at: Timestamp
    then: list[FollowUpOutcome] | None = Field(
        default=None,
        description="Extension (§7): the `rollback.then` follow-ups and how each went"
        " (absent when there are none).",
    )

    @model_serializer(mode="wrap")
    def _without_empty_then(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("then") is None:
            data.pop("then", None)
        return data


class Links(_Out):
    self_: str = Field(alias="self", examples=["/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"])
    page: str | None = Field(
        default=None,
        description="The deploy's page with a signed, expiring, read-only `?view=` token"
        " (contract §8); `null` when `server.ui` is false.",
    )


class Deploy(_Out):
    """The deploy object: one window, from registration to its final state."""

    id: str = Field(pattern=DEPLOY_ID_PATTERN, examples=["dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"])
    environment: str
    version: str
    previous_version: str | None = None
    commit: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    state: WindowState = Field(
        description="`failed`: the verdict failed and no rollback was delivered;"
        " `rolled_back`: the rollback webhook accepted it."
    )
    deployed_at: Timestamp
    ends_at: Timestamp
    rounds: int = 0
    verdict: Verdict | None = Field(default=None, description="`null` until a decision.")
    progress: Progress | None = Field(
        default=None,
        description="Extension: the rules' latest outcomes while `verdict` is `null`.",
    )
    rollback: Rollback | None = Field(
        default=None, description="`null` unless a rollback was requested."
    )
    links: Links
    warnings: list[str] | None = Field(
        default=None,
        description="Extension, in the `POST /v1/deploys` answer only: one sentence per rule"
        " whose bound is below the smallest change it can detect by the window's end, at"
        " the traffic its baseline period saw (checks rules, sequential policy; absent when"
        " there are none).",
        examples=[
            [
                "rule errors: its max_increase bound is tighter than the smallest change it"
                " can detect by the window's end at the baseline's traffic (3 samples a"
                " round): error_rate 0.0412 or more"
            ]
        ],
    )


class DeployList(_Out):
    items: list[Deploy]
    next: str | None = Field(description="Cursor for the next page; `null` on the last.")


class FieldError(_Out):
    loc: list[str | int] = Field(examples=[["version"]])
    msg: str


class Problem(_Out):
    """`application/problem+json` (RFC 9457)."""

    type: str = Field(examples=["urn:postflight:problem:invalid-fields"])
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(
        default=None, description="Per field, for 422 Invalid fields."
    )


class Health(_Out):
    status: Literal["ok"]


class Readiness(_Out):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(examples=[{"config": True, "store": True}])


# --- rendering ----------------------------------------------------------------------


def deploy_path(window_id: str) -> str:
    return f"/v1/deploys/{window_id}"


def _rules(stored: dict[str, Any]) -> list[dict[str, Any]]:
    rules = []
    for rule in stored.get("rules") or []:
        if isinstance(rule, dict):
            rule = dict(rule)
            for key in ("observed", "baseline"):
                rule[key] = json_safe(rule.get(key))
            if not isinstance(rule.get("evidence"), dict):
                rule.pop("evidence", None)
            rules.append(rule)
    return rules


def _judgement(window: DeployWindow) -> tuple[Verdict | None, Progress | None]:
    """The stored latest judgement, split into a decided `verdict` or a live `progress`."""
    stored = window.verdict
    if not stored:
        return None, None
    decided = stored.get("outcome") in get_args(RuleOutcome)
    data = dict(stored)
    data["rules"] = _rules(stored)
    try:
        if not decided:
            # An interim judgement (`pending`, `continue`) is not a decision.
            data["outcome"] = "pending"
            return None, Progress.model_validate(data)
        decided_at = data.get("decided_at")
        if isinstance(decided_at, int | float) and not isinstance(decided_at, bool):
            data["decided_at"] = datetime.fromtimestamp(float(decided_at), UTC)
        elif decided_at is None:
            fallback = window.ended_at or window.created_at
            data["decided_at"] = datetime.fromtimestamp(fallback, UTC)
        return Verdict.model_validate(data), None
    except ValidationError as exc:
        log.warning(
            "stored verdict of %s does not fit the API shape: %s",
            window.id,
            exc.errors(include_url=False, include_input=False),
            extra={"deploy_id": window.id, "environment": window.environment},
        )
        return None, None


def deploy_model(
    window: DeployWindow,
    rollback: RollbackIntent | None = None,
    then: Mapping[str, str] | None = None,
    *,
    page: str | None = None,
) -> Deploy:
    """The deploy object of contract §2 for a stored window and its rollback intent
    (`then`: follow-up name → state); `page` is the link to its deploy page
    (`agent.web.links.deploy_page_url`)."""
    verdict, progress = _judgement(window)
    return Deploy(
        id=window.id,
        environment=window.environment,
        version=window.version,
        previous_version=window.previous_version,
        commit=window.commit,
        labels=dict(window.labels),
        state=window.state,
        deployed_at=datetime.fromtimestamp(window.deployed_at, UTC),
        ends_at=datetime.fromtimestamp(window.ends_at, UTC),
        rounds=window.rounds,
        verdict=verdict,
        progress=progress,
        rollback=(
            Rollback(
                state=rollback.state,
                attempts=rollback.attempts,
                last_status=rollback.last_status,
                requested_at=datetime.fromtimestamp(rollback.requested_at, UTC),
                then=[FollowUpOutcome(name=k, state=v) for k, v in then.items()] if then else None,
            )
            if rollback is not None
            else None
        ),
        links=Links(self_=deploy_path(window.id), page=page),
    )


def deploy_object(
    window: DeployWindow,
    rollback: RollbackIntent | None = None,
    then: Mapping[str, str] | None = None,
    *,
    page: str | None = None,
) -> dict[str, Any]:
    """`deploy_model` as the JSON-ready dict the API sends."""
    data = deploy_model(window, rollback, then, page=page).model_dump(mode="json", by_alias=True)
    data.pop("warnings", None)  # only the registration's answer carries them
    return data
