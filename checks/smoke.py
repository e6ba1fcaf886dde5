"""The `smoke` check: a short scripted user journey (log in, then use the token), step by step.

Each step is one request with its own expectations and timeout; values
captured by JSONPath feed later steps as `{name}`; cookies carry over within a
run (never between runs or checks). The run stops at the first failing step and
says which step, expected vs got, and the start of the body with secrets hidden.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, field_validator, model_validator
from yarl import URL

from checks.base import Check, CheckConfig, CheckContext, CheckResult, Sample
from checks.expect import Body, Expect, Expectation, Mismatch, compile_path
from checks.lag import (
    SLACK_S,
    Dropped,
    LoopLag,
    keep_lag,
    verdict_on,
    without_latency,
)
from checks.request import ClientOptions, RequestSpec, join_url, sent_with
from checks.ticks import ticks
from common.durations import PositiveDuration, format_duration
from common.redaction import SENSITIVE_KEY, Redactor, sensitive_values, snippet
from common.words import counted

if TYPE_CHECKING:  # aiohttp's client (checks.exchange) is imported where a check runs: the
    # settings import this module for its Config alone (validate-config, schema)
    import aiohttp
    from jsonpath_ng import JSONPath  # loaded by compile_path, where a capture names one

    from checks.exchange import Reply

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"\{\{(" + _NAME + r")\}\}|\{(" + _NAME + r")\}")
"""`{token}` is replaced by a captured value; `{{token}}` stands for a literal `{token}`."""
_VAR = re.compile(f"^{_NAME}$")
_SNIPPET = 200
_LIKELY_TOKEN_LEN = 16
"""Captured strings at least this long are treated as secrets even under a plain name."""


class SmokeStep(RequestSpec):
    """One request of the journey."""

    name: str = Field(min_length=1, max_length=64)
    expect: Expect = Field(default_factory=Expect)
    capture: dict[str, str] = Field(
        default_factory=dict,
        description="Variables for later steps: name → JSONPath (`$.token`) or top-level key.",
    )
    timeout: PositiveDuration | None = Field(
        None, description="This step's timeout; default the check's."
    )

    @field_validator("capture")
    @classmethod
    def _valid_capture(cls, value: dict[str, str]) -> dict[str, str]:
        for var, path in value.items():
            if not _VAR.match(var):
                raise ValueError(f"{var!r} is not a variable name (letters, digits, _)")
            compile_path(path)
        return value

    def placeholders(self) -> set[str]:
        """Variables this step's path, URL, headers and body refer to."""
        texts = [self.path, self.url or "", self.body or "", *self.headers.values()]
        texts.extend(_strings(self.json_body))
        return {m.group(2) for t in texts for m in _PLACEHOLDER.finditer(t) if m.group(2)}


class SmokeCheckConfig(ClientOptions, CheckConfig):
    """A `smoke` check as configured under an environment's `checks:`."""

    type: Literal["smoke"] = "smoke"
    steps: list[SmokeStep] = Field(min_length=1, max_length=50)

    def longest_request_s(self) -> float:
        return max(float(s.timeout if s.timeout is not None else self.timeout) for s in self.steps)

    @model_validator(mode="after")
    def _steps_fit_together(self) -> Self:
        seen: set[str] = set()
        captured: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"two steps are named {step.name!r}")
            seen.add(step.name)
            missing = sorted(step.placeholders() - captured)
            if missing:
                names = ", ".join("{" + m + "}" for m in missing)
                raise ValueError(
                    f"step {step.name!r} uses {names}, which no earlier step captures "
                    "(write {{name}} for literal braces)"
                )
            captured.update(step.capture)
        return self


@dataclass(frozen=True, slots=True)
class _CompiledStep:
    step: SmokeStep
    expectation: Expectation
    captures: tuple[tuple[str, JSONPath, bool], ...]
    """(variable, path, whether its value is a secret)."""
    timeout: aiohttp.ClientTimeout
    label: str


class _StepFailed(Exception):
    """A step got an answer, but not the expected one."""

    def __init__(self, *mismatches: Mismatch, reply: Reply | None = None) -> None:
        super().__init__("; ".join(str(m) for m in mismatches))
        self.mismatches = mismatches
        self.reply = reply


