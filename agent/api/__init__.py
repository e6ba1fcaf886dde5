"""API v1 over HTTP (contract §2): mount with `add_routes(app)` or `create_api_app(...)`."""

from agent.api.app import add_routes, create_api_app

__all__ = ["add_routes", "create_api_app"]
