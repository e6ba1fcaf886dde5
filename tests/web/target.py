"""A service under deploy for page tests: a health route and a two-step journey
(log in, then read orders) that breaks at its second step once `bad` is set, with a
body that tries to inject markup into whatever displays it."""

from __future__ import annotations

from aiohttp import web

from tests.e2e.conftest import FlipTarget

HOSTILE = "<script>alert('body')</script>\"'><img src=x onerror=alert(5)>"


class JourneyTarget(FlipTarget):
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def login(self, request: web.Request) -> web.Response:
        return web.json_response({"token": "t0k3n-for-the-journey"})

    async def orders(self, request: web.Request) -> web.Response:
        if self.bad:
            return web.Response(status=500, text=HOSTILE)
        return web.json_response({"orders": []})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)
        app.router.add_post("/api/login", self.login)
        app.router.add_get("/api/orders", self.orders)


def journey_environment(target: JourneyTarget, receiver_url: str, secret: str, **kw: str) -> str:
    """An environment judging the smoke journey's error rate (max 5%); threshold policy
    unless `policy` says otherwise; `more_rules` is YAML added to its rules."""
    values = {
        "window": "30s",
        "interval": "1s",
        "failure_limit": "2",
        "policy": "threshold",
        "timeout": "1s",
        "more_rules": "",
    } | kw
    return f"""
    production:
      base_url: {target.url}
      window: {values["window"]}
      interval: {values["interval"]}
      background_interval: 200ms
      probes_per_round: 3
      checks:
        - name: health
          type: http
          path: /api/health
          timeout: {values["timeout"]}
        - name: journey
          type: smoke
          timeout: {values["timeout"]}
          steps:
            - name: login
              method: POST
              path: /api/login
              expect: {{status: 200}}
              capture: {{token: "$.token"}}
            - name: orders
              method: GET
              path: /api/orders
              headers: {{Authorization: "Bearer {{token}}"}}
              expect: {{status: 200}}
      analysis:
        policy: {values["policy"]}
        failure_limit: {values["failure_limit"]}
      rules:
        - name: journey-errors
          source: checks
          check: journey
          metric: error_rate
          max: 0.05
{values["more_rules"]}
      rollback:
        url: {receiver_url}
        secret: {secret}
        backoff: 100ms
      alerts:
        tags: [oncall]
    """