class SmokeCheck(Check):
    """Runs the steps in order over one cookie jar; one sample per step that ran."""

    type = "smoke"
    Config = SmokeCheckConfig
    fits_deadline = True
    config: SmokeCheckConfig

    def __init__(self, config: SmokeCheckConfig) -> None:
        # aiohttp's client only for a check built to run (see the imports), all of it loaded
        # here, before a run: the first probe's clock or the loop-lag count must not see it
        import aiohttp

        import checks.exchange  # noqa: F401

        super().__init__(config)
        self._steps = tuple(
            _CompiledStep(
                step=step,
                expectation=Expectation(step.expect),
                captures=tuple(
                    (var, compile_path(path), bool(SENSITIVE_KEY.search(f"{var} {path}")))
                    for var, path in step.capture.items()
                ),
                timeout=aiohttp.ClientTimeout(
                    total=step.timeout if step.timeout is not None else config.timeout
                ),
                label=f"{step.method} {step.url or step.path}",
            )
            for step in config.steps
        )
        budget = self.budget_s()  # above 0: at least one step, each timeout positive
        self._shares = tuple((s.timeout.total or 0.0) / budget for s in self._steps)
        """Each step's part of a run's room: its timeout's part of theirs (`_left`)."""
        self._body_secrets = tuple(
            value
            for step in config.steps
            for value in (
                *sensitive_values(step.json_body),
                *(v for k, v in step.headers.items() if SENSITIVE_KEY.search(k)),
            )
            if not _PLACEHOLDER.search(value)
        )

    def budget_s(self) -> float:
        return sum(s.timeout.total or 0.0 for s in self._steps)

    async def run(self, ctx: CheckContext) -> CheckResult:
        import aiohttp  # the client only where a check runs: see the imports

        from checks.exchange import ProbeFailed, exchange  # (the same)
        from checks.written import TRACE  # (the same)

        cfg = self.config
        connector = ctx.session.connector
        if connector is None:
            raise RuntimeError("the session lent to this check is closed")
        redactor = Redactor((*ctx.secrets, *self._body_secrets))
        values: dict[str, Any] = {}
        samples: list[Sample] = []
        done: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        # the run's end as the registry's limit has it (`checks.registry`): a run started
        # late gets its room
        end = None if ctx.deadline is None else max(ctx.deadline, loop.time() + ctx.room)
        lag = _StepLag.of(len(self._steps), ctx.target)
        # A session of its own for the cookie jar, over the shared pool's connections.
        async with aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers=ctx.session.headers,
            trust_env=False,
            # as the shared pool's: a stall before a step's write, a target's silence at its
            # deadline (`checks.written`, `checks.silence`), judged on a one-step run
            trace_configs=[TRACE],
        ) as session:
            for index, compiled in enumerate(self._steps):
                step = compiled.step
                timeout: aiohttp.ClientTimeout | float = compiled.timeout
                if end is not None:  # the round ends first: no step waits past it
                    left = self._left(index, end, ctx.room, loop.time())
                    if compiled.timeout.total is None or left < compiled.timeout.total:
                        timeout = max(round(left, 3), 0.001)
                if lag is not None:
                    lag.start()
                try:
                    url, headers, data = _render(step, ctx.base_url, values)
                    request = sent_with(step.method, headers, data, cfg, keep_body=True)
                    reply = await exchange(session, request, url, client_timeout=timeout)
                    body = Body(reply.body)
                    mismatches = compiled.expectation.check(
                        reply.status, reply.headers, body, reply.latency_s, redactor
                    )
                    if mismatches:
                        raise _StepFailed(*mismatches, reply=reply)
                    for var, path, secret in compiled.captures:
                        value = _capture(body, path, var, reply)
                        values[var] = value
                        if secret or (isinstance(value, str) and len(value) >= _LIKELY_TOKEN_LEN):
                            redactor = redactor.with_secrets([_text(value)])
                except ProbeFailed as failed:
                    # a timeout the target's silence proves is its own (`checks.silence`)
                    if (
                        lag is not None
                        and failed.silent_s is None
                        and lag.verdict(False, failed.kind, None) == "agent_lag"
                    ):
                        where = self._step_label(index)
                        return lag.dropped(cfg.name, where, failed.message, samples, redactor)
                    samples.append(failed.sample(cfg.name, ctx.target))
                    return self._failed(
                        index,
                        failed.kind,
                        failed.message,
                        None,
                        samples,
                        done,
                        redactor,
                        lag,
                        silent_s=failed.silent_s,
                    )
                except _StepFailed as failed:
                    first = failed.mismatches[0]
                    if failed.reply is not None:
                        sample = failed.reply.sample(cfg.name, first.kind, ctx.target)
                        if lag is not None:
                            bound = compiled.expectation.max_latency
                            judged = lag.judged(sample, failed.reply, bound)
                            if judged is None:  # too slow (`max_latency`) by the agent's stall
                                where = self._step_label(index)
                                return lag.dropped(cfg.name, where, str(failed), samples, redactor)
                            sample = judged
                    else:
                        sample = Sample(
                            check=cfg.name, ok=False, error=first.kind, target=ctx.target
                        )
                    samples.append(sample)
                    return self._failed(
                        index,
                        first.kind,
                        str(failed),
                        failed.reply,
                        samples,
                        done,
                        redactor,
                        lag,
                        expected=first.expected,
                        got=first.got,
                    )
                sample = reply.sample(cfg.name, None, ctx.target)
                if lag is not None:
                    sample = lag.judged(sample, reply) or sample
                samples.append(sample)
                done.append(_step_summary(step.name, reply))
        total_ms = sum(s["latency_ms"] for s in done)
        details = _lag({"steps": done}, reply)
        if lag is not None:
            lag.note(details)
        return CheckResult(
            check=cfg.name,
            type=self.type,
            ok=True,
            samples=tuple(samples),
            message=f"{counted(len(done), 'step')} passed in {format_duration(total_ms / 1000)}",
            details=details,
        )

    def _left(self, index: int, end: float, room: float, now: float) -> float:
        """How long step `index`, made at `now`, may wait: until the run's `end`, or its
        share of the `room` (by its timeout) from now if later. A stall since the deadline
        was fixed (a collection, the process descheduled) is the agent's: before, a step
        made 5 ms before the round's end waited 5 ms for a 20 ms target, counted as its
        timeout. The registry's limit still bounds the run: a run it cuts is judged with
        the stall since the run began (`agent.windows.probing`), the agent's when that
        explains it; a step timeout cut short to that limit was the target's again."""
        return max(end - now, room * self._shares[index])

    def _step_label(self, index: int) -> str:
        compiled = self._steps[index]
        return f"step {compiled.step.name!r} ({index + 1}/{len(self._steps)}) {compiled.label}"

    def _failed(
        self,
        index: int,
        kind: str,
        what: str,
        reply: Reply | None,
        samples: list[Sample],
        done: list[dict[str, Any]],
        redactor: Redactor,
        lag: _StepLag | None,
        silent_s: float | None = None,
        **extra: str,
    ) -> CheckResult:
        """The result of a run stopped at step `index`: which step, what went wrong, the body."""
        step = self._steps[index].step
        message = f"{self._step_label(index)}: {what}"
        details: dict[str, Any] = {
            "step": step.name,
            "step_index": index,
            "error": kind,
            **extra,
            "steps": done + ([_step_summary(step.name, reply)] if reply is not None else []),
        }
        if reply is not None:
            body = snippet(reply.body, redactor, _SNIPPET)
            details["status"] = reply.status
            details["body"] = body
            if body:
                message += f"; body: {body}"
        _lag(details, reply, silent_s)
        if lag is not None:
            lag.note(details)
        return CheckResult(
            check=self.config.name,
            type=self.type,
            ok=False,
            samples=tuple(samples),
            message=redactor.text(message),
            details=redactor.value(details),
        )


