"""Errors as `application/problem+json` (RFC 9457), the only shape an API error takes.

Handlers raise `ApiProblem`; the error middleware renders it. Keeping one
exception type (rather than building responses inline) means every 4xx carries
the same fields and can never be swallowed by a later `return`. No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, ContentLengthError, TransferEncodingError
from pydantic import ValidationError

PROBLEM_CONTENT_TYPE = "application/problem+json"

Loc = list[str | int]

# Stable, dereference-free identifiers: clients switch on `type`, humans read `title`.
_TYPES: dict[int, str] = {
    400: "malformed-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    417: "expectation-failed",
    422: "invalid-fields",
    500: "internal-error",
    503: "not-ready",
}


def problem_type(status: int, slug: str | None = None) -> str:
    """`urn:postflight:problem:<slug>`: a URI that names the problem without a website."""
    return f"urn:postflight:problem:{slug or _TYPES.get(status, f'http-{status}')}"


def status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiProblem(Exception):
    """A request the API refuses; rendered by the error middleware as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        slug: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or status_title(status)
        self.type = problem_type(status, slug)
        self.errors = [dict(e) for e in errors] if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        for key, value in self.extra.items():
            body.setdefault(key, value)
        return body

    def response(self) -> web.Response:
        return problem_response(self.status, self.body(), self.headers)


def problem_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type=PROBLEM_CONTENT_TYPE,
        charset="utf-8",
        headers=dict(headers or {}),
    )


def from_http_exception(exc: web.HTTPException, *, meant: str | None = None) -> web.Response:
    """aiohttp's own 404/405/413… re-dressed as problems, keeping headers such as `Allow`;
    `meant`: the route a 404's path names without its trailing slash."""
    status = exc.status
    hint = f" (did you mean {meant} without the trailing slash?)" if meant else ""
    detail = {
        404: f"no such route{hint}; see /v1/openapi.json",
        405: f"method not allowed; allowed: {exc.headers.get('Allow', '')}".rstrip("; "),
        413: "the request body is larger than the API accepts",
        417: "the only Expect this server takes is 100-continue",
    }.get(status) or (exc.text or status_title(status))
    if detail.startswith(f"{status}:"):
        detail = detail.partition(":")[2].strip() or status_title(status)
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    problem = ApiProblem(status, detail, headers=headers)
    return problem.response()


def decoded_codings() -> frozenset[str]:
    """The `Content-Encoding`s aiohttp decodes here: gzip and deflate always, br and zstd
    with their libraries (read as its parser reads them, when it meets one)."""
    from aiohttp import http_parser

    codings = {"", "identity", "gzip", "deflate"}
    if getattr(http_parser, "HAS_BROTLI", False):  # imported there, not exported
        codings.add("br")
    if getattr(http_parser, "HAS_ZSTD", False):
        codings.add("zstd")
    return frozenset(codings)


def undecoded_coding(given: str | None = None) -> ApiProblem:
    """The 415 for a body in a content coding this agent does not decode (RFC 9110
    §15.5.16). `given` is quoted, clipped, when it came from the route's header; the
    parser's refusal quotes nothing of the request."""
    said = f" ({given[:64]!r})" if given is not None else ""
    usable = ", ".join(sorted(decoded_codings() - {"", "identity"}))
    return ApiProblem(
        415,
        f"the body's Content-Encoding{said} is not one this agent decodes; send it"
        f" uncompressed, or as one of: {usable}",
        slug="unsupported-content-encoding",
    )


CHUNKED_DETAIL = (
    "Transfer-Encoding must end in chunked, and each chunk be its size in hex, CRLF, "
    "that many bytes, CRLF; a 0-size chunk ends the body"
)


def unreadable_body(exc: BaseException) -> ApiProblem:
    """The 400 for a body that broke while a route read it, saying which framing broke.

    aiohttp hands a route `RequestPayloadError` whose cause is the parser's error;
    neither's text is copied (the parser's can quote the body)."""
    cause = exc.__cause__ or exc
    if isinstance(cause, ContentEncodingError):
        detail = (
            "the body does not decode as its Content-Encoding says; "
            "send it uncompressed, or compressed as declared"
        )
    elif isinstance(cause, TransferEncodingError):
        detail = CHUNKED_DETAIL
    elif isinstance(cause, ContentLengthError):
        detail = "the body ended before its Content-Length"
    else:  # a reset connection, or a parser error without a cause
        detail = f"the request body could not be read ({type(exc).__name__})"
    return ApiProblem(400, detail)


def _clean_msg(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _json_kind(value: Any) -> str:
    """What a JSON value is, in words (the value itself is not said back)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def validation_errors(
    exc: ValidationError,
    *,
    prefix: Iterable[str | int] = (),
    known_fields: Iterable[str] = (),
    field: str = "field",
) -> list[dict[str, Any]]:
    """pydantic errors as `[{loc, msg}]`, written for the person who sent the request;
    `field`: what one of `known_fields` is to them (a GET's are query parameters).

    The raw input is deliberately not echoed back: it can be large or carry a secret.
    """
    fields = sorted(known_fields)
    out: list[dict[str, Any]] = []
    # the input is read for its JSON type alone (`_json_kind`), never echoed
    for error in exc.errors(include_url=False, include_context=True):
        loc: Loc = [*prefix, *(p for p in error["loc"] if p != "[key]")]
        msg = _clean_msg(str(error["msg"]))
        kind = error["type"]
        if kind == "extra_forbidden" and fields:
            msg = f"unknown {field}; expected one of: {', '.join(fields)}"
        elif kind in ("model_type", "model_attributes_type", "dict_type") and not error["loc"]:
            msg = "the body must be a JSON object"
        elif kind == "missing":
            msg = f"{field} required"
        elif kind == "string_type":
            # pydantic's "Input should be a valid string" for a label's `1` or `true`
            given = _json_kind(error.get("input"))
            msg = f"must be a JSON string, not {given}" + (
                ": write it in quotes" if given in ("a number", "true or false") else ""
            )
        elif kind == "dict_type":
            msg = f"must be a JSON object, not {_json_kind(error.get('input'))}"
        elif kind == "string_too_short" and (error.get("ctx") or {}).get("min_length") == 1:
            msg = "must not be empty"
        if "[key]" in error["loc"]:  # a map's key, not its value (pydantic's loc says so)
            msg = f"{msg} (the key)"
        out.append({"loc": loc, "msg": msg})
    return out


def invalid_fields(
    errors: list[dict[str, Any]], detail: str | None = None, *, whole: str = "body"
) -> ApiProblem:
    """A 422; its detail names the first error's field, or `whole` (what was read: the
    body, a GET's query) for an error of no name."""
    if detail is None:
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"]) or whole
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        detail = f"{where}: {first['msg']}{more}"
    return ApiProblem(422, detail, title="Invalid fields", errors=errors)
