"""The wire models of API v1: what handlers validate with, what the OpenAPI document is
generated from, and what the CLI client parses responses into.

One set of models for all three is the point: the documentation cannot drift from
the validation, and the client breaks in tests (not in a pipeline) when the server
changes shape. Pure: no I/O; imports only pydantic and the agent's pure modules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from agent.records import (
    DEPLOY_ID_PATTERN,
    DeployState,
    DeployWindow,
    FollowUpState,
    RollbackIntent,
    WindowState,
)
from common.durations import DURATION_TEXT_PATTERN, parse_duration
from common.jsonsafe import json_safe
from common.times import rfc3339
from common.words import name_refused

log = logging.getLogger("postflight.api")

MAX_BODY_BYTES = 64 * 1024
MAX_LABELS = 32
MAX_WINDOW_S = 7 * 86400.0
"""A deploy window longer than a week is a mistake in a pipeline, not a plan."""
MAX_SCHEDULE_AHEAD_S = 3600.0
"""A `deployed_at` further ahead than this is a mistake (a wrong zone, a typo), not a plan."""
CLOCK_SKEW_S = 5.0
"""A pipeline's clock may be this far off ours: a `deployed_at` up to this far ahead
counts as now, and a window that ended less than this ago is still accepted."""
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
CURSOR_PATTERN = rf"^[0-9]{{1,12}}(\.[0-9]{{1,20}})?_{DEPLOY_ID_PATTERN.removeprefix('^')}"
"""`<created_at>_<deploy id>`: every string of this shape is a position in the list, so
the document's pattern says exactly which cursors the server takes."""

RuleOutcome = Literal["pass", "fail", "inconclusive"]
RollbackStateName = Literal["pending", "delivered", "failed", "skipped"]

# --- time ---------------------------------------------------------------------------

IDEMPOTENCY_KEY_PATTERN = r"^[ -~]{1,255}$"
"""1–255 printable ASCII characters (the header's value, as HTTP delivers it)."""

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
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError("the time must be between 1970 and 9000") from None
    if not _EARLIEST <= parsed < _LATEST:
        raise ValueError("the time must be between 1970 and 9000")
    return parsed


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_rfc3339),
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

# --- strings ------------------------------------------------------------------------

# One regular expression is both the document's `pattern` and the server's check, so the
# two cannot disagree: no control characters (C0, DEL, C1), no invisible format characters
# (zero-width spaces, bidirectional marks and overrides with the Arabic letter mark, BOM,
# the Mongolian vowel separator, interlinear annotation marks), no line separators, and
# not only spaces (with the letters drawn as blanks: Hangul fillers, the blank braille
# pattern). The zero-width joiners (ZWNJ, ZWJ) are how Persian, Indic scripts and emoji
# sequences (woman, ZWJ, laptop) are written: taken beside other characters, never alone.
# Spaces are listed, not `\\s`, which means other things in ECMA and Python regexes.
# (Lone surrogates cannot be in a pattern either; `read_json_body` refuses them.)
_HIDDEN = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f"
    r"\ufeff\ufff9-\ufffb"
)
_JOINERS = r"\u200c\u200d"
_SPACES = r" \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u115f\u1160\u2800\u3164\uffa0"
_VISIBLE = f"[^{_HIDDEN}]"
_VISIBLE_NOT_SPACE = f"[^{_SPACES}{_JOINERS}{_HIDDEN}]"
TEXT_PATTERN = f"^{_VISIBLE}*{_VISIBLE_NOT_SPACE}{_VISIBLE}*$"
TEXT_OR_EMPTY_PATTERN = f"^({_VISIBLE}*{_VISIBLE_NOT_SPACE}{_VISIBLE}*)?$"
NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
"""How `postflight.yaml` names environments (`agent.settings.Name`)."""


