"""The check plugin contract: a config model in, samples out.

Pure: this module imports no I/O library at run time, so the settings can depend
on it. `Sample` and `Target` live in `common.samples` (re-exported here for
plugins). Style model: Datadog's `AgentCheck` — one class per check type, a
pydantic config per instance, and `run()` turns the world into results. The
registry, not the plugin, catches exceptions and times runs.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from common.durations import PositiveDuration
from common.samples import Sample, Target

if TYPE_CHECKING:
    import aiohttp


class CheckConfig(BaseModel):
    """Fields every check has; a check type subclasses it with its own."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: str
    timeout: PositiveDuration = 5.0

    def longest_request_s(self) -> float:
        """The longest one request of a run may wait before it is a timeout (a type whose
        requests have timeouts of their own, a smoke check's steps, says theirs): what a
        timeout's latency, its wait, can reach."""
        return float(self.timeout)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one run of one check."""

    check: str
    type: str
    ok: bool
    samples: tuple[Sample, ...]
    message: str = ""
    """Human, sanitized: what failed and why (never a secret)."""
    duration_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    """Type-specific extras (a smoke step name, load percentiles…), JSON-serialisable."""

    @property
    def result(self) -> Literal["pass", "fail", "error"]:
        """The metric label: `error` when the check could not judge the target at all."""
        if self.ok:
            return "pass"
        if self.details.get("crashed"):
            return "error"
        return "fail"

    @property
    def bug(self) -> bool:
        """A run the check's own bug ended (`checks.bugs`): no sample, no evidence about the
        target either way (its `result` is `error`)."""
        return bool(self.details.get(BUG))


BUG = "bug"
"""The details key of a run the check's own bug ended (`CheckResult.bug`)."""


@dataclass(slots=True)
class CheckContext:
    """What a check may use to reach its target."""

    base_url: str
    session: aiohttp.ClientSession
    environment: str
    target: Target = "deploy"
    secrets: tuple[str, ...] = ()
    """Values to redact from anything a check reports."""
    deadline: float | None = None
    """When the run must be over (event-loop time), so a round ends on time whatever the
    target does: the registry stops waiting then, and an `http` check shortens its
    request timeout to fit. None: only the check's own timeout applies."""
    room: float = 0.0
    """The least a request gets from when it is made, however near `deadline` is then (a
    round's probe: its timeout or half the round, whichever is less). The agent's own
    stall between fixing the deadline and making the request (a collection, the process
    descheduled) is the agent's: at load 17 a probe whose deadline it had eaten waited 8 ms
    for a target answering in 17 ms, and its timeout was counted as the target's."""


class Check:
    """Base class of a check type. Subclass, set `type` and `Config`, implement `run`;
    set `background` / `once_per_round` to say how the agent schedules it.

    `run` should turn failures of the target into a failing `CheckResult`. An exception
    that escapes is caught by the registry: one about the target (a connection, a
    timeout, an HTTP error, or one of `target_errors`) is a failed probe; any other is the
    check's own bug, left out of the evidence and logged once (`checks.bugs`).
    """

    type: ClassVar[str]
    Config: ClassVar[builtins.type[CheckConfig]]  # `type` is shadowed by the attribute above
    background: ClassVar[bool] = False
    """Also runs between windows, so the pre-deploy period has samples to compare with."""
    fits_deadline: ClassVar[bool] = False
    """Fits its own timeouts to `CheckContext.deadline` (as `http` and `smoke` do), so the
    registry need not cancel it there: an answer a busy loop reads late is kept."""
    target_errors: ClassVar[tuple[builtins.type[BaseException], ...]] = ()
    """Exceptions `run` may raise about the target besides `checks.bugs.TARGET_ERRORS`
    (a database driver's, a gRPC client's): a failed probe, not the check's bug."""
    once_per_round: ClassVar[bool] = False
    """Makes its own traffic over a duration: runs once a round (and, in the background,
    at most six times per `lookback`), not `probes_per_round` times."""

    def __init__(self, config: CheckConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def budget_s(self) -> float:
        """The longest one run may take in all; the registry adds a margin, then gives up.

        A check whose run spans more than one request (smoke steps, a load
        check's duration) overrides this so the registry's overall timeout fits it.
        """
        return float(self.config.timeout)

    async def run(self, ctx: CheckContext) -> CheckResult:
        raise NotImplementedError

    def start(
        self, ctx: CheckContext, done: Callable[[CheckResult | BaseException], None]
    ) -> Running | None:
        """Optional: a run without a task, driven by callbacks.

        Return None (the default) to be run by `run` instead; else the run under way, after
        which `done` is called once, from the event loop, with what `run` would have
        returned or raised (unless cancelled first). Worth it only for a check run thousands
        of times a second (the `http` probe): a task and its coroutines cost more than it.
        """
        return None


class Running(Protocol):
    """A run `Check.start` started."""

    def cancel(self) -> None:
        """Stop it, as cancelling `run`'s task would: `done` will not be called."""


__all__ = [
    "BUG",
    "Check",
    "CheckConfig",
    "CheckContext",
    "CheckResult",
    "Running",
    "Sample",
    "Target",
]
