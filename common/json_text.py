"""Reading a JSON document a client sent, with a reason for a refusal that says what to
fix in the request, never what Python would do about it. Pure.

`json.loads` explains itself to a Python programmer: "use sys.set_int_max_str_digits()
to increase the limit", "decode using utf-8-sig", "maximum recursion depth exceeded";
the API's 400s and the hooks' quoted those to a pipeline, or, for a hook, named only the
exception's class (`JSONDecodeError`) with no line or column."""

from __future__ import annotations

import json
from typing import Any


class JsonTextError(ValueError):
    """Why the bytes are not a JSON document, in words for whoever sent them."""


def _no_constants(name: str) -> Any:
    raise JsonTextError(f"{name} is not valid JSON; write a number, or null")


def _one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose every key is given once: JSON leaves a repeated key's meaning to
    the reader (RFC 8259 §4), and `json.loads` silently keeps the last."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise JsonTextError(f"the key {key!r} is given twice in one object; give it once")
        document[key] = value
    return document


def parse_json_text(raw: bytes, *, unique_keys: bool = False) -> Any:
    """The document in `raw` (UTF-8 JSON); raises `JsonTextError` saying what to fix.

    `unique_keys`: an object that gives a key twice is refused, not read as its last."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise JsonTextError(
            "the body starts with a byte order mark (BOM); send the JSON without it"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonTextError("the body is not UTF-8; send the JSON encoded as UTF-8") from None
    if not text.strip():
        raise JsonTextError("the body is empty; send a JSON object")
    try:
        document = json.loads(
            text,
            parse_constant=_no_constants,
            object_pairs_hook=_one_of_each if unique_keys else None,
        )
        # `"\ud800"` alone decodes to a lone surrogate: not Unicode, and no store can keep it
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except JsonTextError:
        raise
    except UnicodeEncodeError:
        raise JsonTextError("an unpaired surrogate escape (\\udXXX) is not a character") from None
    except json.JSONDecodeError as exc:
        raise JsonTextError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JsonTextError("arrays or objects nested too deeply") from None
    except ValueError as exc:  # an integer past Python's digit limit (4300 by default)
        if "digits" in str(exc):
            raise JsonTextError("a number with too many digits") from None
        raise JsonTextError("not valid JSON") from None
    return document
