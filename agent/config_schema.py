"""The configuration's JSON Schema, generated from the settings models.

Only built-in check types are described: the schema shipped in `config/` must not
depend on which plugins happen to be installed where it was generated.
"""

from __future__ import annotations

from typing import Any

from agent.settings import Settings
from agent.settings_file import EXTENSION_PREFIX
from checks.registry import config_models


def config_schema() -> dict[str, Any]:
    schema = Settings.model_json_schema()
    plugin_names = {m.__name__ for m in config_models() if not m.__module__.startswith("checks.")}
    refs = {f"#/$defs/{name}" for name in plugin_names}
    defs = schema.get("$defs", {})
    for name in plugin_names:
        defs.pop(name, None)

    def prune(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key in ("oneOf", "anyOf") and isinstance(value, list):
                    value = [
                        v for v in value if not (isinstance(v, dict) and v.get("$ref") in refs)
                    ]
                elif key == "mapping" and isinstance(value, dict):
                    value = {k: v for k, v in value.items() if v not in refs}
                out[key] = prune(value)
            return out
        if isinstance(node, list):
            return [prune(v) for v in node]
        return node

    pruned: dict[str, Any] = prune(schema)
    # top-level `x-…` keys hold the file's YAML anchors (`settings_file.EXTENSION_PREFIX`)
    pruned["patternProperties"] = {f"^{EXTENSION_PREFIX}": {}}
    return pruned
