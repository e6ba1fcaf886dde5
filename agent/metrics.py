"""The agent's Prometheus metrics (contract §5), on a registry of its own.

Names follow Prometheus conventions: `postflight_<noun>_<unit>`, base units,
`_total` counters, and only bounded labels (never a version, deploy id or URL).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from agent import __version__
from agent.exposition import Exposition, Family
from agent.timed_store import StoreCallKind

# No `<name>_created` series: in the text format each is a gauge of its own, a counter's
# and a histogram's start time, which nothing here reads; with a series per environment
# they were a fifth of every scrape. Process-wide, as prometheus_client has it.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Unlocked:
    """A metric's value without prometheus_client's lock (`values.MutexValue`), for the
    metrics only the event loop's thread changes: a probe's run and a round count and
    time themselves thousands of times a second, and taking a lock was most of it."""

    __slots__ = ("_value",)
    _multiprocess = False

    def __init__(self, *_: Any, **__: Any) -> None:
        self._value = 0.0

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def set_exemplar(self, exemplar: Any) -> None:
        raise NotImplementedError("the agent's loop-only metrics keep no exemplars")

    def get(self) -> float:
        return self._value

    def get_exemplar(self) -> None:
        return None


class LoopCounter(Counter):
    """A `Counter` changed only on the event loop's thread (see `_Unlocked`)."""

    def _metric_init(self) -> None:
        super()._metric_init()
        self._value: Any = _Unlocked()


class LoopHistogram(Histogram):
    """A `Histogram` observed only on the event loop's thread (see `_Unlocked`); its
    bucket found by bisection rather than by a walk over every bound."""

    def _metric_init(self) -> None:
        super()._metric_init()
        self._sum: Any = _Unlocked()
        self._buckets: list[Any] = [_Unlocked() for _ in self._upper_bounds]

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        if exemplar or amount != amount:  # NaN falls in no bucket, as the library has it
            super().observe(amount, exemplar)
            return
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        self._sum._value += amount
        self._buckets[bisect_left(self._upper_bounds, amount)]._value += 1


STORE_CALLS: dict[StoreCallKind, str] = {
    "round_write": "a watch's round stored",
    "lease": "the watcher's claim of windows or a watch's lease renewal",
    "read": "a read (the API's, the deploy page's, a watch's)",
    "change": "any other change (a registration, a window's end, a rollback, an alert)",
}
"""The store's calls by kind, a histogram each (`postflight_store_<kind>_seconds`): §5
allows no label for a kind of call (its labels are environment, check, rule, provider and
outcome/result), as `LOOPS` has a gauge each."""

_GC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LOOPS = {
    "watcher": ("claims and watches windows", "deploys go unwatched"),
    "integrations": (
        "GitHub and Vercel follow-ups and gates",
        "GitHub deployment statuses, gates and Vercel follow-ups wait",
    ),
    "alert-recovery": (
        "alert retries",
        "alerts a channel failed or a crash cut off are not sent again",
    ),
}
"""The daemon's background loops, each with a gauge of its own (`postflight_watcher_up`,
…): what it does, and what stops with it (the HELP said "deploys go unwatched" of each,
the on-call's first reading of an alert-recovery loop stopped). §5 allows labels
environment, check, rule, provider and outcome/result only, so a `loop` label is not
one."""