def _matching(pattern: str, message: str | Callable[[str], str]) -> AfterValidator:
    """`pattern` checked, refused with `message` (or what it says of the value)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message(value) if callable(message) else message)
        return value

    return AfterValidator(check)


def _name_msg(value: str) -> str:
    """As the configuration says it (`common.words.name_refused`): `producción` was
    'not an environment name (letters, …)', which ó is."""
    return f"not an environment name: {name_refused(value)}"


_PRINTABLE_MSG = "must be printable characters (no control or invisible ones), not only spaces"
_PRINTABLE = _matching(TEXT_PATTERN, _PRINTABLE_MSG)
_PRINTABLE_SCHEMA = Field(json_schema_extra={"pattern": TEXT_PATTERN})

_Text = Annotated[
    str, StringConstraints(min_length=1, max_length=128), _PRINTABLE, _PRINTABLE_SCHEMA
]
Environment = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    _matching(NAME_PATTERN, _name_msg),
    Field(
        json_schema_extra={"pattern": NAME_PATTERN},
        description="A configured environment (`environments` in postflight.yaml).",
    ),
]
Version = Annotated[_Text, Field(description="1–128 printable characters.")]
Reason = Annotated[
    str, StringConstraints(min_length=1, max_length=1000), _PRINTABLE, _PRINTABLE_SCHEMA
]
"""A manual rollback's reason: it goes into logs, alerts, the webhook's body and Vercel's
description, so no control or invisible characters (a terminal escape, a line break)."""
LabelKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64), _PRINTABLE, _PRINTABLE_SCHEMA
]
LabelValue = Annotated[
    str,
    StringConstraints(max_length=256),
    _matching(TEXT_OR_EMPTY_PATTERN, _PRINTABLE_MSG),
    Field(json_schema_extra={"pattern": TEXT_OR_EMPTY_PATTERN}),
]


def _window_seconds(value: Any) -> float:
    """A window as the configuration takes a duration (`parse_duration`, whose pattern
    is the document's): `1h 30m` and `30S` too, where the API had a narrower one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a duration like 10m, or a number of seconds")
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
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WINDOW_S},
                {"type": "string", "pattern": DURATION_TEXT_PATTERN},
            ],
            "description": "How long to watch: `30s`, `10m`, `1h30m` (or `1h 30m`), or"
            " seconds, as the configuration writes a duration."
            " Defaults to the environment's `window`; more than 0s, at least one `interval`"
            " of the environment, at most 7d.",
            "examples": ["10m"],
        }
    ),
]


# --- requests -----------------------------------------------------------------------


def _labels_given(value: Any) -> Any:
    """`labels: null` is no labels: a pipeline that writes each optional field, null when
    it has none, was refused for this one alone (`previous_version: null` was taken).
    Too many is said as labels, where pydantic said "Dictionary should have at most 32
    items after validation, not more"."""
    if value is None:
        return {}
    if isinstance(value, dict) and len(value) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels; got {len(value)}")
    return value


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
        default=None,
        description="When the deploy goes live; defaults to now. A time ahead (at most 1h)"
        " keeps the window `scheduled` until then. A window already over when it is"
        " registered is recorded, ended `inconclusive` at once with a verdict saying why"
        " (nothing could be observed), and supersedes nothing (5s of clock skew are"
        " tolerated). One before the deployed_at of the environment's live window"
        " supersedes it as any new deploy does, its `warnings` naming that newer deploy.",
    )
    labels: Annotated[
        dict[LabelKey, LabelValue],
        BeforeValidator(_labels_given),
        WithJsonSchema(
            {
                # null is no labels ({}), as null is no value for the other optional fields
                "type": ["object", "null"],
                "maxProperties": MAX_LABELS,
                "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": TEXT_PATTERN},
                "additionalProperties": {
                    "type": "string",
                    "maxLength": 256,
                    "pattern": TEXT_OR_EMPTY_PATTERN,
                },
                "examples": [{"pipeline": "run-1234"}],
            }
        ),
    ] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        description="A flat map of strings (at most 32 entries), echoed back and in alerts;"
        " null is no labels.",
    )


EMPTY_MEANS_NOT_GIVEN = frozenset({"environment", "state", "cursor"})
"""List parameters whose empty value (`?environment=&state=&cursor=`, as the contract
spells the route) is the parameter left out. `limit=` stays an error: a page size."""


_DIGITS = re.compile(r"[0-9]+")


def _page_size(value: Any) -> Any:
    """`limit` as written in a query: digits, from 1 to `LIST_LIMIT_MAX`. pydantic read
    `1_0` as 10 and `5.0`, `+5` and ` 5` as 5, where the document says an integer, and
    said a 0 or a 500 in its own words ("Input should be greater than or equal to 1")."""
    if isinstance(value, str):
        digits = value.lstrip("0")
        if not (
            _DIGITS.fullmatch(value)
            and digits
            and len(digits) <= len(str(LIST_LIMIT_MAX))
            and int(digits) <= LIST_LIMIT_MAX
        ):
            raise ValueError(f"must be a whole number from 1 to {LIST_LIMIT_MAX}, in digits")
    return value


