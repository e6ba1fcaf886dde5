"""Request fields shared by http checks, smoke steps and load checks; how they become a `Request`.

Pure: no I/O. Bodies are serialised once when a check is built, not per probe.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from yarl import URL

_METHOD = re.compile(r"^[A-Z][A-Z0-9_-]{0,31}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def json_value_problem(value: Any) -> str | None:
    """Why `value`, read from YAML, is no JSON value (None when it is one): NaN equals
    nothing, so an expectation of it fails every probe, and a date, bytes or a set
    (YAML's explicit tags) crashed every run, "Object of type date is not JSON
    serializable"."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN is no JSON value (it equals nothing); write a number, or null"
        return "infinity is no JSON value; write a number"
    if value is None or isinstance(value, str | int | float | bool):
        return None
    if isinstance(value, dict):
        return next(filter(None, map(json_value_problem, value.values())), None)
    if isinstance(value, list):
        return next(filter(None, map(json_value_problem, value)), None)
    kind = {
        datetime.date: "a date",
        datetime.datetime: "a date",
        bytes: "bytes",
        set: "a set",
    }.get(type(value), f"a {type(value).__name__}")
    return f"{kind} is no JSON value; write text (quoted), a number, a list or a mapping"


class RequestSpec(BaseModel):
    """One HTTP request as users write it."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    path: str = Field("/", description="Joined to the environment's base_url; may carry a query.")
    url: str | None = Field(
        None,
        description="An absolute http(s) URL, instead of `path`, for a target outside base_url.",
    )
    method: str = Field("GET", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    body: str | None = Field(None, description="A raw request body.")
    json_body: Any = Field(
        None, alias="json", description="A JSON request body (sets Content-Type)."
    )

    @field_validator("json_body")
    @classmethod
    def _json_body(cls, value: Any) -> Any:
        problem = json_value_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("method")
    @classmethod
    def _valid_method(cls, value: str) -> str:
        method = value.strip().upper()
        if not _METHOD.match(method):
            raise ValueError(f"{value!r} is not an HTTP method")
        return method

    @field_validator("path")
    @classmethod
    def _valid_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a path starts with /; for another host write `url:` instead")
        return value

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parsed = URL(value)
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("an absolute http:// or https:// URL is needed")
        return value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if "\r" in text or "\n" in text:
                raise ValueError(f"header {name!r} has a line break in its value")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> Self:
        if self.body is not None and self.json_body is not None:
            raise ValueError("give either `body` or `json`, not both")
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError("give either `path` or `url`, not both")
        return self


class ClientOptions(BaseModel):
    """How a check's client treats TLS and redirects: the same fields for every kind that
    sends HTTP requests (`http`, `smoke`, `load`)."""

    verify_tls: bool = Field(True, description="Verify the target's TLS certificate.")
    follow_redirects: bool = Field(
        True, description="Follow 3xx responses; when false the 3xx itself is judged."
    )
    max_redirects: int = Field(
        10, ge=0, le=50, description="Redirects followed before the probe fails (`status`)."
    )


@dataclass(frozen=True, slots=True)
class Request:
    """Everything of a request but its URL (it depends on the window's target) and its
    timeout (on when the round ends): built once per check, or per smoke step, and handed
    whole to `checks.exchange` and on to its fallbacks."""

    method: str
    headers: dict[str, str]
    data: bytes | None
    allow_redirects: bool = True
    max_redirects: int = 10
    verify_tls: bool = True
    keep_body: bool = False


def sent_with(
    method: str,
    headers: dict[str, str],
    data: bytes | None,
    options: ClientOptions,
    keep_body: bool,
) -> Request:
    """The `Request` for these parts, under a check's `ClientOptions`."""
    return Request(
        method,
        headers,
        data,
        allow_redirects=options.follow_redirects,
        max_redirects=options.max_redirects,
        verify_tls=options.verify_tls,
        keep_body=keep_body,
    )


def prepared(spec: RequestSpec, options: ClientOptions, keep_body: bool) -> Request:
    """The `Request` an http or load check sends on every run."""
    headers, data = encode_body(spec)
    return sent_with(spec.method, headers, data, options, keep_body)


def join_url(base_url: str, path: str) -> URL:
    """`base_url` + `path`, keeping any path prefix of the base (`https://x/app` + `/health`)."""
    return URL(base_url.rstrip("/") + path)


def target_url(spec: RequestSpec, base_url: str) -> URL:
    return URL(spec.url) if spec.url is not None else join_url(base_url, spec.path)


def encode_body(spec: RequestSpec) -> tuple[dict[str, str], bytes | None]:
    """Headers and body bytes to send; JSON gets its Content-Type unless one was given."""
    headers = dict(spec.headers)
    if spec.json_body is not None:
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return headers, json.dumps(spec.json_body, separators=(",", ":")).encode()
    if spec.body is not None:
        return headers, spec.body.encode()
    return headers, None
