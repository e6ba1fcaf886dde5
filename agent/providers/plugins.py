"""Which providers are installed: lookups in the `postflight.providers` entry points.

Built-ins (Sentry, New Relic, Prometheus) register there exactly as a third party
would, so the settings validate every provider's section and rules through one
path. Imports nothing of Postflight: the settings and the registry both use it,
and a plugin is loaded only when its name is asked for.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

ENTRY_POINT_GROUP = "postflight.providers"


class ProviderPluginError(RuntimeError):
    """A provider plugin is installed but cannot be loaded or built."""


@functools.cache
def plugin_names() -> frozenset[str]:
    """Names of the installed providers (no plugin is imported)."""
    return frozenset(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


@functools.cache
def load_plugin(name: str) -> Any | None:
    """The plugin class registered under `name`, or None when none is installed."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name != name:
            continue
        try:
            loaded = ep.load()
        except Exception as exc:
            raise ProviderPluginError(
                f"provider plugin {name!r} ({ep.value}) failed to load: {exc}"
            ) from exc
        if not isinstance(getattr(loaded, "config_model", None), type):
            raise ProviderPluginError(f"provider plugin {name!r} ({ep.value}) has no config_model")
        return loaded
    return None


def config_model_for(name: str) -> type[BaseModel] | None:
    plugin = load_plugin(name)
    return None if plugin is None else plugin.config_model
