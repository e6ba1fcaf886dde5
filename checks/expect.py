"""What a response must look like: the `expect:` block of http checks, smoke steps and load checks.

Pure: no I/O. The caller hands over status, headers, body and latency, so the
rules are compiled once per check and tested without a server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

# Why jsonpath-ng: it is maintained (regular releases, Python 3.11–3.13), pure
# Python, and its `ext` parser covers filters (`[?(@.state == "up")]`), which the
# older jsonpath-rw never got; it is also what the settings validate with, so a
# path accepted at start-up is the path evaluated at run time. Imported by
# `compile_path`, when a configuration names a key: its `ext` grammar's tables cost
# every process that loads the check types (the daemon, `validate-config`) about
# 10 ms of CPU, and a configuration that names none never uses it.
from pydantic import BaseModel, ConfigDict, Field, field_validator

from checks.request import json_value_problem
from common.durations import Duration, format_duration
from common.redaction import REDACTED, SENSITIVE_KEY, Redactor, snippet, truncate

if TYPE_CHECKING:
    from jsonpath_ng import JSONPath

MismatchKind = Literal["status", "latency", "assertion"]

_STATUS = re.compile(r"^[1-5](?:xx|\d\d)$", re.IGNORECASE)
_GOT_LIMIT = 120


def compile_path(key: str) -> JSONPath:
    """A JSONPath (`$.data.items[0].id`) when `key` starts with `$`, else that top-level key.

    A plain key is taken literally, so `status`, `x-request-id` or `a.b` name one
    field of the top-level object and never trip the JSONPath grammar.
    """
    if key.startswith("$"):
        from jsonpath_ng.ext.parser import parse as parse_jsonpath

        try:
            return parse_jsonpath(key)
        except Exception as exc:  # the grammar raises bare Exception for some inputs
            raise ValueError(f"{key!r} is not a valid JSONPath: {exc}") from None
    from jsonpath_ng import Child, Fields, Root

    return Child(Root(), Fields(key))


def _check_status_item(item: int | str) -> int | str:
    if isinstance(item, bool):
        raise ValueError("a status is a code like 200 or a class like 2xx")
    if isinstance(item, int):
        if not 100 <= item <= 599:
            raise ValueError(f"{item} is not an HTTP status (100–599)")
        return item
    text = item.strip()
    if not _STATUS.match(text):
        raise ValueError(f"{item!r} is not a status; write a code like 200 or a class like 2xx")
    return int(text) if text.isdigit() else text.lower()


class Expect(BaseModel):
    """The `expect:` block: every condition a response must meet."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    status: int | str | list[int | str] = Field(
        "2xx", description="A code (200), a class (`2xx`), or a list of either."
    )
    max_latency: Duration | None = Field(
        None, description="Slowest acceptable response, body included."
    )
    json_fields: dict[str, Any] = Field(
        default_factory=dict,
        alias="json",
        description="Expected values by top-level key or by JSONPath (`$.a.b`); "
        "every value the path finds must equal the expected one.",
    )
    body_regex: str | None = Field(None, description="A regular expression the body must contain.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Response headers: each value must equal the given text or fully match "
        "it as a regular expression.",
    )

    @field_validator("status")
    @classmethod
    def _valid_status(cls, value: int | str | list[int | str]) -> int | str | list[int | str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("list at least one status")
            return [_check_status_item(v) for v in value]
        return _check_status_item(value)

    @field_validator("json_fields")
    @classmethod
    def _valid_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            compile_path(key)
        problem = json_value_problem(list(value.values()))
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("body_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One unmet condition, worded for the person reading the alert."""

    kind: MismatchKind
    subject: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.subject}: expected {self.expected}, got {self.got}"


class Body:
    """A response body, parsed as JSON at most once however many conditions read it."""

    __slots__ = ("_doc", "_error", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._doc: Any = None
        self._error: str | None = None

    def json(self) -> Any:
        """The parsed document; raises ValueError when the body is not JSON."""
        if self._doc is None and self._error is None:
            try:
                self._doc = json.loads(self.raw)
            except ValueError as exc:
                self._error = str(exc)
            except RecursionError:  # the target's body, not a bug of the check reading it
                self._error = "JSON nested too deeply to read"
        if self._error is not None:
            raise ValueError(self._error)
        return self._doc


def json_equal(expected: Any, got: Any) -> bool:
    """JSON equality: `1 == 1.0`, but `true` is not `1` (as Python would have it)."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    if isinstance(expected, int | float) and isinstance(got, int | float):
        return expected == got
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(
            json_equal(v, got[k]) for k, v in expected.items()
        )
    if isinstance(expected, list | tuple) and isinstance(got, list):
        return len(expected) == len(got) and all(
            json_equal(a, b) for a, b in zip(expected, got, strict=True)
        )
    return type(expected) is type(got) and bool(expected == got)


def show(value: Any, redactor: Redactor) -> str:
    """A JSON value as it appears in a message: compact, redacted, truncated."""
    text = json.dumps(redactor.value(value), ensure_ascii=False, separators=(",", ":"))
    return truncate(redactor.text(text), _GOT_LIMIT)


def describe_status(spec: int | str | list[int | str]) -> str:
    items = spec if isinstance(spec, list) else [spec]
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


class Expectation:
    """An `Expect` compiled once per check: regexes, JSONPaths and status sets built up front."""

    __slots__ = (
        "_body_regex",
        "_classes",
        "_codes",
        "_headers",
        "_json",
        "max_latency",
        "needs_body",
        "status_text",
    )

    def __init__(self, expect: Expect) -> None:
        items = expect.status if isinstance(expect.status, list) else [expect.status]
        self._codes = frozenset(i for i in items if isinstance(i, int))
        self._classes = frozenset(int(i[0]) for i in items if isinstance(i, str))
        self.status_text = describe_status(expect.status)
        self.max_latency = expect.max_latency
        """The bound a latency must be within (seconds), if any: a failure past it less the
        agent's own stall is the target's (`checks.lag.verdict_on`)."""
        self._json = tuple(
            (key, compile_path(key), value) for key, value in expect.json_fields.items()
        )
        self._body_regex = re.compile(expect.body_regex) if expect.body_regex else None
        self._headers = tuple(
            (name, value, _maybe_regex(value)) for name, value in expect.headers.items()
        )
        self.needs_body = bool(self._json or self._body_regex)
        """Whether the body must be kept and decoded; when not, only its size matters."""

    def status_ok(self, status: int) -> bool:
        return status in self._codes or status // 100 in self._classes

    def check(
        self,
        status: int,
        headers: Mapping[str, str],
        body: Body,
        latency_s: float,
        redactor: Redactor,
    ) -> list[Mismatch]:
        """Every unmet condition: status, else content; then latency.

        Content is not judged when the status is wrong: an error page failing
        every JSON assertion says nothing the status did not.
        """
        if not self.status_ok(status):
            found = [Mismatch("status", "status", self.status_text, str(status))]
        else:
            found = self._content(headers, body, redactor)
        if self.max_latency is not None and latency_s > self.max_latency:
            found.append(
                Mismatch(
                    "latency",
                    "latency",
                    f"≤ {format_duration(self.max_latency)}",
                    format_duration(latency_s),  # `got 3ms` of 3.4 ms past `≤ 3ms` read as none
                )
            )
        return found

    def _content(
        self, headers: Mapping[str, str], body: Body, redactor: Redactor
    ) -> list[Mismatch]:
        found: list[Mismatch] = []
        if self._json:
            try:
                doc = body.json()
            except ValueError:
                found.append(
                    Mismatch("assertion", "body", "JSON", repr(snippet(body.raw, redactor, 80)))
                )
            else:
                for key, path, expected in self._json:
                    values = [m.value for m in path.find(doc)]
                    wrong = [v for v in values if not json_equal(expected, v)]
                    if not values:
                        found.append(
                            Mismatch("assertion", key, show(expected, redactor), "no such field")
                        )
                    elif wrong:
                        found.append(
                            Mismatch(
                                "assertion", key, show(expected, redactor), show(wrong[0], redactor)
                            )
                        )
        if self._body_regex is not None:
            text = body.raw.decode("utf-8", errors="replace")
            if not self._body_regex.search(text):
                found.append(
                    Mismatch(
                        "assertion",
                        "body",
                        f"to match /{self._body_regex.pattern}/",
                        repr(snippet(body.raw, redactor, 80)),
                    )
                )
        for name, value, pattern in self._headers:
            got = headers.get(name)
            if got is not None and (
                got == value or (pattern is not None and pattern.fullmatch(got))
            ):
                continue
            shown = (
                "no such header"
                if got is None
                else REDACTED
                if SENSITIVE_KEY.search(name)
                else repr(truncate(redactor.text(got), _GOT_LIMIT))
            )
            found.append(Mismatch("assertion", f"header {name}", repr(value), shown))
        return found


def _maybe_regex(value: str) -> re.Pattern[str] | None:
    """Header values are compared as text first; if the text is also a regex, it may match."""
    try:
        return re.compile(value)
    except re.error:
        return None
