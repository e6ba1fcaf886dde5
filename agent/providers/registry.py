"""Which providers exist and which are built: the `postflight.providers` entry points.

The built-in Sentry, New Relic and Prometheus providers register themselves in
Postflight's own pyproject exactly as a third party would, so there is one path for
both. A plugin is a class with a `config_model` (pydantic) and a constructor
`(config, *, metrics, redact)` that returns a `Provider`. Only providers present in
the configuration are built; nothing here does I/O beyond importing plugins.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Protocol, cast

from pydantic import BaseModel

from agent.metrics import Metrics
from agent.providers.base import Provider
from agent.providers.provider_settings import ProvidersSettings

ENTRY_POINT_GROUP = "postflight.providers"

Redact = Callable[[str], str]


class ProviderPlugin(Protocol):
    """What an entry point in `postflight.providers` must load."""

    config_model: type[BaseModel]

    def __call__(
        self, config: Any, *, metrics: Metrics, redact: Redact | None = None
    ) -> Provider: ...


class ProviderPluginError(RuntimeError):
    """A provider plugin is installed but cannot be loaded or built."""


@functools.cache
def plugin_names() -> frozenset[str]:
    """Names of the installed providers (no plugin is imported)."""
    return frozenset(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


@functools.cache
def load_plugin(name: str) -> ProviderPlugin | None:
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
        return cast(ProviderPlugin, loaded)
    return None


def config_model_for(name: str) -> type[BaseModel] | None:
    plugin = load_plugin(name)
    return None if plugin is None else plugin.config_model


def configured(settings: ProvidersSettings) -> dict[str, Any]:
    """Provider name → its validated config, for every provider configured."""
    found: dict[str, Any] = {
        name: getattr(settings, name)
        for name in type(settings).model_fields
        if getattr(settings, name) is not None
    }
    found.update({k: v for k, v in (settings.model_extra or {}).items() if v is not None})
    return found


def build_providers(
    settings: ProvidersSettings, metrics: Metrics, redact: Redact | None = None
) -> dict[str, Provider]:
    """One provider per configured entry, keyed by its name (`sentry`, `newrelic`…).

    `redact` scrubs every message a provider logs or returns (it should know every
    secret of the configuration); each provider also scrubs its own credentials.
    """
    providers: dict[str, Provider] = {}
    for name, config in configured(settings).items():
        plugin = load_plugin(name)
        if plugin is None:
            raise ProviderPluginError(
                f"providers.{name} is configured but no provider {name!r} is installed"
                f" (installed: {', '.join(sorted(plugin_names())) or 'none'})"
            )
        providers[name] = plugin(config, metrics=metrics, redact=redact)
    return providers