class ListQuery(BaseModel):
    """`GET /v1/deploys` query parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=128),
            _matching(NAME_PATTERN, _name_msg),
            Field(
                json_schema_extra={"pattern": NAME_PATTERN},
                description="Only this environment's windows.",
            ),
        ]
        | None
    ) = None
    state: DeployState | None = Field(default=None, description="Only windows in this state.")
    limit: Annotated[int, BeforeValidator(_page_size)] = Field(
        default=LIST_LIMIT_DEFAULT,
        ge=1,
        le=LIST_LIMIT_MAX,
        description="Page size, 1–200.",
    )
    cursor: (
        Annotated[
            str,
            StringConstraints(max_length=64),
            _matching(
                CURSOR_PATTERN,
                "not a cursor of this list: pass the previous page's `next` as it is",
            ),
            Field(
                json_schema_extra={"pattern": CURSOR_PATTERN},
                description="The `next` value of the previous page.",
            ),
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
    round: int | None = Field(
        default=None,
        ge=1,
        description="The round these figures are of: they are refreshed every few rounds"
        " (and at once when an outcome changes), so it may be behind the deploy's `rounds`;"
        " `null` for progress stored by an agent that did not record it.",
        examples=[3],
    )


class FollowUpOutcome(_Out):
    name: str
    state: FollowUpState = Field(
        description="`pending`: sent, or to be sent, with no answer stored yet."
    )


ROLLBACK_EXTENSIONS = ("last_error", "then")
"""The rollback object's extensions that are left out when they have nothing to say."""


def _extensions_optional(schema: dict[str, Any]) -> None:
    """`last_error` and `then` are absent when empty (`deploy_object`): never required."""
    schema["required"] = [n for n in schema.get("required", []) if n not in ROLLBACK_EXTENSIONS]


class Rollback(_Out):
    model_config = ConfigDict(json_schema_extra=_extensions_optional)

    state: RollbackStateName = Field(
        description="`skipped`: the environment's rollback.dry_run is true."
    )
    attempts: int = 0
    last_status: int | None = None
    requested_at: Timestamp
    last_error: str | None = Field(
        default=None,
        description="Extension: why the latest attempt did not deliver (`cannot connect to"
        " HOST:PORT (Connection refused)`, `timed out after 10s`, the receiver's answer"
        " in short, secrets masked); absent once delivered, and before any attempt.",
    )
    then: list[FollowUpOutcome] | None = Field(
        default=None,
        description="Extension (§7): the `rollback.then` follow-ups and how each went"
        " (absent when there are none).",
    )


class Links(_Out):
    self_: str = Field(alias="self", examples=["/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"])
    page: str | None = Field(
        default=None,
        description="The deploy's page with a signed, expiring, read-only `?view=` token"
        " (contract §8); `null` when `server.ui` is false.",
    )


def _warnings_optional(schema: dict[str, Any]) -> None:
    """`warnings` is in the registration's answer only: never a required property."""
    schema["required"] = [name for name in schema.get("required", []) if name != "warnings"]


class Deploy(_Out):
    """The deploy object: one window, from registration to its final state."""

    model_config = ConfigDict(json_schema_extra=_warnings_optional)

    id: str = Field(pattern=DEPLOY_ID_PATTERN, examples=["dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"])
    environment: str
    version: str
    previous_version: str | None = None
    commit: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    state: WindowState = Field(
        description="`watching` also before `deployed_at` (see `scheduled`);"
        " `failed`: the verdict failed and no rollback was delivered;"
        " `rolled_back`: the rollback webhook accepted it."
    )
    scheduled: bool = Field(
        default=False,
        description="Extension: a `watching` window whose `deployed_at` has not come yet"
        " (no rounds, no baseline).",
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
        description="Extension, in the `POST /v1/deploys` answer only: advice on this"
        " registration, one sentence each (absent when there is none; a deploy is never"
        " refused for it): background runs left out of the baseline (they probed a release"
        " that failed); a relative checks rule with no baseline to compare with; a rule"
        " whose bound is below the smallest change it can detect by the window's end, at"
        " the traffic its baseline period saw (sequential policy); a window that had"
        " ended before it was registered (recorded `inconclusive`); a live window it"
        " superseded that was deployed after it (a late or retried registration).",
        examples=[
            [
                "rule errors: its max_increase bound is tighter than the smallest change it"
                " can detect by the window's end at the baseline's traffic (3 samples a"
                " round): error_rate 4.12% or more"
            ]
        ],
    )

    @property
    def shown_state(self) -> DeployState:
        """The state as people read it: `scheduled` for a window not started yet."""
        return "scheduled" if self.scheduled and self.state == "watching" else self.state