class _StepLag:
    """Each step of a journey of several judged as a one-step run is (`checks.lag`): the
    registry judges a run of one sample alone (`checks.lag.attributed`), so a second step's
    answer read late by the agent's stalled loop was kept as the target's latency (0.3 s
    for a 20 ms target), and a step's timeout during such a stall as its error. Only while
    probing (the heartbeat beating): `postflight check` measures no stall."""

    def __init__(self, lag: LoopLag, target: str) -> None:
        self.lag = lag
        self.target = target
        self.mark = 0.0
        self.started = 0.0
        self.stalled = 0.0
        self.counts: dict[Dropped, int] = {"agent_lag": 0, "agent_lag_latency": 0}

    @classmethod
    def of(cls, steps: int, target: str) -> _StepLag | None:
        if steps < 2:
            return None  # judged by the registry, as an http probe is
        lag = ticks().lag
        return cls(lag, target) if lag.beating() is not None else None

    def start(self) -> None:
        """A step starts: its stall is counted from here."""
        self.mark = self.lag.total()
        self.started = time.perf_counter()

    def verdict(
        self,
        ok: bool,
        error: str | None,
        latency: float | None,
        held: float = 0.0,
        resumed: float = 0.0,
        bound: float | None = None,
    ) -> Dropped | None:
        """What of the step's measurement the agent's stall since `start` made (as
        `checks.lag.attributed` judges a run's, with the reply's `agent_held_s` and
        `agent_resumed_s`, and the step's `max_latency`), counted."""
        stalled = self.lag.total() - self.mark
        if stalled <= SLACK_S:
            return None
        waited = time.perf_counter() - self.started
        late = min(min(self.lag.unattended(), stalled) + held, stalled)
        late = max(late, min(resumed, stalled))  # it landed as the loop came back
        dropped = verdict_on(ok, error, latency, waited, stalled, late, bound)
        if dropped is not None:
            self.counts[dropped] += 1
            self.stalled = stalled
        return dropped

    def judged(self, sample: Sample, reply: Reply, bound: float | None = None) -> Sample | None:
        """`sample` as evidence of the target: without its latency where that is the
        agent's; None where the whole sample is (a `max_latency`, `bound`, missed by the
        stall)."""
        dropped = self.verdict(
            sample.ok,
            sample.error,
            sample.latency_s,
            reply.agent_held_s,
            reply.agent_resumed_s,
            bound,
        )
        if dropped == "agent_lag":
            return None
        return without_latency(sample) if dropped == "agent_lag_latency" else sample

    def note(self, details: dict[str, Any]) -> None:
        """The run's counts in its details, as a load run's (`agent_lag`): the registry
        then leaves the run as it is and counts them (`agent.windows.probing`)."""
        details["agent_lag"] = dict(self.counts)
        details["target"] = self.target

    def dropped(
        self, check: str, where: str, was: str, samples: list[Sample], redactor: Redactor
    ) -> CheckResult:
        """The run ended by a step whose failure the agent's stall explains: neither ok nor
        an error, as a one-step run's (`checks.lag.attributed`); the steps before it count."""
        message = (
            f"dropped: {where}: the agent's event loop was stalled {self.stalled:.3f}s while"
            f" it waited (agent overloaded; was: {was})"
        )
        details: dict[str, Any] = {"dropped": "agent_lag", "stalled_s": round(self.stalled, 4)}
        self.note(details)
        return CheckResult(
            check, "smoke", True, tuple(samples), redactor.text(message), 0.0, details
        )


