"""Building the configured providers from the `postflight.providers` entry points.

Discovery is `agent.providers.plugins`; this module builds. A plugin is a class with
a `config_model` (pydantic; it may define `check_rule`, see
`agent.providers.provider_settings.ProviderSettings`) and a constructor
`(config, *, metrics, redact)` that returns a `Provider`. Only providers present in
the configuration are built; nothing here does I/O beyond importing plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from pydantic import BaseModel

from agent.metrics import Metrics
from agent.providers.base import Provider
from agent.providers.plugins import ProviderPluginError, load_plugin, plugin_names
from agent.providers.provider_settings import ProvidersSettings

Redact = Callable[[str], str]


class ProviderPlugin(Protocol):
    """What an entry point in `postflight.providers` must load."""

    config_model: type[BaseModel]

    def __call__(
        self, config: Any, *, metrics: Metrics, redact: Redact | None = None
    ) -> Provider: ...


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
        plugin = cast(ProviderPlugin | None, load_plugin(name))
        if plugin is None:
            raise ProviderPluginError(
                f"providers.{name} is configured but no provider {name!r} is installed"
                f" (installed: {', '.join(sorted(plugin_names())) or 'none'})"
            )
        providers[name] = plugin(config, metrics=metrics, redact=redact)
    return providers


__all__ = [
    "ProviderPlugin",
    "ProviderPluginError",
    "Redact",
    "build_providers",
    "configured",
    "load_plugin",
    "plugin_names",
]