class DeployList(_Out):
    items: list[Deploy]
    next: str | None = Field(description="Cursor for the next page; `null` on the last.")


class FieldError(_Out):
    loc: list[str | int] = Field(examples=[["version"]])
    msg: str


class Problem(_Out):
    """`application/problem+json` (RFC 9457). `errors` only on 422, so it is optional."""

    model_config = ConfigDict(
        extra="allow", populate_by_name=True, json_schema_serialization_defaults_required=False
    )

    type: str = Field(examples=["urn:postflight:problem:invalid-fields"])
    title: str
    status: int
    detail: str
    errors: list[FieldError] = Field(
        default_factory=list, description="Per field; only on 422 Invalid fields."
    )


class Health(_Out):
    status: Literal["ok"]


class Readiness(_Out):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(examples=[{"config": True, "store": True, "watching": True}])


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
    decided = window.judged and stored.get("outcome") in get_args(RuleOutcome)
    data = dict(stored)
    data["rules"] = _rules(stored)
    try:
        if not decided:
            # An interim judgement (`pending`, `continue`) is not a decision, nor one
            # cut off by a supersede or cancel before the window ended on it.
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


def shown_state(window: DeployWindow, now: float | None) -> DeployState:
    """The stored state, or `scheduled` for an active window before its `deployed_at`."""
    if window.state == "watching" and now is not None and now < window.deployed_at:
        return "scheduled"
    return window.state


def deploy_model(
    window: DeployWindow,
    rollback: RollbackIntent | None = None,
    then: Mapping[str, FollowUpState] | None = None,
    *,
    page: str | None = None,
    now: float | None = None,
) -> Deploy:
    """The deploy object of contract §2 for a stored window and its rollback intent
    (`then`: follow-up name → state); `page` is the link to its deploy page
    (`agent.web.links.deploy_page_url`); `now` tells a `scheduled` window from a
    watching one."""
    verdict, progress = _judgement(window)
    return Deploy(
        id=window.id,
        environment=window.environment,
        version=window.version,
        previous_version=window.previous_version,
        commit=window.commit,
        labels=dict(window.labels),
        state=window.state,
        scheduled=shown_state(window, now) == "scheduled",
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
                last_error=rollback.last_error if rollback.state != "delivered" else None,
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
    then: Mapping[str, FollowUpState] | None = None,
    *,
    page: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """`deploy_model` as the JSON-ready dict the API sends."""
    data = deploy_json(deploy_model(window, rollback, then, page=page, now=now))
    data.pop("warnings", None)  # only the registration's answer carries them
    return data


def deploy_json(deploy: Deploy) -> dict[str, Any]:
    """A deploy object as JSON, its extensions left out when empty (`warnings`, and the
    rollback's `last_error` and `then`): the API's answers and the CLI's `--json` alike.
    Here, not in a serializer on `Rollback`: one hid the rollback's fields from the
    OpenAPI document (an open `object` in their place)."""
    data: dict[str, Any] = deploy.model_dump(mode="json", by_alias=True)
    if data.get("warnings") is None:
        data.pop("warnings", None)
    shown = data.get("rollback") or {}
    for extension in ROLLBACK_EXTENSIONS:
        if extension in shown and shown[extension] is None:
            del shown[extension]
    return data


# --- list cursors -------------------------------------------------------------------


def encode_list_cursor(created_at: float, window_id: str) -> str:
    return f"{created_at!r}_{window_id}"


def decode_list_cursor(cursor: str) -> tuple[float, str]:
    created_at, _, window_id = cursor.partition("_")
    return float(created_at), window_id
