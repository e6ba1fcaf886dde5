"""Which keys a mapping of the configuration takes, to suggest one for a typo.

`unknown key` alone left a user to find `intervall`'s right spelling in the docs; the
settings models know it. Walks the models along a key path as the document holds it (a
check's model is picked by its `type`), so the suggestion is a key of that very mapping.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from common.words import closest

Loc = tuple[str | int, ...]


def _members(annotation: Any) -> list[Any]:
    """`annotation` without `Annotated`, `Optional` and unions: the types it may be."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _type_tag(model: type[BaseModel]) -> str | None:
    """A check model's `type: Literal["http"]`, if it has one."""
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    args = get_args(field.annotation)
    return str(args[0]) if len(args) == 1 else None


def _models_at(root: type[BaseModel], loc: Loc, document: Any) -> list[type[BaseModel]]:
    """The models that may validate the mapping at `loc` of `document`."""
    kinds: list[Any] = [root]
    node = document
    for part in loc:
        node = node[part] if holds(node, part) else None
        found: list[Any] = []
        for kind in (m for k in kinds for m in _members(k)):
            origin = get_origin(kind)
            if isinstance(part, int) and origin is list:
                found.append(get_args(kind)[0])
            elif isinstance(part, str) and _is_model(kind) and part in kind.model_fields:
                found.append(kind.model_fields[part].annotation)
            elif isinstance(part, str) and origin is dict:
                found.append(get_args(kind)[1])
        kinds = found
    models = [m for k in kinds for m in _members(k) if _is_model(m)]
    tag = node.get("type") if isinstance(node, dict) else None
    tagged = [m for m in models if _type_tag(m) is not None]
    if tagged and isinstance(tag, str):  # a check: the model of its own type
        models = [m for m in tagged if _type_tag(m) == tag] or models
    return models


def holds(node: Any, part: str | int) -> bool:
    """Whether `node` (a mapping or a list) has `part`."""
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def known_keys(root: type[BaseModel], loc: Loc, document: Any) -> list[str]:
    """Every key the mapping at `loc` takes (empty when the models do not say)."""
    keys: set[str] = set()
    for model in _models_at(root, loc, document):
        # a field's alias is the key the file writes (a check's `expect.json`)
        keys.update(field.alias or name for name, field in model.model_fields.items())
    return sorted(keys)


def suggestion(root: type[BaseModel], loc: Loc, document: Any) -> str | None:
    """The key the unknown key at `loc` most likely meant (`intervall` → `interval`,
    `dry-run` → `dry_run`), or None when none is close."""
    if not loc or not isinstance(loc[-1], str):
        return None
    wrong = loc[-1]
    keys = known_keys(root, loc[:-1], document)
    by_form = {k.replace("_", "-").lower(): k for k in keys}
    same = by_form.get(wrong.replace("_", "-").lower())
    if same is not None and same != wrong:  # `dry-run`, `Window`
        return same
    return closest(wrong.lower(), keys, cutoff=0.75)
