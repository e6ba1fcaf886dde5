"""Fake Sentry and New Relic servers and a real Prometheus, for tests and benchmarks.

`tests.fakes.sentry.FakeSentry`, `tests.fakes.newrelic.FakeNewRelic`,
`tests.fakes.prometheus.{PrometheusProcess, ScrapeTarget, FakePrometheus}`; each
listens on 127.0.0.1 port 0 by default (`await fake.start()` / `await fake.stop()`,
or `async with`).
"""
