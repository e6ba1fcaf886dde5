"""Baseline providers: Sentry, New Relic and Prometheus turned into observations."""
