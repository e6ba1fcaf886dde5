"""API v1 over HTTP (contract §2): mount with `add_routes(app)` or `create_api_app(...)`.

The two are imported lazily so that `agent.api.models` (which the CLI client uses)
does not drag the daemon's settings and analysis stack into `postflight register`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.api.app import add_routes, create_api_app

__all__ = ["add_routes", "create_api_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from agent.api import app

        return getattr(app, name)
    raise AttributeError(f"module 'agent.api' has no attribute {name!r}")
