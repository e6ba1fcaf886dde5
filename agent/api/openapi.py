"""The OpenAPI 3.1 document of API v1, generated from the models the handlers validate
with (`agent.api.models`), so the documentation cannot drift from the behaviour.

Only the paths (which route, which status) are written here; every schema comes
from `model_json_schema`. Pure: no I/O; computed once and cached.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from agent import __version__
from agent.api.models import (
    EMPTY_MEANS_NOT_GIVEN,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_BODY_BYTES,
    TEXT_PATTERN,
    Deploy,
    DeployList,
    DeployRequest,
    Health,
    ListQuery,
    Problem,
    Readiness,
)
from agent.api.problems import PROBLEM_CONTENT_TYPE
from agent.api.runner import HEAD_TIMEOUT_S, MAX_FIELD_BYTES, MAX_HEADERS, MAX_LINE_BYTES
from agent.records import DEPLOY_ID_ASKED_PATTERN

_REF = "#/components/schemas/{model}"

_MODELS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (DeployRequest, "validation"),
    (ListQuery, "validation"),
    (Deploy, "serialization"),
    (DeployList, "serialization"),
    (Problem, "serialization"),
    (Health, "serialization"),
    (Readiness, "serialization"),
)

_ERRORS = {
    400: "Malformed JSON, or a body that could not be read.",
    401: "Missing or wrong bearer token (with `WWW-Authenticate: Bearer`).",
    403: "Forbidden.",
    404: "Not found.",
    409: "Conflict.",
    413: f"The body is larger than {MAX_BODY_BYTES // 1024} KiB.",
    415: "The body is not `application/json`, or is in a `Content-Encoding` the agent does"
    " not decode (gzip and deflate it does).",
    422: "Invalid fields; `errors` lists each with its `loc` and `msg`.",
    503: (
        "The store does not answer, or not yet while the agent starts, or is busy (it refused"
        " the transaction for now) (with `Retry-After`, and `Postflight-Store`: `unavailable`"
        " or `busy`): retry shortly."
    ),
}

_CHALLENGE = {
    "WWW-Authenticate": {
        "description": "`Bearer`: send `Authorization: Bearer <token>` (contract §2).",
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer"},
    }
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}


_HTTP_ERRORS = {
    400: (
        "MalformedHttp",
        "Not HTTP/1.1 the server can parse (the request line, a header, the body's framing):"
        " `type` `urn:postflight:problem:malformed-http`, `detail` says what to fix.",
    ),
    408: (
        "RequestTimeout",
        f"The request line and headers did not all arrive within {HEAD_TIMEOUT_S:g} s of the"
        " connection opening (or of the request's first byte), or the body did not arrive"
        " in time; the connection is closed.",
    ),
    414: ("UriTooLong", f"The request line is over {MAX_LINE_BYTES} bytes: send a shorter URL."),
    417: ("ExpectationFailed", "An `Expect` header other than `100-continue`."),
    431: (
        "HeadersTooLarge",
        f"A header line is over {MAX_FIELD_BYTES // 1024} KiB (name and value), or there are"
        f" more than {MAX_HEADERS} headers.",
    ),
}
"""What the HTTP server answers any operation before a route sees the request
(`agent.api.runner`): shared responses, each operation's own 400 kept."""


_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {
            "type": "string",
            "enum": ["round", "state", "rollback"],
            "description": "`round`: a stored round; `state`: the deploy object, its state"
            " changed; `rollback`: the deploy object, its verdict or rollback changed (an"
            " attempt) in the same state (`agent.web.events`).",
        },
        "data": {"type": "string", "description": "JSON: a round summary, or the deploy object."},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}


_GATE_ANSWER = (
    " A protection rule's request: where its gate stands (a request asked before too),"
    ' `{"gate": "pending" | "approved" | "rejected" | "answered", "environment": …,'
    ' "result": how the answer\'s POST went, once answered}`.'
)


def _problem(description: str, ref: dict[str, str]) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": ref}}}


