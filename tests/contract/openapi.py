"""Check a request or an answer against Sentry's published OpenAPI document.

Test helper only; it judges, it never changes what it is given. The document is the
part of `getsentry/sentry-api-schema`'s `openapi-derefed.json` that Postflight calls
(`sentry_openapi.json` beside this file; its `info.x-vendored` says which version).

Why a small checker on `openapi-schema-validator` (already installed with
`openapi-spec-validator`) rather than `openapi-core`: the fakes are aiohttp servers
and the clients aiohttp sessions, so requests are checked from what the fake
recorded (`tests.fakes._server.Seen`), which is a method, a path, query pairs and a
JSON body; the schema checks (OpenAPI 3.0 `nullable`, formats) are the library's.

Query parameters are strict: a parameter the document does not list for the
operation is an error (Sentry would ignore it, so it would silently do nothing), as
is a value that does not fit its schema. Answers are checked against the schema of
their status; a status the operation does not document is an error unless it is one
every Sentry endpoint can give (401, 403, 404, 429, 5xx).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator, oas30_format_checker

DOCUMENT = Path(__file__).with_name("sentry_openapi.json")
GENERIC_STATUSES = frozenset({401, 403, 404, 429, 500, 502, 503, 504})


@functools.cache
def document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return data


@dataclass(frozen=True)
class Operation:
    template: str
    method: str
    spec: dict[str, Any]


def operation(method: str, path: str) -> Operation:
    """The documented operation a concrete path and method belong to."""
    for template, item in document()["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return Operation(template, method.lower(), item[method.lower()])
    raise AssertionError(f"{method} {path} is not an operation of Sentry's public API")


def _errors(schema: dict[str, Any], value: Any) -> list[str]:
    validator = OAS30Validator(schema, format_checker=oas30_format_checker)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(value)
    ]


def _coerce(schema: dict[str, Any], text: str) -> Any:
    """A query string value as the type its schema names (integers, booleans)."""
    kinds = [schema.get("type")] + [s.get("type") for s in schema.get("anyOf", [])]
    if "integer" in kinds and re.fullmatch(r"-?\d+", text):
        return int(text)
    if "boolean" in kinds and text in ("true", "false", "1", "0"):
        return text in ("true", "1")
    return text


def request_errors(
    method: str, path: str, query: Iterable[tuple[str, str]], body: Any = None
) -> list[str]:
    """What in this request the document does not allow (empty: it conforms)."""
    op = operation(method, path)
    params = {p["name"]: p for p in op.spec.get("parameters", []) if p["in"] == "query"}
    given: dict[str, list[str]] = {}
    for name, text in query:
        given.setdefault(name, []).append(text)
    problems: list[str] = []
    for name, values in given.items():
        param = params.get(name)
        if param is None:
            problems.append(f"query parameter {name!r} is not documented for {op.template}")
            continue
        schema = param["schema"]
        if schema.get("type") == "array":
            value: Any = [_coerce(schema.get("items", {}), v) for v in values]
        elif len(values) > 1:
            problems.append(f"query parameter {name!r} given {len(values)} times")
            continue
        else:
            value = _coerce(schema, values[0])
        problems += [f"query {name}: {e.removeprefix('(root): ')}" for e in _errors(schema, value)]
    for name, param in params.items():
        if param.get("required") and name not in given:
            problems.append(f"required query parameter {name!r} is missing")
    request_body = op.spec.get("requestBody")
    if request_body is not None:
        schema = request_body["content"]["application/json"]["schema"]
        if body is None and request_body.get("required"):
            problems.append("the request body is required")
        elif body is not None:
            problems += [f"body {e}" for e in _errors(schema, body)]
    elif body is not None:
        problems.append(f"{op.template} takes no request body")
    return problems


def response_errors(method: str, path: str, status: int, body: Any) -> list[str]:
    """What in this answer the document does not allow (empty: it conforms)."""
    op = operation(method, path)
    documented = op.spec.get("responses", {}).get(str(status))
    if documented is None:
        if status in GENERIC_STATUSES:
            return []
        return [f"status {status} is not documented for {method.upper()} {op.template}"]
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return []
    return [f"answer {e}" for e in _errors(schema, body)]


def example(method: str, template: str, status: int) -> Any:
    """The document's own example answer (the fakes build on it)."""
    content = document()["paths"][template][method]["responses"][str(status)]["content"]
    examples = content["application/json"]["examples"]
    return next(iter(examples.values()))["value"]