def _lag(
    details: dict[str, Any], reply: Reply | None, silent_s: float | None = None
) -> dict[str, Any]:
    """`details` with what the agent's lag is judged by (`checks.lag.attributed`, on a run
    of one sample: its last step's), as an http check keeps them: how long a stall held
    the step's request back, the stall its answer landed just after, the target's silence
    at its timeout."""
    if reply is None:
        return keep_lag(details, silent_s=silent_s)
    return keep_lag(
        details, held_s=reply.agent_held_s, resumed_s=reply.agent_resumed_s, silent_s=silent_s
    )


def _step_summary(name: str, reply: Reply) -> dict[str, Any]:
    return {"name": name, "status": reply.status, "latency_ms": round(reply.latency_s * 1000, 3)}


def _capture(body: Body, path: JSONPath, var: str, reply: Reply) -> Any:
    """The first value `path` finds in the body; a failed step when there is none."""
    try:
        doc = body.json()
    except ValueError:
        fail = Mismatch("assertion", f"capture {var}", "a JSON body", "another body")
        raise _StepFailed(fail, reply=reply) from None
    found = path.find(doc)
    if not found:
        fail = Mismatch("assertion", f"capture {var}", f"{path}", "no such field")
        raise _StepFailed(fail, reply=reply)
    return found[0].value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _substitute(text: str, values: dict[str, Any]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "{" + m.group(1) + "}"
        return _text(values[m.group(2)])

    return _PLACEHOLDER.sub(one, text)


def _substitute_json(value: Any, values: dict[str, Any]) -> Any:
    """Placeholders in JSON strings; a string that is only `{name}` takes the value's own type."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole is not None and whole.group(2):
            return values[whole.group(2)]
        return _substitute(value, values)
    if isinstance(value, dict):
        return {k: _substitute_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_json(v, values) for v in value]
    return value


def _render(
    step: SmokeStep, base_url: str, values: dict[str, Any]
) -> tuple[URL, dict[str, str], bytes | None]:
    """The URL, headers and body of a step with captured values filled in."""
    url = (
        URL(_substitute(step.url, values))
        if step.url is not None
        else join_url(base_url, _substitute(step.path, values))
    )
    headers = {}
    for name, template in step.headers.items():
        value = _substitute(template, values)
        if "\r" in value or "\n" in value:
            raise _StepFailed(
                Mismatch("assertion", f"header {name}", "a value on one line", "a line break")
            )
        headers[name] = value
    data: bytes | None = None
    if step.json_body is not None:
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        data = json.dumps(_substitute_json(step.json_body, values), separators=(",", ":")).encode()
    elif step.body is not None:
        data = _substitute(step.body, values).encode()
    return url, headers, data


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