def _json(description: str, ref: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref}}, **extra}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` in a query model means "may be left out"; a parameter is never null."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if "anyOf" in schema and len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**branches[0], **rest}
    return schema


@cache
def _document() -> dict[str, Any]:
    refs, top = models_json_schema(_MODELS, ref_template=_REF)

    def ref(model: type[BaseModel], mode: JsonSchemaMode = "serialization") -> dict[str, str]:
        return dict(refs[(model, mode)])

    schemas: dict[str, Any] = top.get("$defs", {})
    problem = ref(Problem)

    def errors(*codes: int, **special: str) -> dict[str, Any]:
        """A bearer operation's problems: 401 and 503 always, with their headers."""
        out = {
            str(code): _problem(special.get(f"e{code}", _ERRORS[code]), problem)
            for code in sorted({*codes, 401, 503})
        }
        out["401"]["headers"] = _CHALLENGE
        out["503"]["headers"] = _RETRY_AFTER
        return out

    # The query model's fields become the list route's parameters.
    query_schema = ListQuery.model_json_schema(ref_template=_REF)
    parameters = []
    for name, prop in query_schema["properties"].items():
        prop = _not_null(dict(prop))
        description = prop.pop("description", None)
        if name in EMPTY_MEANS_NOT_GIVEN:  # `?environment=` is the filter left out
            title = prop.pop("title", None)
            prop = {"anyOf": [prop, {"type": "string", "maxLength": 0}]}
            if title:
                prop["title"] = title
            description = f"{description or ''} Empty: not given.".strip()
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": prop}
        if description:
            param["description"] = description
        parameters.append(param)

    deploy_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": DEPLOY_ID_ASKED_PATTERN},
        "description": "A deploy id (`dep_` and a ULID, whose case is no part of it).",
    }
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    location = {"Location": {"description": "`/v1/deploys/{id}`", "schema": {"type": "string"}}}

    paths: dict[str, Any] = {
        "/v1/deploys": {
            "post": {
                "operationId": "createDeploy",
                "summary": "Open a deploy window",
                "description": "A new deploy to an environment with an active window supersedes"
                " it: the old window ends in state `superseded` and fires nothing more,"
                " whatever the `deployed_at` order. One whose `deployed_at` is before that"
                " of the live window it supersedes (a late or retried registration of an"
                " older deploy) says so in its `warnings`, naming that newer deploy.",
                "security": bearer,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                        "description": "A repeat with the same key and body returns the first"
                        " response (status 200); the same key with another body is 409. The"
                        " same request by meaning, however spelled: key order, spacing, an"
                        " optional field null or left out, a time's offset (`Z`, `+00:00`), a"
                        " window in seconds or words (`600`, `600.0`, `10m`), or left out"
                        " while the environment's window (as configured now) is the one the"
                        " key registered; a `deployed_at` left out is the first's moment.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(DeployRequest, "validation")}},
                },
                "responses": {
                    "201": _json("The window is open.", ref(Deploy), headers=location),
                    "200": _json(
                        "A replay: the first response to this Idempotency-Key.",
                        ref(Deploy),
                        headers=location,
                    ),
                    **errors(
                        400,
                        404,
                        409,
                        413,
                        415,
                        422,
                        e404="Unknown environment.",
                        e409="The Idempotency-Key was used with another body.",
                    ),
                },
            },
            "get": {
                "operationId": "listDeploys",
                "summary": "Recent deploy windows, newest first",
                "security": bearer,
                "parameters": parameters,
                "responses": {
                    "200": _json("A page of deploys.", ref(DeployList)),
                    **errors(
                        404,
                        422,
                        e404="Unknown environment: not configured, and no window of it stored.",
                        e422="Invalid or empty query parameters.",
                    ),
                },
            },
        },
        "/v1/deploys/{id}": {
            "get": {
                "operationId": "getDeploy",
                "summary": "One deploy window",
                "security": bearer,
                "parameters": [deploy_id],
                "responses": {
                    "200": _json("The deploy object.", ref(Deploy)),
                    **errors(404, e404="Unknown deploy."),
                },
            }
        },
        "/v1/deploys/{id}/cancel": {
            "post": {
                "operationId": "cancelDeploy",
                "summary": "Stop watching a deploy; nothing more fires for it",
                "security": bearer,
                "parameters": [deploy_id],
                "responses": {
                    "200": _json("The deploy object, in state `cancelled`.", ref(Deploy)),
                    **errors(404, 409, e404="Unknown deploy.", e409="The window already ended."),
                },
            }
        },
        "/v1/deploys/{id}/events": {
            "get": {
                "operationId": "deployEvents",
                "summary": "Live events of one deploy window (Server-Sent Events)",
                "description": "First the current deploy object as a `state` event; then a"
                " `round` event after each stored round (`data`: the round summary and the"
                " window's `progress`), a `state` event (`data`: the deploy object) on each"
                " change of state, and a `rollback` event (the same `data`) when only its"
                " verdict or rollback changed. The stream ends once the window has ended and"
                " no rollback delivery is pending. Every event has an `id`: a reconnect with"
                " it as `Last-Event-ID` gets what it missed, and nothing twice.",
                "security": [{"bearer": []}, {"view": []}],
                "parameters": [
                    deploy_id,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "The `id` of the last event a reconnecting client had"
                        " (an EventSource sends it): the stream goes on after it. An id it"
                        " cannot go on from starts over, with the current deploy object.",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The event stream.",
                        # the schema of one event, as SSE clients (and schemathesis) read it
                        "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                    },
                    "204": {
                        "description": "A reconnect that has every event of an ended window:"
                        " nothing more will come (an EventSource stops reconnecting)."
                    },
                    **errors(
                        403,
                        404,
                        e403="The view token is expired, altered or for another deploy.",
                        e404="Unknown deploy.",
                    ),
                },
            }
        },
        "/v1/deploys/{id}/rollback": {
            "post": {
                "operationId": "rollbackDeploy",
                "summary": "Request a rollback by hand (contract §7)",
                "description": "Goes to the environment's rollback target with the same"
                " exactly-once delivery as an automatic one; recorded with the token's name.",
                "security": bearer,
                "parameters": [deploy_id],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["reason"],
                                "additionalProperties": False,
                                "properties": {
                                    "reason": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 1000,
                                        "pattern": TEXT_PATTERN,
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json("Accepted: the deploy object with its rollback.", ref(Deploy)),
                    **errors(
                        400,
                        404,
                        409,
                        413,
                        415,
                        422,
                        e404="Unknown deploy.",
                        e409="It already has a rollback, or it was cancelled or superseded.",
                    ),
                },
            }
        },
        **{
            f"/v1/hooks/{provider}": {
                "post": {
                    "operationId": f"{provider}Hook",
                    "summary": f"{title} deploy events (signed by {title}, no bearer token)",
                    "security": [],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "202": {
                            "description": "A window opened, or the one still watching the"
                            " event's deployment (a second event of it opens none), or a"
                            ' redelivery of that event: `{"deploy": <deploy object>}`.'
                            + (_GATE_ANSWER if provider == "github" else ""),
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "200": {
                            "description": "A valid event that opens nothing:"
                            ' `{"ignored": "<reason>"}`.',
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _problem("Not the provider's JSON.", problem),
                        "401": _problem("Missing or wrong signature; nothing stored.", problem),
                        "413": _problem("The body is over 1 MiB.", problem),
                        "503": _problem(_ERRORS[503], problem),
                    },
                }
            }
            for provider, title in (("github", "GitHub"), ("vercel", "Vercel"))
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document (no auth)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": (
                    "Liveness: 200 while the process runs, also while it waits for its store"
                    " at start (no auth)"
                ),
                "security": [],
                "responses": {"200": _json("Alive.", ref(Health))},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": (
                    "Readiness: the configuration is loaded, the store answers and the"
                    " daemon's loops run"
                ),
                "security": [],
                "responses": {
                    "200": _json("Ready.", ref(Readiness)),
                    "503": _problem(
                        "Not ready; the problem's `checks` says which part is not (`store`"
                        " and `watching` false while the agent waits for its store at start).",
                        problem,
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text exposition (no auth)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Metrics, `postflight_*`.",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    }
                },
            }
        },
    }

    for operations in paths.values():
        for operation in operations.values():
            for code, (name, _) in _HTTP_ERRORS.items():
                shared = {"$ref": f"#/components/responses/{name}"}
                operation["responses"].setdefault(str(code), shared)

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Postflight API",
            "version": __version__,
            "summary": "Register deploys, watch their verdicts, cancel a watch.",
            "description": "Post-deployment validation agent. Errors are"
            " `application/problem+json` (RFC 9457).",
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                name: _problem(description, problem) for name, description in _HTTP_ERRORS.values()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of `server.api_tokens` or `server.named_tokens`.",
                },
                "view": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "view",
                    "description": "A signed, expiring, read-only token for one deploy"
                    " (the `?view=` of its `links.page`).",
                },
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    return copy.deepcopy(_document())
