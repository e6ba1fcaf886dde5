"""Baseline providers: Sentry, New Relic and Prometheus turned into observations.

- `base`: the contract (`Provider`, `Period`, `DeployScope`); `provider_settings`: their
  settings, each model validating its own rules (`check_rule`); `plugins`: discovery;
- `registry`: providers found through the `postflight.providers` entry points and
  `build_providers(settings, metrics, redact)`;
- `client`: what every HTTP provider shares (session, budget, retries, single flight,
  fail soft); `sentry`, `newrelic`, `prometheus`: one module per source.

Nothing is imported here, so `agent.settings` can import `provider_settings` without pulling in
aiohttp.
"""
