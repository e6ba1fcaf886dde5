"""What a background run probed, as a short digest stored with its summary.

A pre-deploy baseline pools the background runs of the `lookback` (`agent.windows.
foresight`). Once `base_url` or a check's definition changes and the agent restarts, runs
recorded before it measured another target (a dead port, the old release's host) or
judged it by other expectations; pooled, they make relative rules blind, or a healthy old
target makes a broken new one look like a regression. Each run is stored with the digest
of what it probed, and a baseline reads only runs whose digest is the check's as
configured now.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.settings import EnvironmentSettings
from checks.base import CheckConfig
from checks.request import RequestSpec, target_url

FINGERPRINT_CHARS = 16
"""Hex digits kept (64 bits): one environment holds a handful of checks, so two
definitions never share one by chance, and a row stays small."""


def probe_fingerprint(config: CheckConfig, base_url: str) -> str:
    """The digest of "this check against this target": its name, type and every setting
    it was given (method, resolved URL, header names, body, expectations, timeout), and the
    address it reaches (`url` when absolute, else `base_url` joined with its `path`).

    Left out, so that they do not restart a baseline: header values (they hold credentials,
    and rotating a token changes nothing probed), secrets (pydantic dumps `SecretStr`
    masked) and settings left at their default (a Postflight that adds a field with a
    default keeps its stored runs)."""
    definition: dict[str, Any] = config.model_dump(mode="json", exclude_defaults=True)
    definition["name"], definition["type"] = config.name, config.type
    definition["target"] = _target(config, base_url, definition)
    headers = definition.get("headers")
    if isinstance(headers, dict):
        definition["headers"] = sorted(name.lower() for name in headers)
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_CHARS]


def check_fingerprints(env: EnvironmentSettings) -> Mapping[str, str]:
    """Each configured check's fingerprint against the environment's own `base_url`, by
    check name: what its background runs are stored with (they never probe a canary's
    `baseline_url` or a deploy event's own URL). Worked out once per settings object (a
    window's start and a registration ask again; dumping the configs costs ~30 µs a check)."""
    key = id(env)
    found = _BY_ENVIRONMENT.get(key)
    if found is None:
        base_url = str(env.base_url)
        fingerprints = {check.name: probe_fingerprint(check, base_url) for check in env.checks}
        found = _BY_ENVIRONMENT[key] = MappingProxyType(fingerprints)
        weakref.finalize(env, _BY_ENVIRONMENT.pop, key, None)  # its id may be reused after
    return found


_BY_ENVIRONMENT: dict[int, Mapping[str, str]] = {}
"""`check_fingerprints` by the settings object's id, while it lives."""


def _target(config: CheckConfig, base_url: str, definition: dict[str, Any]) -> str:
    """Where the check's requests go, its `path` and `url` taken out of `definition` (the
    target says both); a plugin's check, whose fields are its own, gets the base URL
    (whatever it does with it, a new one is a new target)."""
    if not isinstance(config, RequestSpec):
        return base_url.rstrip("/")
    definition.pop("path", None)
    definition.pop("url", None)
    return str(target_url(config, base_url))