class Metrics:
    """One set of metrics per agent process (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import ProcessCollector

        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        # the agent's open descriptors against its `ulimit -n`, its memory and CPU (Linux)
        ProcessCollector(namespace="postflight", registry=r)
        self.build_info = Gauge(
            "postflight_build_info", "Postflight's own version.", ["version"], registry=r
        )
        self.build_info.labels(version=__version__).set(1)
        self.windows_active = Gauge(
            "postflight_windows_active",
            "Deploy windows this agent watches, a scheduled one (deployed_at ahead) included:"
            " each replica counts those it holds, so sum them.",
            ["environment"],
            registry=r,
        )
        self.windows_total = Counter(
            "postflight_windows_total",
            "Deploy windows ended, by outcome: passed, failed, rolled_back, inconclusive,"
            " cancelled, superseded.",
            ["environment", "outcome"],
            registry=r,
        )
        self.check_runs_total = LoopCounter(
            "postflight_check_runs_total",
            "Check runs against the deployed service (the background baseline's included), by"
            " result: pass, fail (the target failed the check or did not answer in time),"
            " error (the check itself broke: a plugin's bug, not the target's).",
            ["environment", "check", "result"],
            registry=r,
        )
        self.check_duration_seconds = LoopHistogram(
            "postflight_check_duration_seconds",
            "How long one check run took.",
            ["environment", "check"],
            buckets=_LATENCY_BUCKETS,
            unit="seconds",
            registry=r,
        )
        self.rule_evaluations_total = LoopCounter(
            "postflight_rule_evaluations_total",
            "Rule evaluations, one per rule per round, by the rule's outcome after it: pass,"
            " fail, inconclusive, or breaching (past its bound this round, short of the"
            " threshold policy's failure_limit).",
            ["environment", "rule", "outcome"],
            registry=r,
        )
        self.rollbacks_total = Counter(
            "postflight_rollbacks_total",
            "Rollback requests finished, to the environment's target (its webhook, Vercel or"
            " a GitHub workflow dispatch), by result: delivered (the target took one), failed"
            " (its attempts ran out or were refused).",
            ["environment", "result"],
            registry=r,
        )
        self.rollback_attempts_total = Counter(
            "postflight_rollback_attempts_total",
            "Rollback attempts to the environment's target (its webhook, Vercel or a GitHub"
            " workflow dispatch), by result: delivered (a 2xx), retryable (no answer, a 5xx,"
            " 408, 429 or a rate limit: tried again), rejected (another 4xx or a redirect: not"
            " tried again).",
            ["environment", "result"],
            registry=r,
        )
        self.alerts_total = Counter(
            "postflight_alerts_total",
            "Alert notifications, one an alert a channel, by result: sent (the channel took it,"
            " at once or on a retry), failed (the channel failed it the first time).",
            ["result"],
            registry=r,
        )
        self.provider_requests_total = Counter(
            "postflight_provider_requests_total",
            "Fetches from metric providers (one query for one period, its retries and pages"
            " included), by result: ok, error (the provider's failure). One that ran out of"
            " time while the agent's own event loop was stalled is the agent's, counted in"
            " postflight_provider_agent_stalls_total.",
            ["provider", "result"],
            registry=r,
        )
        self.provider_agent_stalls_total = Counter(
            "postflight_provider_agent_stalls_total",
            "Provider fetches and marker writes that ran out of time while the agent's own"
            " event loop was stalled (no answer read in time: not the provider's failure, so"
            " not in postflight_provider_requests_total, whose result is ok or error).",
            ["provider"],
            registry=r,
        )
        self.provider_http_requests_total = Counter(
            "postflight_provider_http_requests_total",
            "HTTP requests to metric providers, each attempt and page, by status class (2xx,"
            " 3xx, 4xx, 5xx) or timeout or error: the retries a fetch that ended ok hides.",
            ["provider", "result"],
            registry=r,
        )
        self.provider_request_duration_seconds = Histogram(
            "postflight_provider_request_duration_seconds",
            "How long one provider fetch took, its retries and pages included.",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            unit="seconds",
            registry=r,
        )
        self.round_lag_seconds = LoopHistogram(
            "postflight_round_lag_seconds",
            "How late a round started against its window's fixed schedule"
            " (deployed_at + k × interval): the agent's own lateness, so a watch's first"
            " round counts from when its baseline was in hand.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            unit="seconds",
            registry=r,
        )
        self.round_overruns_total = LoopCounter(
            "postflight_round_overruns_total",
            "Rounds that finished after their slot ended (the next round started late); not a"
            " window's last round waiting for provider answers, which holds no round.",
            ["environment"],
            registry=r,
        )
        self.round_overrun_causes_total = LoopCounter(
            "postflight_round_overrun_causes_total",
            "The rounds of postflight_round_overruns_total by what held each most"
            " (outcome, one of contract §5's bounded labels):"
            " checks (past the time the round gave them: a load check's last requests),"
            " providers (waiting for their answers), store (a lease renewal, the previous"
            " round's write) or host (the agent's loop late to run: a blocking call on it,"
            " a thread holding the GIL, its other work, a machine that kept it waiting for"
            " a CPU).",
            ["environment", "outcome"],
            registry=r,
        )
        self.samples_dropped_total = LoopCounter(
            "postflight_samples_dropped_total",
            "Probe samples not counted against the target, by result: agent_lag (a timeout"
            " the agent's own stalled event loop caused: dropped), agent_lag_latency (an"
            " answer counted, its latency inflated by the stall dropped).",
            ["environment", "result"],
            registry=r,
        )
        self.gc_pause_seconds = Histogram(
            "postflight_gc_pause_seconds",
            "How long the agent's garbage collections paused it, every one (full ones too).",
            buckets=_GC_BUCKETS,
            unit="seconds",
            registry=r,
        )
        self.gc_full_pause_seconds = Histogram(
            "postflight_gc_full_pause_seconds",
            "How long the agent's full garbage collections (the oldest generation's) paused"
            " it: the long ones.",
            buckets=_GC_BUCKETS,
            unit="seconds",
            registry=r,
        )
        self.api_requests_total = Counter(
            "postflight_api_requests_total",
            "Every request the HTTP server answered, /metrics scrapes and /healthz probes"
            " included, by result: the status class (2xx, 4xx, 5xx).",
            ["result"],
            registry=r,
        )
        self.malformed_requests_total = Counter(
            "postflight_malformed_requests_total",
            "Requests the HTTP server could not parse (answered 400, 408, 414 or 431).",
            registry=r,
        )
        self.deploy_events_total = Counter(
            "postflight_deploy_events_total",
            "Deploy events at the hooks (contract §7), by provider (github, vercel) and"
            " result: opened (a window), joined (its deployment's window, still watched),"
            " redelivered (answered as the first delivery was), gate (a GitHub deployment"
            " protection rule held), ignored (valid, opens nothing), rejected (missing or"
            " wrong signature: a wrong webhook_secret leaves every deploy unwatched),"
            " invalid (not the provider's request).",
            ["provider", "result"],
            registry=r,
        )
        self.integration_calls_total = Counter(
            "postflight_integration_calls_total",
            "Calls to GitHub and Vercel a deploy calls for, rollbacks aside (deployment and"
            " commit statuses, protection-rule answers, Rolling Release approvals), by"
            " provider (github, vercel) and result: sent, failed (refused, or not taken"
            " through an hour of retries: given up, so an integration_failed alert asks"
            " on-call to do it by hand).",
            ["provider", "result"],
            registry=r,
        )
        self.loops_up = {
            loop: Gauge(
                f"postflight_{loop.replace('-', '_')}_up",
                f"1 while the daemon's {loop} loop runs ({what}), 0 once it stopped on a bug:"
                f" {stops} until a restart (/readyz fails too).",
                registry=r,
            )
            for loop, (what, stops) in LOOPS.items()
        }
        self.waiting_for_store = Gauge(
            "postflight_waiting_for_store",
            "1 while `postflight run` waits at start for a store that gives no answer:"
            " nothing is watched meanwhile (/healthz answers, /readyz fails); 0 once it"
            " answers.",
            registry=r,
        )
        self.store_up = Gauge(
            "postflight_store_up",
            "1 while the store answers the agent, 0 while it does not: 0 at start until it"
            " first answers (postflight_waiting_for_store's wait included), and from any read"
            " or write of the agent's it did not answer"
            " (the watcher's claim or a window's round, an API request, /readyz's check)"
            " until the watcher's next claim of windows, a write every second, goes"
            " through. Meanwhile no deploy is judged and the API answers 503.",
            registry=r,
        )
        self.store_calls = {
            kind: LoopHistogram(
                f"postflight_store_{kind}_seconds",
                f"How long one of the agent's calls to its store took, {what}, from the call"
                " to its answer (a queue for the store's connection and a group's commit"
                " included), less the agent's own event loop's stall meanwhile: a late round"
                " or API answer that waited for the store shows here, one that waited for a"
                " starved agent does not.",
                buckets=_LATENCY_BUCKETS,
                unit="seconds",
                registry=r,
            )
            for kind, what in STORE_CALLS.items()
        }
        # last: it writes the families above by hand (`agent.exposition`)
        own = [m for m in vars(self).values() if isinstance(m, Family)]
        self.exposition = Exposition(r, [*own, *self.loops_up.values(), *self.store_calls.values()])

    def store_call(self, kind: StoreCallKind, seconds: float) -> None:
        """One store call's time (`agent.timed_store`), in its kind's histogram."""
        self.store_calls[kind].observe(seconds)

    def expect(
        self,
        environments: Iterable[str],
        providers: Iterable[str],
        hooks: Iterable[str] = (),
    ) -> None:
        """The series of each environment, provider and configured hook (`github`,
        `vercel`) at 0 from the start: a counter first seen at 1 is a rise `increase()`
        and `rate()` never see, so the shipped alert on
        `increase(postflight_rollbacks_total{result="failed"}[15m]) > 0` missed the first
        failed rollback after every start. Not those per check and per rule (runs,
        evaluations: three and four a check or rule, for dashboards, not alerts): they
        would double a scrape of thousands of environments."""
        for result in ALERT_RESULTS:
            self.alerts_total.labels(result=result)
        for provider in providers:
            for result in PROVIDER_RESULTS:
                self.provider_requests_total.labels(provider=provider, result=result)
            self.provider_agent_stalls_total.labels(provider=provider)
            for result in HTTP_RESULTS:
                self.provider_http_requests_total.labels(provider=provider, result=result)
        for hook in hooks:
            for result in DEPLOY_EVENT_RESULTS:
                self.deploy_events_total.labels(hook, result)
            for result in INTEGRATION_RESULTS:
                self.integration_calls_total.labels(hook, result)
        for env in environments:
            for outcome in WINDOW_OUTCOMES:
                self.windows_total.labels(env, outcome)
            for result in ROLLBACK_RESULTS:
                self.rollbacks_total.labels(env, result)
            for result in ATTEMPT_RESULTS:
                self.rollback_attempts_total.labels(env, result)
            self.round_overruns_total.labels(env)
            for cause in OVERRUN_CAUSES:
                self.round_overrun_causes_total.labels(env, cause)
            for reason in DROP_REASONS:
                self.samples_dropped_total.labels(env, reason)


WINDOW_OUTCOMES = ("passed", "failed", "rolled_back", "inconclusive", "cancelled", "superseded")
ROLLBACK_RESULTS = ("delivered", "failed")
ATTEMPT_RESULTS = ("delivered", "retryable", "rejected")
ALERT_RESULTS = ("sent", "failed")
INTEGRATION_RESULTS = ("sent", "failed")
PROVIDER_RESULTS = ("ok", "error")
HTTP_RESULTS = ("2xx", "3xx", "4xx", "5xx", "timeout", "error")
DROP_REASONS = ("agent_lag", "agent_lag_latency")
OVERRUN_CAUSES = ("checks", "providers", "store", "host")
DeployEventResult = Literal[
    "opened", "joined", "redelivered", "gate", "ignored", "rejected", "invalid"
]
DEPLOY_EVENT_RESULTS: tuple[DeployEventResult, ...] = get_args(DeployEventResult)
